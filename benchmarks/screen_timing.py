"""How long locate + read takes on a 1920x1080 screenshot, measured with repeats.

screenshots.py times each of its 60 screens once, at the end of a long run, and on this 2-core machine one
pass moves with whatever else runs (8.7 to 16 ms for the same gnuboard5 screens). Here the same screens
(the desktop form of every 8th of the benchmark's 96 real images, at each DPR, pasted on a 1920x1080 screen
as screenshots.py pastes them) are each solved ``--passes`` times on one thread after a warm-up, and the
median of each screen is kept: what the code costs, less what the machine was doing.

    python benchmarks/screen_timing.py [--presets gnuboard5 kcaptcha-default] [--passes 7]

writes benchmarks/results/screen_timing.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

from screenshots import ROOT, SHARED, time_screens, timing_summary

from kcaptcha_solver.screenshot import DPRS, Renderer, sample_images
from kcaptcha_solver.solver import Solver


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["gnuboard5", "kcaptcha-default"])
    parser.add_argument("--count", type=int, default=96, help="the benchmark's real images per preset (default 96)")
    parser.add_argument("--start", type=int, default=100, help="first sample index (default 100)")
    parser.add_argument("--every", type=int, default=8, help="time every Nth image's form (default 8: 12 per DPR)")
    parser.add_argument("--passes", type=int, default=7, help="solves per screen; the median is kept (default 7)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "screen_timing.json")
    args = parser.parse_args()
    solver = Solver("auto")  # one onnxruntime thread, as Solver's default
    started = time.time()
    timings = {}
    for preset in args.presets:
        images = sample_images(SHARED / preset, args.count, args.start)[::args.every]
        with Renderer() as renderer:
            forms = [shot for dpr in DPRS
                     for shot in renderer.render(images, "desktop", dpr, crops=("form",), seed=int(dpr * 100))]
        timings[preset] = timing_summary(time_screens(solver, forms, args.passes))
    result = {
        "what": "locate + read of a Gnuboard form on a 1920x1080 screen, one thread, median of repeated solves",
        "passes": args.passes, "goal_ms": 15, "presets": timings,
        "wall_s": round(time.time() - started, 1), "load_average": os.getloadavg(),
        "machine": platform.machine(), "python": platform.python_version(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(timings, indent=1))


if __name__ == "__main__":
    main()
