"""Ship a trained run: export it into the package and write its model card from measured figures.

    python tools/ship_model.py runs/gnuboard5 --shared ../shared/real-kcaptcha

Exports ONNX + TF.js into src/kcaptcha_solver/models/, evaluates the ONNX file on
the real PHP sample with the same code as ``kcaptcha evaluate``, and writes
models/<name>.md with the exact training command, seeds, images seen, wall time
and accuracy. Nothing in the card is typed by hand.
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
from pathlib import Path

from eval_any import EVAL_SEED, families, score

from kcaptcha_solver import Solver, general
from kcaptcha_solver.evaluate import evaluate
from kcaptcha_solver.export import export
from kcaptcha_solver.generator import Generator
from kcaptcha_solver.trainconfig import TrainConfig

MODELS = Path(__file__).resolve().parents[1] / "src" / "kcaptcha_solver" / "models"


def command(cfg: TrainConfig, out: str) -> str:
    """The ``kcaptcha train`` line that reproduces ``cfg`` (every value explicit)."""
    return " ".join(["kcaptcha train", *cfg.recipe_args(), "--out", out])


def metrics(run: Path) -> list[dict]:
    """The rows of a run's metrics.csv, one per epoch."""
    with open(run / "metrics.csv") as fh:
        return list(csv.DictReader(fh))


def hardware(rows: list[dict]) -> str:
    """Where a run trained, from its metrics (runs older than the ``device`` column ran on this CPU)."""
    device = rows[-1].get("device") or "cpu"
    if device == "cpu":
        return f"this machine's CPU ({platform.machine()}, 2 cores, shared with other work)"
    return f"one {device} GPU, images drawn by its CPU cores"


def seen(cfg: TrainConfig, rows: list[dict]) -> tuple[int, str]:
    """Images a run trained on, from its metrics (a run cut by its time limit saw fewer than its command asks),
    and how the card says so."""
    images = int(rows[-1]["samples"])
    if images == cfg.train_samples:
        return images, f"{cfg.epochs} epochs x {cfg.steps_per_epoch} steps x {cfg.batch_size}"
    return images, (f"{len(rows)} of its {cfg.epochs} epochs x {cfg.steps_per_epoch} steps x {cfg.batch_size}: "
                    f"`timeout` cut the run, and its schedule's last epochs never ran")


def ancestry(cfg: TrainConfig) -> str:
    """Card rows for each run this one was fine-tuned from (``--init`` chains), nearest first."""
    import torch

    rows = ""
    while cfg.init:
        ckpt = torch.load(cfg.init, map_location="cpu", weights_only=False)
        if "source" in ckpt:  # a shipped model file made trainable by tools/onnx_checkpoint.py: its card's history
            rows += (f"| started from | `{cfg.init}`: the shipped `{Path(ckpt['source']).name}` made a checkpoint "
                     f"again by `python tools/onnx_checkpoint.py` (its runs follow, as its card gave them) |\n")
            earlier = ("| command |", "| started from |", "| training seeds |", "| images seen |", "| wall time |")
            lines = ckpt["card"].splitlines()
            rows += "".join(line.replace("| ", "| earlier: ", 1) + "\n" for line in lines if line.startswith(earlier))
            # and the runs before those, when that model too was fine-tuned from a shipped file
            before = tuple(e.replace("| ", "| earlier: ", 1) for e in earlier)
            rows += "".join(line.replace("| earlier: ", "| earlier still: ", 1) + "\n" for line in lines
                            if line.startswith(before))
            break
        base = TrainConfig.from_dict(ckpt["train_config"])
        run = Path(cfg.init).parent
        rows_base = metrics(run)
        minutes = float(rows_base[-1]["wall_s"]) / 60
        images, _ = seen(base, rows_base)
        rows += (f"| started from | `{cfg.init}`, made by `{command(base, str(run))}`: {images:,} more "
                 f"images, seeds {base.seed:,} .. {base.seed + images - 1:,}, {minutes:.1f} min on "
                 f"{hardware(rows_base)} |\n")
        cfg = base
    return rows


def run_rows(args: argparse.Namespace, cfg: TrainConfig, name: str, written: dict, weights: str, fonts: str) -> str:
    """The card's table rows that every model has: how it was trained (its fine-tune chain included), its files."""
    rows = metrics(args.run)
    best = max(rows, key=lambda r: float(r["val_acc"]))
    onnx_path = written["onnx"]
    tfjs_bytes = sum(f.stat().st_size for f in written["tfjs"].rglob("*") if f.is_file())
    images, how = seen(cfg, rows)
    return f"""| command | `{command(cfg, str(args.run))}` (with `KCAPTCHA_FONTS` pointing at {fonts}) |
{ancestry(cfg)}| training seeds | {cfg.seed:,} .. {cfg.seed + images - 1:,} (fresh images every step, never the evaluation range 70M-90M) |
| images seen | {images:,} ({how}) |
| validation | {cfg.val_count:,} generated images from seed {cfg.val_seed:,}: best {100 * float(best['val_acc']):.2f} % at epoch {best['epoch']} |
| wall time | {float(rows[-1]['wall_s']) / 60:.1f} min for the whole run on {hardware(rows)} |
| ONNX file | `{onnx_path.name}`, {onnx_path.stat().st_size:,} bytes ({weights}) |
| TF.js graph model | `tfjs/{name}/`, {tfjs_bytes:,} bytes |
"""


# A model trained with --config is measured on its configuration too, from here (after eval_any.py's families).
CONFIG_SEED, CONFIG_COUNT = EVAL_SEED + 10_000_000, 1000


def config_rows(cfg: TrainConfig, onnx_path: Path) -> str:
    """For a run with ``--config`` (Gnuboard's hex line, say): what the file holds and how the model reads
    generated, PHP-encoded images of that configuration; the real sample holds only the preset's."""
    if not cfg.config:
        return ""
    gen = Generator(cfg.captcha_config())
    samples = [gen.draw(seed, boxes=False) for seed in range(CONFIG_SEED, CONFIG_SEED + CONFIG_COUNT)]
    got = score(Solver(onnx_path), [s.encode() for s in samples], [s.label for s in samples])
    return (f"| its configuration | `FILE.json` holds `{json.dumps(cfg.config)}`, on top of the preset: "
            f"{got['accuracy']:.2f} % of {CONFIG_COUNT:,} generated, PHP-encoded images of it (seeds from "
            f"{CONFIG_SEED:,}), {got['sure']:,} sure ({got['sure_wrong']} wrong) |\n")


def trained(cfg: TrainConfig) -> str:
    """How the card says the model was trained."""
    return "trained from scratch" + (" and fine-tuned (the runs are listed below)" if cfg.init else "")


def general_card(args: argparse.Namespace, cfg: TrainConfig, name: str, written: dict, weights: str) -> None:
    """The card of a general model: no real PHP sample of its configurations exists here, so it is measured on
    PHP-encoded generated images of each configuration family (tools/eval_any.py, the generator being bit-exact:
    benchmarks/fidelity.py), read by the Solver users get; "auto" beside it is the shipped catalogue's routing."""
    solver = Solver(written["onnx"])
    sure_min = solver.info.reading.sure_min
    alone = families(solver, args.family_count)
    auto = families(Solver("auto"), args.family_count)
    table = "\n".join(
        f"| `{family}` | {alone[family]['accuracy']:.2f} % | {alone[family]['sure']} ({alone[family]['sure_wrong']} wrong) "
        f"| {auto[family]['accuracy']:.2f} % | {auto[family]['sure']} ({auto[family]['sure_wrong']} wrong) "
        f"| {', '.join(f'{m} {n}' for m, n in sorted(auto[family]['read_by'].items()))} |"
        for family in general.FAMILIES)
    card = f"""# Model `{name}`

The general model (issue 13): reads any KCAPTCHA configuration, 2-7 characters of `{general.TASK.classes}`, from
any picture stretched to {general.WIDTH}x{general.HEIGHT} (`kcaptcha_solver/general.py` gives the distribution).
Architecture `{cfg.arch}` (see `kcaptcha_solver/model.py`), {trained(cfg)}. "auto" gives it every picture
that is not a preset model's size, and a second reading of what a preset model read of a captcha that may be
another configuration's (`Solver._read`, `solver.prefer_general`).

**Accuracy**: {alone[general.NAME]['accuracy']:.2f} % on {args.family_count:,} PHP-encoded generated images of the
whole space (`any`; per family below). No real PHP images of these configurations are at hand.

| | |
|---|---|
{run_rows(args, cfg, name, written, weights, "all 25 atlases")}| sure_min | {sure_min} (`tools/calibrate.py`, generated images of the whole space: `benchmarks/results/calibration.json`) |
| measured by | `python tools/eval_any.py src/kcaptcha_solver/models/{name}.onnx --count {args.family_count}` and the same with `auto` |

Per configuration family ({args.family_count:,} images each, seeds from {EVAL_SEED:,}; "sure" counts use the file's
`sure_min` at the time of measuring):

| family | this model | sure (wrong) | `auto` | sure (wrong) | `auto` read them with |
|---|---|---|---|---|---|
{table}
"""
    (MODELS / f"{name}.md").write_text(card)
    print(card)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--shared", type=Path, default=Path("../shared/real-kcaptcha"))
    ap.add_argument("--name")
    ap.add_argument("--float32", action="store_true", help="keep float32 weights (when float16 fails the check)")
    ap.add_argument("--family-count", type=int, default=1000,
                    help="a general model (preset any): generated images per configuration family it is measured on")
    ap.add_argument("--card-only", action="store_true",
                    help="measure the files already shipped and write the card (after tools/calibrate.py)")
    args = ap.parse_args()
    cfg = TrainConfig.from_dict(json.loads((args.run / "train_config.json").read_text()))
    name = args.name or (general.MODEL_NAME if cfg.preset == general.NAME else cfg.preset)
    written = ({"onnx": MODELS / f"{name}.onnx", "tfjs": MODELS / "tfjs" / name} if args.card_only
               else export(args.run / "best.pt", MODELS, ("onnx", "tfjs"), name=name, float16=not args.float32))
    weights = "float32 weights" if args.float32 else "float16 weights, float32 arithmetic"
    if cfg.preset == general.NAME:
        general_card(args, cfg, name, written, weights)
        return
    report, _ = evaluate(written["onnx"], args.shared / cfg.preset)
    errors = "\n".join(f"| `{e['file']}` | `{e['truth']}` | `{e['prediction']}` |" for e in report.errors)
    card = f"""# Model `{name}`

Reads `{cfg.preset}` KCAPTCHA images ({cfg.captcha_config().image_size[0]}x{cfg.captcha_config().image_size[1]},
{cfg.captcha_config().length[0]}-{cfg.captcha_config().length[1]} characters of `{cfg.captcha_config().classes}`).
Architecture `{cfg.arch}` (see `kcaptcha_solver/model.py`), {trained(cfg)}.

**Accuracy**: {100 * report.accuracy:.2f} % on the shared real PHP sample ({report.correct}/{report.count} images;
per character {100 * report.char_accuracy:.3f} %)

| | |
|---|---|
{run_rows(args, cfg, name, written, weights, "the atlases")}{config_rows(cfg, written["onnx"])}| measured by | `kcaptcha evaluate {args.shared / cfg.preset} --model {name}` |

Misread images of the shared sample:

| file | truth | read |
|---|---|---|
{errors or "| (none) | | |"}
"""
    (MODELS / f"{name}.md").write_text(card)
    print(card)


if __name__ == "__main__":
    main()
