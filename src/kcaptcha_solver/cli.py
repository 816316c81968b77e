"""The ``kcaptcha`` command: one sub-command per verb, each importing its module only when run.

This is the only place that prints errors: library code raises
:class:`~kcaptcha_solver.errors.KcaptchaError`, and ``main`` turns it into one
``error: ...`` line and a non-zero exit code.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from .errors import ConfigError, KcaptchaError

Adder = Callable[[argparse._SubParsersAction], None]
VERBS: list[Adder] = []


def verb(fn: Adder) -> Adder:
    """Register a function that adds one sub-command (its parser sets ``run``)."""
    VERBS.append(fn)
    return fn


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kcaptcha",
        description="Generate, train on, and solve KCAPTCHA images (the Gnuboard 5 captcha).",
    )
    sub = parser.add_subparsers(dest="verb", metavar="COMMAND", required=True)
    for add in VERBS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with ``argv`` (default: ``sys.argv[1:]``); returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        return args.run(args) or 0
    except KcaptchaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


# -- verbs ---------------------------------------------------------------------
# Each adder below defines one sub-command; keep them in the order of the data path:
# fonts, generate, train, export, evaluate, models, solve, serve, web, site.


@verb
def _add_fonts(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fonts", help="download, locate or build KCAPTCHA font atlases")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    d = actions.add_parser("download", help="fetch the three original atlases (pinned, sha256-checked)")
    d.add_argument("--dest", help="folder to write (default: the user fonts folder)")
    d.add_argument("--base-url", help="where the atlases are served (default: $KCAPTCHA_FONTS_URL or GitHub)")
    d.set_defaults(run=_run_fonts_download)
    b = actions.add_parser("build", help="draw a new atlas from a TrueType/OpenType font")
    b.add_argument("font", metavar="FONT.ttf")
    b.add_argument("--out", required=True, metavar="ATLAS.png")
    b.add_argument("--size", type=int, help="font size in px (default: digits as tall as the originals')")
    b.set_defaults(run=_run_fonts_build)
    w = actions.add_parser("path", help="print the fonts folder in use and whether the atlases are there")
    w.add_argument("--fonts", help="folder to check instead of $KCAPTCHA_FONTS / the user folder")
    w.set_defaults(run=_run_fonts_path)


def _run_fonts_download(args: argparse.Namespace) -> int:
    from .fonts import NOTICE, download_fonts

    folder = download_fonts(args.dest, args.base_url)
    print(f"fonts written to {folder}\n\n{NOTICE}")
    return 0


def _run_fonts_build(args: argparse.Namespace) -> int:
    from .fonts import build_atlas, load_atlas
    from .generator import ALPHABET

    if args.size is not None and not 8 <= args.size <= 200:
        raise ConfigError(f"--size must be within 8..200, got {args.size}")
    out = build_atlas(args.font, args.out, ALPHABET, args.size)
    atlas = load_atlas(out, ALPHABET)  # proves the generator can read it
    print(f"{out}: {len(atlas.glyphs)} glyphs, {atlas.height} px high")
    return 0


def _run_fonts_path(args: argparse.Namespace) -> int:
    from .fonts import fonts_present, resolve_fonts_dir

    present = fonts_present(args.fonts)
    print(resolve_fonts_dir(args.fonts))
    for name, ok in present.items():
        print(f"  {name}: {'present' if ok else 'missing'}")
    if not all(present.values()):
        print("run 'kcaptcha fonts download' to fetch the missing atlases")
    return 0 if all(present.values()) else 1


@verb
def _add_generate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "generate",
        help="write captcha images, bit-exact with PHP KCAPTCHA",
        description="Image i is drawn right after mt_srand(SEED + i) and saved as <label>_<i:06d>.<ext>.",
    )
    p.add_argument("--preset", default="gnuboard5", help="gnuboard5, seed-l2 or kcaptcha-default")
    p.add_argument("--config", metavar="FILE.json", help="CaptchaConfig fields over the preset (custom site)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--count", type=int, default=100)
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--workers", type=int, default=1, help="processes (output is the same for any number)")
    p.add_argument("--format", choices=("jpg", "png"), help="override the preset's image format")
    p.add_argument("--manifest", action="store_true", help="also write manifest.jsonl (labels, seeds, boxes)")
    p.add_argument("--fonts", metavar="DIR", help="atlas folder (default: $KCAPTCHA_FONTS, then user folder)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=_run_generate)


def _read_config(path: str | None) -> dict:
    """The JSON object of CaptchaConfig fields in ``--config FILE`` ({} without the option)."""
    import json

    if not path:
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            values = json.load(f)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read configuration {path}: {exc}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path} must hold a JSON object of CaptchaConfig fields")
    return values


def _run_generate(args: argparse.Namespace) -> int:
    from .generator import config_from_dict, generate_files, get_preset

    config = config_from_dict(_read_config(args.config), get_preset(args.preset))
    folder = generate_files(
        config, args.out, args.seed, args.count, workers=args.workers, image_format=args.format,
        manifest=args.manifest, fonts_dir=args.fonts, progress=not args.quiet,
    )  # fmt: skip
    print(f"{args.count} images -> {folder}")
    return 0


@verb
def _add_train(sub: argparse._SubParsersAction) -> None:
    from .generator import PRESETS

    p = sub.add_parser(
        "train",
        help="train a reader on fresh generated captchas",
        description="Train a CNN on captchas drawn on the fly by the bit-exact generator (no dataset on "
        "disk). Keeps the best checkpoint by validation full-string accuracy, a metrics CSV and a plot. "
        "Seeds 70,000,000-89,999,999 are reserved for evaluation and refused.",
    )
    p.add_argument("--preset", default="gnuboard5", help=f"captcha preset ({', '.join(PRESETS)})")
    p.add_argument("--config", help="JSON file of CaptchaConfig fields: train for your own site's settings")
    p.add_argument("--arch", default="cnn-small", help="architecture name (see kcaptcha_solver.model.ARCHS)")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--steps", type=int, default=200, help="optimizer steps per epoch")
    p.add_argument("--batch-size", type=int, default=96)
    p.add_argument("--lr", type=float, default=3e-3, help="peak learning rate (one-cycle)")
    p.add_argument("--seed", type=int, default=1_000_000, help="first training seed (sample k uses seed+k)")
    p.add_argument("--val-seed", type=int, default=90_000_000, help="first validation seed")
    p.add_argument("--val-count", type=int, default=2000)
    p.add_argument("--workers", type=int, default=1, help="generator processes feeding the trainer")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    p.add_argument("--device", default="auto",
                   help="auto (a GPU when torch sees one, else the CPU), cpu, or cuda[:N]")
    p.add_argument("--fonts", help="folder with the KCAPTCHA font atlases")
    p.add_argument("--out", default="runs/train", help="output folder (checkpoints, metrics.csv, curves.png)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    p.add_argument("--init", metavar="CHECKPOINT",
                   help="start from these weights (fine-tune, e.g. a preset model for your site's config)")
    p.add_argument("--screen", type=float, default=0.0, metavar="SHARE",
                   help="share of images seen as a screenshot shows them (scaled 0.55-2x and back), to read "
                   "screenshots (default 0)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    from .train import TrainConfig, describe, device_name, pick_device, train

    config = _read_config(args.config)
    cfg = TrainConfig(
        preset=args.preset, arch=args.arch, epochs=args.epochs, steps_per_epoch=args.steps,
        batch_size=args.batch_size, lr=args.lr, seed=args.seed, val_seed=args.val_seed,
        val_count=args.val_count, workers=args.workers, threads=args.threads, device=args.device,
        fonts_dir=args.fonts, config=config, init=args.init, screen=args.screen,
    )
    cfg.check_seeds()
    cfg.captcha_config()  # a bad preset or --config fails here, before anything is written
    print(f"{describe(cfg)}, on {device_name(pick_device(cfg.device))}", flush=True)
    best = train(cfg, args.out, resume=args.resume, progress=not args.quiet)
    print(f"best epoch {best['epoch']}: validation accuracy {100 * best['val_acc']:.2f}% -> {args.out}/best.pt")
    return 0


@verb
def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export a checkpoint to ONNX and/or TF.js",
        description="Write a trained checkpoint as an ONNX file and/or a TF.js graph model, preprocessing "
        "and metadata inside. The ONNX file is checked against PyTorch on generated captchas; a mismatch "
        "fails the export and writes nothing.",
    )
    p.add_argument("checkpoint", help="best.pt or last.pt from kcaptcha train")
    p.add_argument("--out", default="export", help="folder (gets NAME.onnx and tfjs/NAME/), or a .onnx path")
    p.add_argument("--format", action="append", choices=["onnx", "tfjs"], dest="formats",
                   help="format to write (repeatable; default: onnx)")
    p.add_argument("--name", help="model name stored in the metadata (default: the preset)")
    p.add_argument("--float32", action="store_true", help="keep float32 weights (default: float16 storage)")
    p.add_argument("--fonts", help="folder with the KCAPTCHA font atlases (for the check images)")
    p.set_defaults(run=_run_export)


def _run_export(args: argparse.Namespace) -> int:
    from .export import export

    written = export(args.checkpoint, args.out, tuple(args.formats or ["onnx"]), name=args.name,
                     float16=not args.float32, fonts_dir=args.fonts)
    for fmt, path in written.items():
        size = sum(f.stat().st_size for f in path.rglob("*")) if path.is_dir() else path.stat().st_size
        print(f"{fmt}: {path} ({size:,} bytes)")
    return 0


@verb
def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="accuracy of a model on a folder of labelled captchas",
        description="Run a model (shipped name or .onnx path) through onnxruntime on every "
        "<label>_<anything>.<ext> image of DIR; print full-string and per-character accuracy, confusions, "
        "and write a gallery of the misread images.",
    )
    p.add_argument("dir", help="folder of images named <label>_<anything>.<ext>")
    p.add_argument("--model", default="gnuboard5", help="shipped model name or path to an exported .onnx")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.add_argument("--gallery", help="PNG of the errors (default: kcaptcha-errors-<model>.png, if any errors)")
    p.add_argument("--min-accuracy", type=float, help="exit 3 when full-string accuracy (%%) is below this")
    p.set_defaults(run=_run_evaluate)


def _run_evaluate(args: argparse.Namespace) -> int:
    import json

    from .evaluate import evaluate, format_report, write_gallery

    report, gallery = evaluate(args.model, args.dir, progress=not args.json and sys.stderr.isatty())
    out = report.to_dict()
    if gallery:
        out["gallery"] = str(write_gallery(gallery, args.gallery or f"kcaptcha-errors-{report.model}.png"))
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(format_report(report))
        if gallery:
            print(f"  error gallery: {out['gallery']}")
    if args.min_accuracy is not None and 100 * report.accuracy < args.min_accuracy:
        print(f"error: accuracy {100 * report.accuracy:.2f}% is below --min-accuracy {args.min_accuracy}%",
              file=sys.stderr)
        return 3
    return 0


@verb
def _add_models(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the shipped models",
                       description="The models inside the package: size, preset, input, alphabet and the "
                       "accuracy on the real PHP sample recorded in each model card.")
    p.add_argument("--json", action="store_true", help="print a JSON list")
    p.set_defaults(run=_run_models)


def _run_models(args: argparse.Namespace) -> int:
    import json

    from .solver import shipped_models

    rows = [info.to_dict() for info in shipped_models().values()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'name':18} {'bytes':>9}  {'preset':18} {'input':8} {'length':7} {'accuracy':>9}  alphabet")
    for r in rows:
        acc = f"{r['accuracy']:.2f}%" if r.get("accuracy") is not None else "-"
        length = f"{r['length_min']}-{r['length_max']}" if r["length_min"] != r["length_max"] else str(r["length_max"])
        print(f"{r['name']:18} {r['bytes']:>9,}  {r['preset']:18} {r['width']}x{r['height']:<4} {length:7} "
              f"{acc:>9}  {r['classes']}")
    return 0


@verb
def _add_solve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "solve", help="read captcha images",
        description="Print 'FILE TEXT' per image. A file that cannot be read gets an error line and a "
        "non-zero exit at the end; the other files are still solved.",
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="image files; '-' reads one image from stdin")
    p.add_argument("--model", default="gnuboard5",
                   help="shipped model name, 'auto' (pick by image size), or a .onnx path")
    p.add_argument("--json", action="store_true", help="one JSON object per line: file plus the full result")
    p.set_defaults(run=_run_solve)


def _run_solve(args: argparse.Namespace) -> int:
    import json

    from .errors import ImageError
    from .solver import Solver

    solver = Solver(args.model)
    failed = 0
    for name in args.files:
        try:
            result = solver.solve(sys.stdin.buffer.read() if name == "-" else name)
        except ImageError as exc:
            print(f"error: {name}: {exc}", file=sys.stderr)
            failed += 1
            continue
        line = json.dumps({"file": name, **result.to_dict()}) if args.json else f"{name} {result.text}"
        print(line, flush=True)
    if failed:
        print(f"error: {failed} of {len(args.files)} files could not be read", file=sys.stderr)
    return 1 if failed else 0


@verb
def _add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve", help="HTTP solving service (FastAPI on uvicorn)",
        description="POST /solve (multipart field 'file', or a raw image body) -> JSON; GET /health, "
        "GET /models, docs at /docs. Needs the 'serve' extra: pip install 'kcaptcha-solver[serve]'.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--model", default="gnuboard5",
                   help="shipped model name, 'auto' (pick by image size), or a .onnx path")
    p.add_argument("--max-bytes", type=int, default=2 * 1024 * 1024, help="largest upload (413 above)")
    p.add_argument("--max-connections", type=int, default=128,
                   help="connections before answering 503 (bounds memory: each may hold an upload)")
    p.set_defaults(run=_run_serve)


def _run_serve(args: argparse.Namespace) -> int:
    try:
        from .service import serve
    except ModuleNotFoundError as exc:
        raise KcaptchaError(f"kcaptcha serve needs {exc.name}: pip install 'kcaptcha-solver[serve]'") from exc

    serve(args.model, host=args.host, port=args.port, max_bytes=args.max_bytes,
          max_connections=args.max_connections)
    return 0


@verb
def _add_web(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "web",
        help="serve the browser page locally",
        description="Serve the page that solves captchas in the browser (TF.js + WebAssembly; the image "
        "never leaves the browser) and open it. Needs the bundle: npm ci && npm run build.",
    )
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: the whole network)")
    p.add_argument("--no-open", action="store_true", help="do not open a browser")
    p.add_argument("--models", help="folder of TF.js models (NAME/model.json) instead of the shipped ones")
    p.set_defaults(run=_run_web)


def _run_web(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .web import site

    site.serve(args.host, args.port, Path(args.models) if args.models else site.MODELS_DIR, not args.no_open)
    return 0


@verb
def _add_site(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "site",
        help="write the browser page as a static site",
        description="Write the page, its runtime and the TF.js models into a folder that any static host "
        "(GitHub Pages, a web server) can publish as is.",
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    b = actions.add_parser("build", help="write the site into OUT")
    b.add_argument("out", help="output folder (created; files in it are overwritten)")
    b.add_argument("--models", help="folder of TF.js models (NAME/model.json) instead of the shipped ones")
    b.set_defaults(run=_run_site_build)


def _run_site_build(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .web import site

    written = site.build_site(args.out, Path(args.models) if args.models else site.MODELS_DIR)
    size = sum(p.stat().st_size for p in written)
    print(f"wrote {len(written)} files ({size:,} bytes) to {args.out}: publish the folder as is")
    return 0


if __name__ == "__main__":
    sys.exit(main())
