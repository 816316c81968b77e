"""How many captchas per second the generator draws and encodes (the bytes of each file).

One process, then ``--workers`` processes, for each preset. Each run warms up first (numba's
compiled kernels load from the disk cache on the first draw), then times ``--count`` images
in ``--rounds`` rounds. Wall-clock rates depend on what else runs on the machine, so the best
and the median round are kept, with the load average and, for one process, the best rate per
CPU-second of the drawing process (``per_cpu_s``).

    python benchmarks/generator_speed.py [--count 3000] [--workers 2] [--out results/generator.json]

Goal (issue 1): >= 2,700 images/s for gnuboard5 on one process (PHP 8.2 draws about 270/s).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import statistics
import time
from pathlib import Path

import numba
import numpy as np
import PIL

from kcaptcha_solver.generator import PRESETS, Generator

ROOT = Path(__file__).resolve().parents[1]
GOAL = {"preset": "gnuboard5", "images_per_s": 2700}
PHP_RATE = {"gnuboard5": 270, "seed-l2": 38, "kcaptcha-default": 21}  # shared README, PHP 8.2
SEED = 50_000_000
_gen: Generator | None = None


def _init(preset: str, fonts: str | None) -> None:
    global _gen
    _gen = Generator(preset, fonts_dir=fonts)
    _time_range(SEED, 50)  # warm up this process


def _time_range(start: int, count: int) -> tuple[float, float]:
    """Draw + encode seeds ``start ..``; returns (wall seconds, CPU seconds) of this process."""
    wall, cpu = time.perf_counter(), time.process_time()
    for seed in range(start, start + count):
        _gen.draw(seed, boxes=False).encode()
    return time.perf_counter() - wall, time.process_time() - cpu


def _summary(rates: list[float]) -> dict:
    """Best and median of the rounds: the best is the least disturbed by other work on the machine."""
    return {"images_per_s": max(rates), "median_images_per_s": statistics.median(rates), "rounds": len(rates)}


def one_process(preset: str, count: int, rounds: int, fonts: str | None) -> dict:
    _init(preset, fonts)
    per_round = count // rounds
    times = [_time_range(SEED + r * per_round, per_round) for r in range(rounds)]
    result = _summary([per_round / wall for wall, _ in times])
    result["per_cpu_s"] = max(per_round / cpu for _, cpu in times)
    return result


def many_processes(preset: str, count: int, rounds: int, workers: int, fonts: str | None) -> dict:
    chunk = 100
    per_round = max(count // rounds // chunk, workers) * chunk
    rates = []
    with multiprocessing.get_context().Pool(workers, _init, (preset, fonts)) as pool:
        pool.map(time.sleep, [0.01] * workers)  # every worker started and warm before the clock
        for r in range(rounds):
            first = SEED + r * per_round
            wall = time.perf_counter()
            pool.starmap(_time_range, [(s, chunk) for s in range(first, first + per_round, chunk)])
            rates.append(per_round / (time.perf_counter() - wall))
    return _summary(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=3000, help="images per preset and run")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds per run (best and median kept)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--presets", nargs="+", default=list(PRESETS))
    parser.add_argument("--fonts", help="atlas folder (default: $KCAPTCHA_FONTS, then the user folder)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "generator.json"))
    args = parser.parse_args()

    rows = []
    multi_head = f"{args.workers} procs img/s"
    print(f"{'preset':18} {'1 proc img/s':>13} {'median':>7} {'per CPU-s':>10} {multi_head:>15} {'PHP':>5}")
    for preset in args.presets:
        single = one_process(preset, args.count, args.rounds, args.fonts)
        multi = many_processes(preset, args.count, args.rounds, args.workers, args.fonts)
        rows.append({"preset": preset, "one_process": single, f"workers_{args.workers}": multi,
                     "php_images_per_s": PHP_RATE.get(preset)})  # fmt: skip
        print(f"{preset:18} {single['images_per_s']:13,.0f} {single['median_images_per_s']:7,.0f} "
              f"{single['per_cpu_s']:10,.0f} "
              f"{multi['images_per_s']:15,.0f} {PHP_RATE.get(preset, 0):5}")  # fmt: skip
    goal = next((r for r in rows if r["preset"] == GOAL["preset"]), None)
    result = {
        "what": "draw + encode to the file bytes (JPEG q90 4:4:4 or PNG), boxes off, one seed per image",
        "count_per_run": args.count,
        "rounds": args.rounds,
        "goal": GOAL,
        "goal_met": None if goal is None else goal["one_process"]["images_per_s"] >= GOAL["images_per_s"],
        "results": rows,
        "machine": {
            "cpus": os.cpu_count(),
            "load_average_1m_at_end": round(os.getloadavg()[0], 2),
            "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "numba": numba.__version__,
            "pillow": PIL.__version__,
        },
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    verdict = "met" if result["goal_met"] else "NOT met"
    load = result["machine"]["load_average_1m_at_end"]
    print(f"goal {GOAL['images_per_s']:,}/s for {GOAL['preset']}: {verdict} (load average {load}) -> {out}")


if __name__ == "__main__":
    main()
