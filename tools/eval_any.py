"""Accuracy of a general model (preset 'any') per configuration family, read as a user reads; with
``auto``, what the shipped models make of those configurations (issue 13's starting point).

Each family's images are drawn by the generator and encoded as PHP sends them (JPEG or PNG at their
own size), then read by ``Solver(model)``: decode, the stretch to the model's input, the reading.
So the figures are those of the exported file, not of the training checkpoint. ``--shared`` adds
the real PHP samples of the three presets (``<label>_<index>.<ext>`` files), read the same way.

    python tools/eval_any.py export/kcaptcha-any.onnx [--count 1000] [--shared ../shared/real-kcaptcha]
        [--json out.json]
    python tools/eval_any.py auto --count 500 --json benchmarks/results/any_families_auto.json
    python tools/eval_any.py auto --count 1000 --time 300 --json benchmarks/results/any_families_auto.json

``--sets edited`` (or ``all``) reads instead (or too) each preset's own settings with every other symbol set of
generator.SYMBOL_SETS (a site that edited allowed_symbols; gnuboard5's hex line is the ``hex-160x60`` family): the
case a preset model cannot know, as it reads a symbol it never saw as one of its own. Set j's seeds start at
EVAL_SEED + (7 + j) * 1,000,000.

``--time N`` also reads N images of each family one at a time (one onnxruntime thread, the encoded bytes in
memory, 20 warm-up reads first) and records wall and CPU milliseconds per image (issue 13's budget: 3 ms).

Seeds: family k uses 96,000,000 + k * 1,000,000 onwards: clear of training (below 70,000,000 by
default), validation (90,000,000 onwards, a few thousand per set), the export check (95,000,000)
and the reserved evaluation range. Needs all 25 atlases in one folder (``--fonts`` or KCAPTCHA_FONTS).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path

from kcaptcha_solver import Solver, general
from kcaptcha_solver.errors import InputError
from kcaptcha_solver.generator import PRESETS, SYMBOL_SETS, Generator, Sample

EVAL_SEED = 96_000_000
PRESET_FOLDERS = ("gnuboard5", "seed-l2", "kcaptcha-default")
BATCH = 256


def score(solver: Solver, images: list[bytes | Path], truths: list[str]) -> dict:
    """Full-string and per-character accuracy of ``solver`` on ``images``, a few misreads as examples."""
    right = chars = chars_right = sure = sure_wrong = 0
    misread = []
    models: Counter[str] = Counter()
    for i in range(0, len(images), BATCH):
        for truth, got in zip(truths[i : i + BATCH], solver.solve_many(images[i : i + BATCH]), strict=True):
            text = "" if isinstance(got, InputError) else got.text
            right += text == truth
            if not isinstance(got, InputError):
                sure += got.sure
                sure_wrong += got.sure and text != truth
                models[got.model] += 1
            chars += len(truth)
            chars_right += sum(a == b for a, b in zip(text, truth, strict=False))
            if text != truth and len(misread) < 5:
                misread.append([truth, text])
    return {"count": len(images), "accuracy": round(100 * right / len(images), 2),
            "char_accuracy": round(100 * chars_right / max(chars, 1), 2), "sure": sure, "sure_wrong": sure_wrong,
            "read_by": dict(models), "misread_examples": misread}


def timing(solver: Solver, images: list[bytes]) -> dict:
    """Wall and thread-CPU milliseconds of ``solver.solve`` per image, one at a time, after 20 warm-up reads."""
    for data in images[:20]:
        solver.solve(data)
    wall, cpu = [], []
    for data in images:
        t, c = time.perf_counter(), time.thread_time()
        solver.solve(data)
        wall.append(1000 * (time.perf_counter() - t))
        cpu.append(1000 * (time.thread_time() - c))
    return {"images": len(images), "ms_mean": round(statistics.mean(wall), 3),
            "ms_median": round(statistics.median(wall), 3), "ms_p90": round(statistics.quantiles(wall, n=10)[-1], 3),
            "cpu_ms_mean": round(statistics.mean(cpu), 3)}


# Each preset's settings with each other symbol set (gnuboard5's hex line is the hex-160x60 family).
EDITED = {f"{preset}+{name}": replace(config, name=f"{preset}+{name}", allowed_symbols=symbols)
          for preset, config in PRESETS.items() for name, symbols in SYMBOL_SETS.items()
          if symbols != config.allowed_symbols and (preset, name) != ("gnuboard5", "hex")}


def families(solver: Solver, count: int, fonts: str | None = None, timed: int = 0, which: str = "families"
             ) -> dict[str, dict]:
    """:func:`score` on ``count`` PHP-encoded images of each of general.FAMILIES and/or EDITED, seeds as the
    docstring says."""
    firsts = {name: EVAL_SEED + k * 1_000_000 for k, name in enumerate([*general.FAMILIES, *EDITED])}
    sets: dict[str, Callable[[int], Sample]] = {}
    if which != "edited":
        sets |= {family: partial(general.sample, fonts_dir=fonts, family=family) for family in general.FAMILIES}
    if which != "families":
        sets |= {name: partial(Generator(config, fonts_dir=fonts).draw, boxes=False) for name, config in EDITED.items()}
    report = {}
    for family, sample in sets.items():
        t0 = time.perf_counter()
        samples = [sample(seed) for seed in range(firsts[family], firsts[family] + count)]
        files = [s.encode() for s in samples]
        got = report[family] = score(solver, files, [s.label for s in samples])
        if timed:
            got["time"] = timing(solver, files[:timed])
        ms = f"  {got['time']['ms_mean']:.2f} ms/image" if timed else ""
        print(f"{family:30} {got['accuracy']:6.2f} %  sure {got['sure']} ({got['sure_wrong']} wrong){ms}  "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="the exported .onnx file, or a shipped model's name, or auto")
    ap.add_argument("--count", type=int, default=1000, help="generated images per family")
    ap.add_argument("--fonts", help="folder with all 25 atlases (default: $KCAPTCHA_FONTS)")
    ap.add_argument("--shared", type=Path, help="the real-kcaptcha folder: also read its preset samples")
    ap.add_argument("--json", type=Path, help="write the figures here too")
    ap.add_argument("--time", type=int, default=0, metavar="N", help="also time N images per family, one at a time")
    ap.add_argument("--sets", choices=("families", "edited", "all"), default="families",
                    help="general.FAMILIES, the presets' settings with other symbol sets, or both")
    args = ap.parse_args(argv)
    solver = Solver(args.model)
    report: dict = {"model": str(args.model), "count_per_family": args.count, "first_seed": EVAL_SEED,
                    "generated": families(solver, args.count, args.fonts, args.time, args.sets), "real": {}}
    if args.time:
        report["load_average"] = os.getloadavg()
    for name in PRESET_FOLDERS if args.shared else ():
        files = sorted((args.shared / name).iterdir())
        report["real"][name] = score(solver, files, [f.stem.rsplit("_", 1)[0] for f in files])
        print(f"real {name:15} {report['real'][name]['accuracy']:6.2f} %", flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
