"""How long the gnuboard5 model takes to train from scratch on this CPU, and to what accuracy.

    python benchmarks/train_time.py                      # train now (about 25 min on 2 cores), then measure
    python benchmarks/train_time.py --from-run runs/gnuboard5   # measure a finished run of the same command

Writes benchmarks/results/train_gnuboard5.json (wall time per epoch, the validation
curve, accuracy of the exported model on the real PHP sample) and a copy of the curve plot.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
COMMAND = ["train", "--preset", "gnuboard5", "--epochs", "12", "--steps", "200", "--batch-size", "96",
           "--seed", "1000000", "--quiet"]


def kcaptcha(*args: str) -> subprocess.CompletedProcess:
    res = subprocess.run([sys.executable, "-m", "kcaptcha_solver.cli", *args], capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"kcaptcha {' '.join(args)} failed ({res.returncode}):\n{res.stderr}")
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--from-run", type=Path, help="a finished run of the same command to measure instead")
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "real-kcaptcha")
    args = ap.parse_args()
    run = args.from_run
    started = time.time()
    if run is None:
        run = Path(tempfile.mkdtemp(prefix="train-bench-"))
        kcaptcha(*COMMAND, "--out", str(run))
    total_wall = time.time() - started if args.from_run is None else None
    with open(run / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    with tempfile.TemporaryDirectory() as tmp:
        kcaptcha("export", str(run / "best.pt"), "--out", str(Path(tmp) / "m.onnx"))
        report = json.loads(kcaptcha("evaluate", str(args.shared / "gnuboard5"), "--model",
                                     str(Path(tmp) / "m.onnx"), "--json", "--gallery",
                                     str(Path(tmp) / "g.png")).stdout)
    RESULTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(run / "curves.png", RESULTS / "train_gnuboard5_curves.png")
    result = {
        "command": "kcaptcha " + " ".join(COMMAND),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "training_wall_min": round(float(rows[-1]["wall_s"]) / 60, 1),
        "process_wall_min": round(total_wall / 60, 1) if total_wall else None,
        "images_seen": int(rows[-1]["samples"]),
        "epochs": [{k: float(v) for k, v in r.items()} for r in rows],
        "shared_sample": {k: report[k] for k in ("count", "accuracy", "char_accuracy")},
        "shared_sample_errors": report["errors"],
    }
    (RESULTS / "train_gnuboard5.json").write_text(json.dumps(result, indent=2))
    print(f"training {result['training_wall_min']} min, {result['images_seen']:,} images; "
          f"real PHP sample {100 * report['accuracy']:.2f} % ({report['count']} images)")


if __name__ == "__main__":
    main()
