"""Which KCAPTCHA settings make a captcha hard to read: accuracy of a model per setting of the whole space.

A site owner choosing a configuration, and whoever trains the general model next, want the same
table: which choices (engine, atlases, symbols, length, fluctuation, spaces, noise, colours, format,
room per symbol) cost the reader most. Sample ``k`` is ``general.configured(first_seed + k)``: a
``random_config`` draw and its image, encoded as PHP sends it and read by ``Solver(model)`` as a user
reads it. Each setting splits the same images into buckets, so a bucket's accuracy mixes every other
setting as the training distribution does (the buckets of one setting are not controlled experiments).
Also reports how answers go wrong (a symbol dropped, one added, one swapped) and the commonest swaps.

    python benchmarks/any_settings.py [kcaptcha-any | auto | FILE.onnx] [--count 3000]

Seeds from 96,000,000: the first 1,000 are tools/eval_any.py's ``any`` family, so the overall figure
matches the model card's. Writes benchmarks/results/any_settings.json and any_settings.png (one bar
chart per setting). Needs all 25 atlases in one folder (KCAPTCHA_FONTS).
"""

from __future__ import annotations

import argparse
import itertools
import json
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path

from tqdm import tqdm

from kcaptcha_solver import Solver, general
from kcaptcha_solver.errors import InputError
from kcaptcha_solver.fonts import FONTS_1_2
from kcaptcha_solver.generator import ALPHABET, SYMBOL_SETS, CaptchaConfig

ROOT = Path(__file__).resolve().parents[1]
FIRST_SEED = 96_000_000  # tools/eval_any.py's `any` family
BATCH = 256
SYMBOL_NAMES = {symbols: name for name, symbols in SYMBOL_SETS.items()} | {ALPHABET: "all 36"}


def _bucket(value: float, edges: tuple[float, ...], unit: str = "") -> str:
    """``value``'s bucket among ``edges`` (each a bucket's lowest value), e.g. "24-31" or "64+"."""
    for low, high in itertools.pairwise(edges):
        if low <= value < high:
            return f"{low:g}-{high - 1:g}{unit}" if high - low > 1 else f"{low:g}{unit}"
    return f"{edges[-1]:g}+{unit}"


def _colours(config: CaptchaConfig) -> str:
    if config.foreground == ((0, 0),) * 3 and config.background == ((255, 255),) * 3:
        return "black on white"
    fixed = all(lo == hi for lo, hi in config.foreground + config.background)
    return "one fixed pair" if fixed else "random per image"


def _format(config: CaptchaConfig) -> str:
    if config.image_format == "png":
        return "PNG"
    return "JPEG q" + _bucket(config.jpeg_quality, (50, 75, 90))


# setting -> its bucket for one captcha (configuration, true string)
SETTINGS: dict[str, Callable[[CaptchaConfig, str], str]] = {
    "engine": lambda c, _: {"2.x": "KCAPTCHA 2.x", "1.2": "gnuboard 5.1+ (1.2.6 modified)",
                            "1.2-original": "KCAPTCHA 1.2.6"}[c.engine],
    "atlases": lambda c, _: "1.2.x's 22 older" if c.fonts == FONTS_1_2 else "2.x's 3 bold",
    "symbols": lambda c, _: SYMBOL_NAMES.get(c.allowed_symbols, "a random subset"),
    "length": lambda _, text: str(len(text)),
    "fluctuation": lambda c, _: _bucket(c.fluctuation_amplitude, (0, 3, 6, 9)),
    "spaces": lambda c, _: "no_spaces" if c.no_spaces else "spaces",
    "noise": lambda c, _: "on" if c.white_noise_density or c.black_noise_density else "off",
    "colours": lambda c, _: _colours(c),
    "format": lambda c, _: _format(c),
    "room per symbol": lambda c, text: _bucket(c.width / len(text), (0, 24, 32, 48, 64), " px"),
    "height": lambda c, _: _bucket(c.height, (40, 60, 80), " px"),
}


def error_kind(truth: str, text: str) -> str:
    """How a reading went wrong: a symbol dropped or added (the length differs), or swapped."""
    if len(text) != len(truth):
        return "dropped" if len(text) < len(truth) else "added"
    return "swapped"


def measure(model: str, count: int, first_seed: int) -> dict:
    """Read ``count`` captchas of the whole space and split the accuracy by every setting."""
    solver = Solver(model)
    drawn = [general.configured(first_seed + k) for k in tqdm(range(count), desc="drawing", unit="img")]
    tally: dict[str, dict[str, Counter]] = {name: defaultdict(Counter) for name in SETTINGS}
    kinds: Counter[str] = Counter()
    swaps: Counter[tuple[str, str]] = Counter()
    right = sure = 0
    for i in tqdm(range(0, count, BATCH), desc="reading", unit="batch"):
        chunk = drawn[i : i + BATCH]
        for (config, sample), got in zip(chunk, solver.solve_many([s.encode() for _, s in chunk]), strict=True):
            text = "" if isinstance(got, InputError) else got.text
            ok, is_sure = text == sample.label, not isinstance(got, InputError) and got.sure
            right += ok
            sure += is_sure
            for name, bucket_of in SETTINGS.items():
                cell = tally[name][bucket_of(config, sample.label)]
                cell.update(count=1, right=ok, sure=is_sure)
            if not ok:
                kinds[error_kind(sample.label, text)] += 1
                if len(text) == len(sample.label):
                    swaps.update((a, b) for a, b in zip(sample.label, text, strict=True) if a != b)
    settings = {name: [{"value": value, "count": c["count"], "accuracy": round(100 * c["right"] / c["count"], 2),
                        "sure": round(100 * c["sure"] / c["count"], 2)} for value, c in sorted(buckets.items())]
                for name, buckets in tally.items()}
    return {"model": model, "count": count, "first_seed": first_seed, "symbols": ALPHABET,
            "accuracy": round(100 * right / count, 2), "sure": round(100 * sure / count, 2),
            "errors": dict(kinds.most_common()),
            "swaps": [{"truth": a, "read": b, "count": n} for (a, b), n in swaps.most_common(20)],
            "settings": settings}


def plot(result: dict, path: Path) -> None:
    """One horizontal bar chart per setting: accuracy per bucket, with its image count."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    settings = result["settings"]
    cols = 3
    rows = -(-len(settings) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 2.3 * rows), squeeze=False)
    low = min(b["accuracy"] for buckets in settings.values() for b in buckets)
    for ax, (name, buckets) in zip(axes.flat, settings.items(), strict=False):  # spare axes are switched off
        labels = [f"{b['value']} ({b['count']})" for b in buckets]
        ax.barh(labels, [b["accuracy"] for b in buckets], color="#4a7bb7")
        ax.axvline(result["accuracy"], color="#c0392b", linewidth=1)
        ax.set_xlim(max(0.0, low - 5), 100)
        ax.invert_yaxis()
        ax.set_title(name, fontsize=10)
        ax.tick_params(labelsize=8)
    for ax in list(axes.flat)[len(settings):]:
        ax.axis("off")
    fig.suptitle(f"{result['model']}: full-string accuracy (%) per setting, {result['count']:,} captchas of the "
                 f"whole space (red: all, {result['accuracy']} %)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("model", nargs="?", default=general.MODEL_NAME, help="model name, 'auto' or .onnx file")
    parser.add_argument("--count", type=int, default=3000, help="captchas of the whole space")
    parser.add_argument("--first-seed", type=int, default=FIRST_SEED)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/any_settings.json",
                        help="results file; the chart goes beside it (.png)")
    args = parser.parse_args()
    result = measure(args.model, args.count, args.first_seed)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    plot(result, args.out.with_suffix(".png"))
    print(f"{result['model']}: {result['accuracy']} % of {result['count']:,} ({result['sure']} % sure); "
          f"errors {result['errors']}")
    for name, buckets in result["settings"].items():
        print(f"  {name:16s} " + "  ".join(f"{b['value']}: {b['accuracy']} % ({b['count']})" for b in buckets))
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
