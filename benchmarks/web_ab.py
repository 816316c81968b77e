"""Which of two builds of the page answers sooner: loads alternated, paired, with a bootstrap interval.

This machine's speed drifts by tens of percent within minutes, so two pages timed one after the
other cannot be compared; loaded alternately (A B, B A, ...), each load in a fresh context as in
web_load.py, the differences within a pair can. Each folder is the output of
``kcaptcha site build``; to compare with an earlier commit, build that commit's site in a worktree:

    git worktree add /tmp/old COMMIT && cd /tmp/old && npm ci && npm run build \\
        && PYTHONPATH=src python -m kcaptcha_solver.cli site build /tmp/site-old
    python benchmarks/web_ab.py /tmp/site-old /tmp/site-new [--pairs 30] [--settle 1.0]

Prints and writes (``--out``) both medians, the mean paired difference B - A with its 95 %
bootstrap interval, and how many pairs B won.
"""

from __future__ import annotations

import argparse
import functools
import json
import random
import statistics
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from playwright.sync_api import sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parent))
from web_load import CHROMIUM, CHROMIUM_ARGS, SETTLE_S, one_load  # noqa: E402

from kcaptcha_solver.web.site import TYPES  # noqa: E402


class FolderHandler(SimpleHTTPRequestHandler):
    """A built site as a static host serves it: the right types (wasm!), keep-alive, no logging."""

    protocol_version = "HTTP/1.1"
    extensions_map = {**SimpleHTTPRequestHandler.extensions_map, **TYPES}

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-cache")
        super().end_headers()

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (http.server's signature)
        pass


def serve(folder: Path) -> str:
    if not (folder / "index.html").is_file():
        raise SystemExit(f"{folder} has no index.html: make it with kcaptcha site build {folder}")
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(FolderHandler, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}/"


def bootstrap_interval(diffs: list[float], rounds: int = 5000) -> tuple[float, float]:
    """95 % interval of the mean of ``diffs`` (resampled with replacement, fixed seed)."""
    rng = random.Random(0)
    means = sorted(statistics.mean(rng.choices(diffs, k=len(diffs))) for _ in range(rounds))
    return means[int(0.025 * rounds)], means[int(0.975 * rounds) - 1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("a", type=Path, help="site folder A (the baseline)")
    parser.add_argument("b", type=Path, help="site folder B")
    parser.add_argument("--pairs", type=int, default=30)
    parser.add_argument("--settle", type=float, default=SETTLE_S, help="seconds between new window and page")
    parser.add_argument("--out", type=Path, help="also write the figures here as JSON")
    args = parser.parse_args(argv)

    urls = {"a": serve(args.a), "b": serve(args.b)}
    times: dict[str, list[float]] = {"a": [], "b": []}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        for url in urls.values():
            one_load(browser, url, args.settle)  # warm-up, not counted
        for i in range(args.pairs):
            for key in ("a", "b") if i % 2 == 0 else ("b", "a"):
                times[key].append(one_load(browser, urls[key], args.settle)["first_answer_ms"])
        browser.close()

    diffs = [b - a for a, b in zip(times["a"], times["b"], strict=True)]
    low, high = bootstrap_interval(diffs)
    result = {
        "a": str(args.a),
        "b": str(args.b),
        "pairs": args.pairs,
        "settle_s": args.settle,
        "median_ms": {key: round(statistics.median(v), 1) for key, v in times.items()},
        "mean_diff_ms": round(statistics.mean(diffs), 1),
        "interval_95_ms": [round(low, 1), round(high, 1)],
        "b_faster_in": sum(d < 0 for d in diffs),
        "first_answer_ms": {key: [round(x, 1) for x in v] for key, v in times.items()},
    }
    print(
        f"A {result['median_ms']['a']:.1f} ms, B {result['median_ms']['b']:.1f} ms (medians); "
        f"B - A: mean {result['mean_diff_ms']:+.1f} ms, 95 % interval {low:+.1f} to {high:+.1f} ms; "
        f"B faster in {result['b_faster_in']} of {args.pairs} pairs"
    )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
