"""How often glyphs sit closer together than a CTC step width can separate.

CTC emits at most one symbol per step, and a repeated symbol needs a blank step
between its two copies. So, reading glyph centres from the generator's boxes, a
string is *tight* for a step width s when two neighbours are less than s apart,
or two equal neighbours less than 2s apart. A tight string is one the network can
read only by moving emissions away from the glyphs themselves.

    python benchmarks/ctc_spacing.py [--preset kcaptcha-default] [--count 10000]

Writes benchmarks/results/ctc_spacing.json. Needs the fonts (KCAPTCHA_FONTS).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from kcaptcha_solver.generator import Generator, get_preset

ROOT = Path(__file__).resolve().parents[1]
SEED = 5_000_000  # a training-range seed block no shipped run used
STEPS = (2, 4, 8)


def tight(label: str, boxes: list[tuple[int, int, int, int]], step: int) -> bool:
    """Whether some neighbours are too close for CTC steps ``step`` px apart."""
    centres = [(x0 + x1) / 2 for x0, _, x1, _ in boxes]
    for i in range(len(centres) - 1):
        gap = centres[i + 1] - centres[i]
        if gap < (2 * step if label[i] == label[i + 1] else step):
            return True
    return False


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="kcaptcha-default")
    ap.add_argument("--count", type=int, default=10000)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "ctc_spacing.json")
    args = ap.parse_args()
    gen = Generator(get_preset(args.preset))
    counts = dict.fromkeys(STEPS, 0)
    for sample in gen.samples(SEED, args.count, boxes=True):
        for step in STEPS:
            counts[step] += tight(sample.label, sample.boxes, step)
    result = {"preset": args.preset, "count": args.count, "first_seed": SEED,
              "tight_percent": {f"{step}px": round(100 * counts[step] / args.count, 2) for step in STEPS}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
