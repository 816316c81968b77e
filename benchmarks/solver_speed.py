"""How fast and how right the shipped solver reads the real PHP images, next to ddddocr and Tesseract.

One thread, one image at a time, the encoded file bytes already in memory (decoding is timed,
disk reads are not), each reader warmed up first. Also: batch throughput (``solve_many``), model
load time, and the HTTP service (``kcaptcha serve`` in its own process) under concurrent load on
loopback, and the cold start of a fresh Python. Wall-clock figures depend on what else runs, so
the load average is recorded too, and ``cpu_ms_mean``: CPU time of the reading process per image
(ddddocr's onnxruntime uses several threads, so its CPU time can exceed its wall time).

    python benchmarks/solver_speed.py [--count 500] [--other-count 200] [--out benchmarks/results/solver.json]
    python benchmarks/solver_speed.py --score-only   # only the cost of Result.score, into the same file
    python benchmarks/solver_speed.py --screens-only  # only screenshots: locate + read, into the same file
    python benchmarks/solver_speed.py --auto-only     # only each preset through "auto", beside its own model

ddddocr is never a dependency of this project: install it for this benchmark only, in its own
venv (``python -m venv /tmp/ddddocr-venv && /tmp/ddddocr-venv/bin/pip install ddddocr``), and
pass ``--ddddocr-python /tmp/ddddocr-venv/bin/python``. It gets the preset's symbols through
``set_ranges``, Tesseract a whitelist and ``--psm 7`` (one line): each at its best.

Screenshots (issue 12): real gnuboard5 images shown in Gnuboard's desktop form by Chromium
(kcaptcha_solver.screenshot) at device-pixel-ratio 1 and 2, each form pasted on a 1920x1080 screen
(``screenshot.screen``), read by ``Solver("auto").solve`` on one thread: decode (PNG, or none for
pixels already in memory), locate, route, read.

Goal (issue 4): <= 1 ms per image and >= 10x faster than ddddocr; issue 12: <= 15 ms to locate and read
a 1920x1080 screenshot, bare captchas still <= 1 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import onnxruntime

from kcaptcha_solver.inputs import fit, to_rgb_array
from kcaptcha_solver.solver import Solver, read, shipped_models, string_score

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("KCAPTCHA_SHARED", ROOT.parent / "shared" / "real-kcaptcha"))
PRESETS = ("gnuboard5", "seed-l2", "kcaptcha-default")
GOAL = {"ms_per_image": 1.0, "times_faster_than_ddddocr": 10.0, "ms_per_1920x1080_screenshot": 15.0}
WARMUP = 20

# Runs inside the ddddocr venv: JSON {"symbols", "files"} on stdin -> JSON timings on stdout.
DDDDOCR_WORKER = """
import json, sys, time
cfg = json.load(sys.stdin)
start = time.perf_counter()
import ddddocr
ocr = ddddocr.DdddOcr(show_ad=False)
ocr.set_ranges(cfg["symbols"])
load_s = time.perf_counter() - start
data = [open(f, "rb").read() for f in cfg["files"]]
for d in data[:5]:
    ocr.classification(d)
texts, ms = [], []
cpu = time.process_time()
for d in data:
    t = time.perf_counter()
    texts.append(ocr.classification(d))
    ms.append((time.perf_counter() - t) * 1000)
cpu_ms = (time.process_time() - cpu) * 1000 / len(data)
print(json.dumps({"load_s": load_s, "texts": texts, "ms": ms, "cpu_ms": cpu_ms}))
"""


def label(path: Path) -> str:
    return path.stem.rsplit("_", 1)[0]


def files_of(preset: str, count: int) -> list[Path]:
    folder = SHARED / preset
    return sorted(folder.iterdir(), key=lambda p: p.stem.rsplit("_", 1)[1])[:count]


def summary(ms: list[float], texts: list[str], paths: list[Path]) -> dict:
    right = sum(t.lower() == label(p) for t, p in zip(texts, paths, strict=True))
    return {
        "count": len(paths),
        "accuracy": round(100 * right / len(paths), 2),
        "ms_mean": round(statistics.fmean(ms), 3),
        "ms_median": round(statistics.median(ms), 3),
        "ms_p99": round(float(np.percentile(ms, 99)), 3),
    }


def score_ms(solver: Solver, data: list[bytes]) -> float:
    """Mean ms per image of Result.score alone (string_score: the CTC forward algorithm for ctc models),
    part of ``ms_mean``: on the model's own probabilities for these images, 20 rounds."""
    info = solver.info
    session = onnxruntime.InferenceSession(str(info.path), providers=["CPUExecutionProvider"])
    batch = np.stack([fit(to_rgb_array(d), info.width, info.height) for d in data])
    probs = session.run(["probs"], {"image": batch})[0]
    none = len(info.classes)
    labels = [[info.classes.index(ch) for ch in read(p, info).text] for p in probs]
    start = time.perf_counter()
    for _ in range(20):
        for p, lab in zip(probs, labels, strict=True):
            string_score(p, lab, info.decoder, none)
    return round((time.perf_counter() - start) * 1000 / (20 * len(probs)), 4)


def ours(preset: str, paths: list[Path]) -> dict:
    loads = []
    for _ in range(5):
        start = time.perf_counter()
        solver = Solver(preset)
        loads.append(time.perf_counter() - start)
    data = [p.read_bytes() for p in paths]
    for d in data[:WARMUP]:
        solver.solve(d)
    texts, ms = [], []
    cpu = time.process_time()
    for d in data:
        start = time.perf_counter()
        texts.append(solver.solve(d).text)
        ms.append((time.perf_counter() - start) * 1000)
    cpu_ms = (time.process_time() - cpu) * 1000 / len(data)
    out = summary(ms, texts, paths) | {"cpu_ms_mean": round(cpu_ms, 3),
                                       "load_ms": round(1000 * statistics.median(loads), 2),
                                       "score_ms_mean": score_ms(solver, data)}
    for threads in (1, 2):
        batcher = Solver(preset, threads=threads)
        batcher.solve_many(data[:64])
        start = time.perf_counter()
        for i in range(0, len(data), 64):
            batcher.solve_many(data[i : i + 64])
        out[f"batch64_images_per_s_threads{threads}"] = round(len(data) / (time.perf_counter() - start))
    return out


def screens(count: int) -> dict:
    """Locate + read of 1920x1080 screenshots through ``Solver.solve``, one thread (module docstring)."""
    from kcaptcha_solver.screenshot import Renderer, sample_images, screen

    images = sample_images(SHARED / "gnuboard5", count)
    with Renderer() as renderer:
        shots = [shot for dpr in (1.0, 2.0) for shot in renderer.render(images, "desktop", dpr, crops=("form",))]
    full = [screen(shot, seed=k) for k, shot in enumerate(shots)]
    solver = Solver("auto")
    for shot in full[:WARMUP]:
        solver.solve(shot.pixels)
    out: dict = {"screens": len(full), "size": "1920x1080", "dprs": [1.0, 2.0], "threads": 1}
    for kind, inputs in (("pixels", [s.pixels for s in full]), ("png", [s.encode("PNG") for s in full])):
        ms, right = [], 0
        for shot, given in zip(full, inputs, strict=True):
            start = time.perf_counter()
            result = solver.solve(given)
            ms.append((time.perf_counter() - start) * 1000)
            right += result.text == shot.label
        out[kind] = {"accuracy": round(100 * right / len(full), 2), "ms_mean": round(statistics.fmean(ms), 2),
                     "ms_median": round(statistics.median(ms), 2), "ms_p95": round(float(np.percentile(ms, 95)), 2)}
    out["png_bytes_mean"] = round(statistics.fmean(len(b) for b in inputs))
    return out


def through_auto(count: int) -> dict:
    """Each preset's real images read by ``Solver("auto")`` and by the preset's own model, one at a time, the two
    alternating image by image so that both see the same load: what routing and the general model's check of a
    specialist's sure answer (solver.general_doubts) cost, and the share of answers each leaves sure."""
    auto = Solver("auto")
    out = {}
    for preset in PRESETS:
        paths = files_of(preset, count)
        data = [p.read_bytes() for p in paths]
        solvers = {"own": Solver(preset), "auto": auto}
        for d in data[:WARMUP]:
            for solver in solvers.values():
                solver.solve(d)
        ms: dict[str, list[float]] = {kind: [] for kind in solvers}
        answers: dict[str, list] = {kind: [] for kind in solvers}
        for d in data:
            for kind, solver in solvers.items():
                start = time.perf_counter()
                answers[kind].append(solver.solve(d))
                ms[kind].append((time.perf_counter() - start) * 1000)
        out[preset] = {kind: summary(ms[kind], [r.text for r in answers[kind]], paths)
                       | {"sure": sum(r.sure for r in answers[kind])} for kind in solvers}
    return out | {"load_avg": [round(x, 2) for x in os.getloadavg()]}


def ddddocr(python: str, preset: str, paths: list[Path]) -> dict:
    symbols = shipped_models()[preset].classes
    job = json.dumps({"symbols": symbols, "files": [str(p) for p in paths]})
    done = subprocess.run([python, "-c", DDDDOCR_WORKER], input=job, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"ddddocr worker failed ({done.returncode}): {done.stderr[-2000:]}")
    got = json.loads(done.stdout.strip().splitlines()[-1])
    return summary(got["ms"], got["texts"], paths) | {"cpu_ms_mean": round(got["cpu_ms"], 3),
                                                      "load_ms": round(1000 * got["load_s"], 1)}


def tesseract(exe: str, preset: str, paths: list[Path]) -> dict:
    """One ``tesseract`` process per image: how it is run from Python (pytesseract does the same)."""
    symbols = shipped_models()[preset].classes
    cmd = [exe, "stdin", "stdout", "--psm", "7", "-c", f"tessedit_char_whitelist={symbols}"]
    texts, ms = [], []
    for p in paths:
        data = p.read_bytes()
        start = time.perf_counter()
        done = subprocess.run(cmd, input=data, capture_output=True)
        ms.append((time.perf_counter() - start) * 1000)
        if done.returncode != 0:
            raise RuntimeError(f"tesseract failed on {p.name}: {done.stderr.decode()[-500:]}")
        texts.append("".join(done.stdout.decode().split()))
    return summary(ms, texts, paths)


def cold_start(path: Path) -> float:
    """Milliseconds for a fresh Python to import, load the gnuboard5 model and read one image."""
    code = f"from kcaptcha_solver import Solver; Solver('gnuboard5').solve({str(path)!r})"  # not "auto": one model
    times = []
    for _ in range(3):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        times.append((time.perf_counter() - start) * 1000)
    return round(statistics.median(times), 1)


def http_load(paths: list[Path], requests: int, clients: int) -> dict:
    """``kcaptcha serve`` in its own process; ``clients`` threads with keep-alive POST raw image bodies."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "kcaptcha_solver.cli", "serve", "--port", str(port), "--model", "gnuboard5"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(url + "/health").status_code == 200:
                    break
            except httpx.TransportError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"kcaptcha serve did not start (exit {server.poll()})") from None
                time.sleep(0.1)
        data = [(p.read_bytes(), label(p)) for p in paths]
        local = threading.local()

        def one(i: int) -> tuple[float, bool]:
            if not hasattr(local, "client"):
                local.client = httpx.Client(base_url=url, timeout=30)
            body, truth = data[i % len(data)]
            start = time.perf_counter()
            r = local.client.post("/solve", content=body, headers={"content-type": "image/jpeg"})
            return (time.perf_counter() - start) * 1000, r.status_code == 200 and r.json()["text"] == truth

        with ThreadPoolExecutor(clients) as pool:
            list(pool.map(one, range(clients * 5)))  # warm up every connection
            start = time.perf_counter()
            results = list(pool.map(one, range(requests)))
            wall = time.perf_counter() - start
        healthy = httpx.get(url + "/health").status_code == 200
    finally:
        server.terminate()
        server.wait(10)
    ms = [m for m, _ in results]
    return {
        "requests": requests, "clients": clients, "requests_per_s": round(requests / wall, 1),
        "ms_median": round(statistics.median(ms), 2), "ms_p99": round(float(np.percentile(ms, 99)), 2),
        "correct": sum(ok for _, ok in results), "healthy_after": healthy,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=500, help="images per preset for our solver")
    ap.add_argument("--other-count", type=int, default=200, help="images per preset, ddddocr and Tesseract")
    ap.add_argument("--ddddocr-python", default="/tmp/ddddocr-venv/bin/python",
                    help="a Python with ddddocr installed (skipped when missing)")
    ap.add_argument("--http-requests", type=int, default=2000)
    ap.add_argument("--http-clients", type=int, default=16)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "solver.json"))
    ap.add_argument("--score-only", action="store_true",
                    help="measure only score_ms_mean (Result.score's share) and update it in --out, nothing else")
    ap.add_argument("--screens", type=int, default=30, help="real gnuboard5 images per DPR for the screenshot row")
    ap.add_argument("--screens-only", action="store_true",
                    help="measure only the 1920x1080 screenshot row and gnuboard5's bare images; update them in --out")
    ap.add_argument("--auto-only", action="store_true",
                    help="measure only each preset through auto beside its own model; update it in --out")
    args = ap.parse_args()
    if args.auto_only:
        results = json.loads(Path(args.out).read_text())
        results["through_auto"] = through_auto(args.count)
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
        print(json.dumps(results["through_auto"], indent=1))
        return
    if args.screens_only:
        results = json.loads(Path(args.out).read_text())
        bare = ours("gnuboard5", files_of("gnuboard5", args.count))  # measured beside it, under the same load
        results["screen_1920x1080"] = screens(args.screens) | {
            "bare_gnuboard5": {k: bare[k] for k in ("count", "accuracy", "ms_mean", "ms_median", "ms_p99")},
            "load_avg": [round(x, 2) for x in os.getloadavg()]}
        results["goal"] = GOAL
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
        print(json.dumps(results["screen_1920x1080"], indent=1))
        return
    if args.score_only:
        results = json.loads(Path(args.out).read_text())
        for preset in (p for p in PRESETS if p in shipped_models()):
            data = [p.read_bytes() for p in files_of(preset, args.count)]
            results["ours"][preset]["score_ms_mean"] = score_ms(Solver(preset), data)
            print(f"{preset}: score {results['ours'][preset]['score_ms_mean']} ms per image")
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
        return

    load_before = os.getloadavg()
    results: dict = {"ours": {}, "ddddocr": {}, "tesseract": {}}
    has_ddddocr = Path(args.ddddocr_python).is_file()
    tess = shutil.which("tesseract")
    shipped = shipped_models()
    results["not_shipped"] = [p for p in PRESETS if p not in shipped]  # benchmarked once they are
    for preset in (p for p in PRESETS if p in shipped):
        paths = files_of(preset, args.count)
        results["ours"][preset] = ours(preset, paths)
        others = paths[: args.other_count]
        if has_ddddocr:
            results["ddddocr"][preset] = ddddocr(args.ddddocr_python, preset, others)
        if tess:
            results["tesseract"][preset] = tesseract(tess, preset, others)
    if "gnuboard5" in shipped:
        results["ours"]["gnuboard5"]["cold_start_ms"] = cold_start(files_of("gnuboard5", 1)[0])
        results["http"] = http_load(files_of("gnuboard5", 200), args.http_requests, args.http_clients)
        results["screen_1920x1080"] = screens(args.screens)
    for preset, theirs in results["ddddocr"].items():
        mine = results["ours"][preset]
        mine["times_faster_than_ddddocr"] = round(theirs["ms_mean"] / mine["ms_mean"], 1)
        # CPU time moves less than wall time when other jobs share the cores
        mine["times_less_cpu_than_ddddocr"] = round(theirs["cpu_ms_mean"] / mine["cpu_ms_mean"], 1)
    tess_version = subprocess.run([tess, "--version"], capture_output=True, text=True).stdout.split("\n")[0] \
        if tess else None
    results["machine"] = {
        "cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__, "tesseract": tess_version,
        "load_avg_before": [round(x, 2) for x in load_before],
        "load_avg_after": [round(x, 2) for x in os.getloadavg()],
    }
    results["goal"] = GOAL
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print_table(results)
    print(f"-> {args.out}")


def print_table(results: dict) -> None:
    print(f"{'reader':10} {'preset':17} {'n':>4} {'accuracy':>9} {'ms mean':>8} {'ms p99':>8} {'cpu ms':>7} "
          f"{'load ms':>8}")
    for reader in ("ours", "ddddocr", "tesseract"):
        for preset, r in results[reader].items():
            load = f"{r['load_ms']:.1f}" if "load_ms" in r else "-"
            cpu = f"{r['cpu_ms_mean']:.3f}" if "cpu_ms_mean" in r else "-"
            print(f"{reader:10} {preset:17} {r['count']:>4} {r['accuracy']:>8.2f}% {r['ms_mean']:>8.3f} "
                  f"{r['ms_p99']:>8.3f} {cpu:>7} {load:>8}")
    for preset, r in results["ours"].items():
        faster = r.get("times_faster_than_ddddocr", "-")
        cpu = r.get("times_less_cpu_than_ddddocr", "-")
        print(f"ours {preset:17} batch of 64: {r['batch64_images_per_s_threads1']:,} img/s (1 thread), "
              f"{r['batch64_images_per_s_threads2']:,} img/s (2 threads); vs ddddocr: {faster}x faster, "
              f"{cpu}x less CPU")
    if "cold_start_ms" in results["ours"].get("gnuboard5", {}):
        print(f"cold start (new Python: import, load gnuboard5, read one image): "
              f"{results['ours']['gnuboard5']['cold_start_ms']} ms")
    screen = results.get("screen_1920x1080")
    if screen:
        print(f"1920x1080 screenshot, locate + read, 1 thread: {screen['pixels']['ms_mean']} ms mean from pixels, "
              f"{screen['png']['ms_mean']} ms from PNG ({screen['screens']} screens, "
              f"{screen['png']['accuracy']}% read)")
    h = results.get("http")
    if h:
        print(f"http: {h['requests_per_s']} req/s, median {h['ms_median']} ms, p99 {h['ms_p99']} ms "
              f"({h['clients']} clients, {h['correct']}/{h['requests']} correct, "
              f"healthy after: {h['healthy_after']})")
    m = results["machine"]
    print(f"machine: {m['cpu_count']} CPUs, load average {m['load_avg_before']} -> {m['load_avg_after']}")


if __name__ == "__main__":
    main()
