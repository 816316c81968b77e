"""Calibrate each shipped model's ``sure_min`` on generated images and write it into its files.

    nice python tools/calibrate.py src/kcaptcha_solver/models --count 10000

For every NAME.onnx in the folder: draw ``--count`` images of its preset with our generator (seeds from
``--seed``, never the evaluation range 70,000,000-89,999,999, nor the 90,000,000 range training picked
its checkpoints on), read them with the same Solver users get, and pick the threshold by one rule:

    sure_min = above every wrong answer's score (never below 0.5: below it another string could be
               likelier); while that leaves fewer than 97 % of the answers sure, one wrong answer lower,
               as long as the sure answers keep the promise: their error rate below 0.1 % at 95 %
               confidence (exact binomial, Clopper-Pearson upper bound, the wrong ones counted)

With no wrong answer sure the promise needs n >= 2,995 sure answers (the rule of three: 3/n); with one,
4,742; with four, 9,151. So one confidently wrong draw among 10,000 cannot leave most answers unsure
(kcaptcha-default's screen-trained model scored one wrong answer 0.9992: above it, 17 % of its right
answers were unsure), while a model that is sure of 97 % keeps the strictest threshold: a lower one
would also make more captchas of other configurations sure. A general model's threshold is then raised until
each fixed non-preset family (``--family-count`` images each) has at most 0.1 % of its sure answers wrong, so
that no kind of deployment pays for the mixture's easy ones. A second, independent generated set
(``--holdout`` images from ``--holdout-seed``) then
measures the chosen threshold where it was not chosen: that is the figure to quote. The threshold goes
into NAME.onnx and tfjs/NAME/model.json (write_reading.py: the weights are not touched), the figures into
benchmarks/results/calibration.json. The real PHP sample is never used here; ``kcaptcha evaluate``
checks the result on it (tests/test_models.py: no wrong answer sure).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
from tqdm import tqdm
from write_reading import update_onnx, update_tfjs

from kcaptcha_solver import general
from kcaptcha_solver.generator import PRESETS, Generator, Sample, get_preset
from kcaptcha_solver.solver import ModelInfo, Solver, fits, read_model_info
from kcaptcha_solver.trainconfig import RESERVED_SEEDS as RESERVED  # the evaluation seeds (DEVELOPERS.md)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "calibration.json"
FLOOR = 0.5  # above half, no other string can be likelier: the least a sure answer must have
RULE = ("sure_min = the highest of 0.5 and each wrong answer's score + 0.0001 at which 97 % of answers are sure, "
        "or failing that the lowest at which the sure answers' error rate stays below 0.1 % at 95 % confidence "
        "(Clopper-Pearson upper bound; scores compared rounded to 4 places)")
PROMISE = 0.001  # at most this error rate among sure answers, at 95 % confidence
# As many sure answers as this is enough: a lower threshold would only make more captchas of other configurations
# sure (at 0.73, gnuboard5 was sure of 116 of 300 hex 160x60 captchas, 100 of them wrong; tools/eval_any.py auto).
SHARE = 0.97
# A general model's sure answers must keep the promise on each kind of deployment, not only over the mixture:
# its hardest family (2.x-alnum) held 4 wrong of its 277 sure answers at the mixture's threshold.
FAMILIES = tuple(f for f in general.FAMILIES if f != general.NAME and f not in PRESETS)
FAMILY_RULE = ("; a general model's then raised to the lowest at which no more than 0.1 % of the sure answers of each"
               " fixed non-preset family (general.FAMILIES) are wrong")
STEP = 1e-4  # scores are reported, and compared with sure_min, rounded to 4 places


def drawer(info: ModelInfo, family: str = general.NAME) -> Callable[[int], Sample]:
    """Sample ``seed`` of a model's preset with every symbol the model reads (a gnuboard5 model that also reads
    Gnuboard's hex line is calibrated on hex captchas, of which digit-only ones are a part); for a general model
    (preset ``any``), of the configuration that seed draws from the whole space (general.py: the distribution it
    was trained on; all 25 atlases in $KCAPTCHA_FONTS)."""
    if info.general:
        return lambda seed: general.sample(seed, family=family)
    gen = Generator(replace(get_preset(info.preset), allowed_symbols=info.classes))
    return lambda seed: gen.draw(seed, boxes=False)


def scores(model: Path, seed: int, count: int, family: str = general.NAME, batch: int = 256
           ) -> tuple[np.ndarray, np.ndarray]:
    """Score and correctness of each of ``count`` generated images of the model's preset (a general model:
    of ``family``)."""
    solver = Solver(model)
    draw = drawer(solver.info, family)
    got, right = [], []
    bar = tqdm(total=count, desc=f"{solver.name} {family}" if solver.info.general else solver.name, unit="img",
               leave=False)
    for start in range(seed, seed + count, batch):
        samples = [draw(s) for s in range(start, min(start + batch, seed + count))]
        for sample, result in zip(samples, solver.solve_many([s.pixels() for s in samples]), strict=True):
            got.append(result.score if fits(result.text, solver.info) else 0.0)  # else never sure
            right.append(result.text == sample.label)
        bar.update(len(samples))
    bar.close()
    return np.asarray(got), np.asarray(right)


def error_bound(n: int, wrong: int, confidence: float = 0.95) -> float:
    """Clopper-Pearson upper bound on the error rate of ``n`` answers of which ``wrong`` are wrong: the p at
    which seeing ``wrong`` or fewer has probability 1 - ``confidence`` (found by bisection)."""
    def at_most(p: float) -> float:  # P(X <= wrong) for X ~ Binomial(n, p), summed in logs
        return sum(math.exp(math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1)
                            + i * math.log(p) + (n - i) * math.log1p(-p)) for i in range(wrong + 1))
    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if at_most(mid) > 1 - confidence else (lo, mid)
    return hi


def candidates(score: np.ndarray, right: np.ndarray) -> list[float]:
    """The thresholds the rules try, highest first: just above each wrong answer's score, and FLOOR."""
    return sorted({round(max(FLOOR, float(s) + STEP), 4) for s in score[~right]} | {FLOOR}, reverse=True)


def threshold(score: np.ndarray, right: np.ndarray) -> float:
    """The rule in RULE: from above every wrong answer down, one wrong answer at a time, while fewer than
    SHARE are sure and the promise still holds."""
    best = 1.0 + STEP
    for t in candidates(score, right):
        sure = score >= t
        if sure.any() and error_bound(int(sure.sum()), int((sure & ~right).sum())) > PROMISE:
            break
        best = t
        if sure.mean() >= SHARE:
            break
    return round(best, 4)


def family_threshold(score: np.ndarray, right: np.ndarray) -> float:
    """The lowest threshold, from above every wrong answer down, at which at most PROMISE of one family's sure
    answers are wrong (a point estimate: a family set is too small for the 95 % bound to leave much sure)."""
    best = 1.0 + STEP
    for t in candidates(score, right):
        sure = score >= t
        if (sure & ~right).sum() > PROMISE * sure.sum():
            break
        best = t
    return round(best, 4)


def figures(score: np.ndarray, right: np.ndarray, sure_min: float) -> dict:
    """What calibration.json records for one set of images read with ``sure_min``."""
    sure = score >= sure_min
    n_sure = int(sure.sum())
    return {
        "images": len(score),
        "accuracy": round(100 * float(right.mean()), 3),
        "sure_min": sure_min,
        "share_sure": round(100 * n_sure / len(score), 3),
        "accuracy_of_sure": round(100 * float(right[sure].mean()), 3) if n_sure else None,
        "wrong_and_sure": int((sure & ~right).sum()),
        "wrong_scores": sorted((round(float(s), 4) for s in score[~right]), reverse=True)[:20],
        # the sure answers' error rate is below this, at 95 % confidence (Clopper-Pearson)
        "sure_error_below_95pct": round(100 * error_bound(n_sure, int((sure & ~right).sum())), 3) if n_sure else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", type=Path, help="folder of NAME.onnx files (and tfjs/NAME/model.json)")
    ap.add_argument("--count", type=int, default=10_000, help="generated images per model")
    ap.add_argument("--seed", type=int, default=95_000_000, help="first seed (outside 70,000,000-89,999,999)")
    ap.add_argument("--holdout", type=int, default=10_000, help="images per model to check the threshold on")
    ap.add_argument("--holdout-seed", type=int, default=96_000_000, help="first seed of the check set")
    ap.add_argument("--family-count", type=int, default=5_000,
                    help="a general model: images of each fixed family, from --seed (and --holdout-seed); 0: none")
    ap.add_argument("--only", nargs="*", help="model names to calibrate (default: every one in the folder)")
    ap.add_argument("--dry-run", action="store_true", help="measure and print; write nothing")
    args = ap.parse_args()
    count, holdout = max(args.count, args.family_count), max(args.holdout, args.family_count)
    for first, n in ((args.seed, count), (args.holdout_seed, holdout)):
        if first < RESERVED.stop and first + n > RESERVED.start:
            raise SystemExit(f"seeds {first}..{first + n - 1} touch the evaluation range 70M-90M")
    if args.seed < args.holdout_seed + holdout and args.holdout_seed < args.seed + count:
        raise SystemExit("the calibration and check seeds overlap")
    done = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    for path in sorted(args.models.glob("*.onnx")):
        if args.only and path.stem not in args.only:
            continue
        start = time.perf_counter()
        info = read_model_info(path)
        score, right = scores(path, args.seed, args.count)
        sure_min = threshold(score, right)
        fams = FAMILIES if info.general and args.family_count else ()
        family_sets = {f: scores(path, args.seed, args.family_count, f) for f in fams}
        bounds = {f: family_threshold(*family_sets[f]) for f in fams}
        sure_min = max([sure_min, *bounds.values()])
        row = {"preset": info.preset, "seeds": [args.seed, args.seed + args.count - 1],
               **figures(score, right, sure_min), "rule": RULE + (FAMILY_RULE if fams else "")}
        if fams:
            row["families"] = {f: {"bound": bounds[f], **figures(*family_sets[f], sure_min)} for f in fams}
        if args.holdout:
            score, right = scores(path, args.holdout_seed, args.holdout)
            row["holdout"] = {"seeds": [args.holdout_seed, args.holdout_seed + args.holdout - 1],
                              **figures(score, right, sure_min)}
            if fams:
                row["holdout"]["families"] = {
                    f: figures(*scores(path, args.holdout_seed, args.family_count, f), sure_min) for f in fams}
        row["seconds"] = round(time.perf_counter() - start, 1)
        print(json.dumps({path.stem: row}))
        if args.dry_run:
            continue
        reading = replace(info.reading, sure_min=sure_min)
        update_onnx(path, reading)
        tfjs = args.models / "tfjs" / path.stem / "model.json"
        if tfjs.is_file():
            update_tfjs(tfjs, reading)
        done[path.stem] = row
        RESULTS.write_text(json.dumps(done, indent=2) + "\n")


if __name__ == "__main__":
    main()
