"""The ``kcaptcha`` command: one sub-command per verb, each importing its module only when run.

This is the only place that prints errors: library code raises
:class:`~kcaptcha_solver.errors.KcaptchaError`, and ``main`` turns it into one
``error: ...`` line and a non-zero exit code.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from collections.abc import Callable, Sequence

from . import __version__
from .errors import ConfigError, KcaptchaError
from .modelfile import AUTO

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
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="COMMAND", required=True)
    for add in VERBS:
        add(sub)
    _show_defaults(parser)
    return parser


def _show_defaults(parser: argparse.ArgumentParser) -> None:
    """Append "(default: X)" to every option's help, in every sub-command, unless the help already says."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _show_defaults(child)
            continue
        unset = any(action.default is v for v in (None, False, argparse.SUPPRESS))  # not 0: a real default
        if action.option_strings and not unset and "default:" not in (action.help or ""):
            action.help = f"{action.help} (default: %(default)s)" if action.help else "default: %(default)s"


def _require(verb: str, extra: str, modules: tuple[str, ...]) -> None:
    """Every module a verb needs beyond the core, checked before it starts: one line of install advice."""
    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if missing:
        raise KcaptchaError(f"kcaptcha {verb} needs {', '.join(missing)}: pip install 'kcaptcha-solver[{extra}]'")


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
# fonts, generate, train, export, evaluate, models, voices, solve, serve, web, site.


@verb
def _add_fonts(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fonts", help="download, locate or build KCAPTCHA font atlases")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    d = actions.add_parser("download", help="fetch the 25 original atlases, 2.x and 1.2.x (pinned, sha256-checked)")
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
    from dataclasses import fields

    from .trainconfig import TrainConfig, default_of, flag_of

    p = sub.add_parser(
        "train",
        help="train a reader on fresh generated captchas",
        description="Train a CNN on captchas drawn on the fly by the bit-exact generator (no dataset on "
        "disk). Keeps the best checkpoint by validation full-string accuracy, a metrics CSV and a plot. "
        "Seeds 70,000,000-89,999,999 are reserved for evaluation and refused.",
    )
    types = {"int": int, "float": float}  # the rest are strings (a dict field takes a JSON file's name)
    for f in fields(TrainConfig):  # one option per field: its default, type and help live in TrainConfig
        default = default_of(f)
        shown = "" if default in (None, {}) else " (default: %(default)s)"
        p.add_argument(flag_of(f), dest=f.name, type=types.get(f.type, str), default=default,
                       metavar=f.metadata.get("metavar"), help=f.metadata["help"] + shown)
    p.add_argument("--out", default="runs/train", help="output folder (checkpoints, metrics.csv, curves.png)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    _require("train", "train", ("torch", "numba", "matplotlib"))
    from dataclasses import fields

    from .train import TrainConfig, describe, device_name, pick_device, train

    values = {f.name: getattr(args, f.name) for f in fields(TrainConfig)}
    cfg = TrainConfig(**{**values, "config": _read_config(args.config or None)})
    cfg.check_seeds()
    cfg.task()  # a bad preset or --config fails here, before anything is written
    print(f"{describe(cfg)}, on {device_name(pick_device(cfg.device))}", flush=True)

    def report(row: dict) -> None:
        print(f"epoch {row['epoch']}/{cfg.epochs}  loss {row['train_loss']:.4f}  val loss {row['val_loss']:.4f}  "
              f"val acc {100 * row['val_acc']:.2f}%  char {100 * row['val_char_acc']:.3f}%  "
              f"{row['wall_s'] / 60:.1f} min", flush=True)
        families = [f"{key.removeprefix('val_acc_')} {100 * value:.1f}%" for key, value in row.items()
                    if key.startswith("val_acc_")]
        if families:  # preset any: accuracy per configuration family
            print("  " + ", ".join(families), flush=True)

    best = train(cfg, args.out, resume=args.resume, progress=not args.quiet, on_epoch=report)
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
    _require("export", "train", ("torch", "onnx", "numba"))
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
        "<label>_<anything>.<ext> image of DIR (a captcha, or a screenshot holding one, up to 4K: read as "
        "'kcaptcha solve' reads it; a picture with no captcha found counts as wrong); print full-string and "
        "per-character accuracy, the share of sure "
        "answers and the accuracy of the sure ones, and confusions; "
        "with --gallery, also a picture of the misread images.",
    )
    p.add_argument("dir", help="folder of images named <label>_<anything>.<ext>")
    p.add_argument("--model", default=AUTO,
                   help="'auto' (each image to the shipped model for its size), a shipped model name (reads "
                   "only images of its size), or a .onnx path")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.add_argument("--gallery", metavar="PATH.png", help="write the misread images, with truth and reading, there")
    p.add_argument("--min-accuracy", type=float, help="exit 3 when full-string accuracy (%%) is below this")
    p.set_defaults(run=_run_evaluate)


def _run_evaluate(args: argparse.Namespace) -> int:
    import json

    from .evaluate import evaluate, format_report, write_gallery

    report, gallery = evaluate(args.model, args.dir, progress=not args.json and sys.stderr.isatty())
    out = report.to_dict()
    if gallery and args.gallery:
        out["gallery"] = str(write_gallery(gallery, args.gallery))
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(format_report(report))
        if out.get("gallery"):
            print(f"  error gallery: {out['gallery']}")
        elif args.gallery:
            print(f"  no errors: no gallery written to {args.gallery}")
        elif gallery:
            print("  (--gallery PATH.png writes the misread images)")
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
def _add_voices(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "voices", help="list, learn or forget the voice sets of Gnuboard's spoken captcha",
        description="Gnuboard's mp3 captcha is one voice set's digit clips end to end. With no action: list the "
        "shipped and learned sets. Learned sets keep only each clip's size and sha256, in $KCAPTCHA_DATA/voices "
        "or the user data folder.",
    )
    p.add_argument("--json", action="store_true", help="print the list as JSON")
    p.set_defaults(run=_run_voices)
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    a = actions.add_parser("add", help="learn a set from the clips 0.mp3 ... 9.mp3 of a folder")
    a.add_argument("folder", metavar="DIR", help="a copy of the site's plugin/kcaptcha/mp3/<set>/")
    a.add_argument("--name", required=True, help="the set's name (the site's cf_captcha_mp3 setting)")
    a.set_defaults(run=_run_voices_add)
    r = actions.add_parser("remove", help="forget a learned set")
    r.add_argument("name", metavar="NAME")
    r.set_defaults(run=_run_voices_remove)


def _run_voices(args: argparse.Namespace) -> int:
    import json

    from .audio import voices

    rows = [{"name": v.name, "clip_bytes": list(v.sizes), "origin": v.origin} for v in voices().values()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'name':16} {'clip bytes':>15}  origin")
    for r in rows:
        low, high = r["clip_bytes"]
        sizes = f"{low:,}" if low == high else f"{low:,}-{high:,}"
        print(f"{r['name']:16} {sizes:>15}  {r['origin']}")
    return 0


def _run_voices_add(args: argparse.Namespace) -> int:
    from .audio import add_voice

    learned = add_voice(args.folder, args.name)
    print(f"learned voice {learned.name!r} from {args.folder} (facts in {learned.origin})")
    return 0


def _run_voices_remove(args: argparse.Namespace) -> int:
    from .audio import remove_voice

    print(f"forgot voice {args.name!r} ({remove_voice(args.name)} removed)")
    return 0


@verb
def _add_solve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "solve", help="read captcha images and Gnuboard's mp3 captchas",
        description="Print 'FILE TEXT' per image or mp3, followed by 'at X,Y WxH' when the captcha was found inside a "
        "bigger picture (a screenshot: its box in the picture's pixels; the first captcha, top to bottom), and by "
        "'unsure (score S)' when the model's probability "
        "of the whole answer is below its calibrated threshold (a second look, or a fresh captcha, is worth it). "
        "A file that cannot be read gets an error line and a "
        "non-zero exit at the end; the other files are still solved. A warning line on stderr says why an answer "
        "may be wrong: a named model forced on an image that is not its own, or (auto) the general model reading "
        "another string.",
    )
    p.add_argument("files", nargs="+", metavar="FILE",
                   help="image files (a captcha, or a screenshot holding one, up to 4K) or Gnuboard's mp3 captchas; "
                   "'-' reads one from stdin")
    p.add_argument("--model", default=AUTO,
                   help="'auto' (the shipped model for each image's size), a shipped model name, or a .onnx path; "
                   "a model that does not fit an image reads it with a warning; mp3 files are read by their voice")
    p.add_argument("--json", action="store_true",
                   help="one JSON object per line: file plus the full result (score and sure included)")
    p.set_defaults(run=_run_solve)


def _run_solve(args: argparse.Namespace) -> int:
    import json

    from .errors import InputError
    from .solver import Solver

    solver = Solver(args.model)
    failed = 0
    for name in args.files:
        try:
            result = solver.solve(sys.stdin.buffer.read() if name == "-" else name)
        except InputError as exc:
            print(f"error: {name}: {exc}", file=sys.stderr)
            if args.json:  # a consumer of the JSON lines sees every file, the failed ones included
                print(json.dumps({"file": name, "error": str(exc)}), flush=True)
            failed += 1
            continue
        if result.warning:
            print(f"warning: {name}: {result.warning}", file=sys.stderr)
        line = json.dumps({"file": name, **result.to_dict()}) if args.json else f"{name} {result.text}"
        if not args.json and result.box:
            x, y, w, h = result.box
            line += f"  at {x},{y} {w}x{h}"
        if not args.json and not result.sure:  # the text stays the second field; the mark follows it
            line += f"  unsure (score {result.score:.4f})"
        print(line, flush=True)
    if failed:
        print(f"error: {failed} of {len(args.files)} files could not be read", file=sys.stderr)
    return 1 if failed else 0


@verb
def _add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve", help="HTTP solving service (FastAPI on uvicorn)",
        description="POST /solve (multipart field 'file', or a raw image or audio/mpeg body) -> JSON; GET /health, "
        "GET /models, docs at /docs. Slow, idle and oversized clients are cut off (README: 'The HTTP "
        "service on the open internet'). Needs the 'serve' extra: pip install 'kcaptcha-solver[serve]'.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    p.add_argument("--port", type=int, default=8080, help="port (kcaptcha web uses 8000)")
    p.add_argument("--model", default=AUTO,
                   help="'auto' (the shipped model for each image's size), a shipped model name, or a .onnx path")
    p.add_argument("--workers", type=int, default=1, help="processes, each with its own model copy (one per core)")
    p.add_argument("--max-bytes", type=int, default=2 * 1024 * 1024,
                   help="largest request body, raw or multipart (413 above)")
    p.add_argument("--header-timeout", type=float, default=5.0,
                   help="seconds a connection has to send its request headers (then closed)")
    p.add_argument("--body-timeout", type=float, default=10.0, help="seconds for the whole body (408 after)")
    p.add_argument("--max-uploads", type=int, default=64,
                   help="request bodies held at once per worker (503 above; bounds memory)")
    p.add_argument("--max-connections", type=int, default=2048,
                   help="open connections per worker before answering 503")
    p.add_argument("--graceful-timeout", type=float, default=10.0,
                   help="after SIGTERM, seconds in-flight requests get before being cut; then exit 0")
    p.add_argument("--cors-origin", metavar="ORIGIN",
                   help="let pages from ORIGIN (e.g. https://example.com) call the API")
    p.set_defaults(run=_run_serve)


def _run_serve(args: argparse.Namespace) -> int:
    try:
        from .service import ServeSettings, serve
    except ModuleNotFoundError as exc:
        raise KcaptchaError(f"kcaptcha serve needs {exc.name}: pip install 'kcaptcha-solver[serve]'") from exc

    serve(ServeSettings(
        model=args.model, host=args.host, port=args.port, workers=args.workers, max_bytes=args.max_bytes,
        header_timeout=args.header_timeout, body_timeout=args.body_timeout, max_uploads=args.max_uploads,
        max_connections=args.max_connections, graceful_timeout=args.graceful_timeout, cors_origin=args.cors_origin,
    ))
    return 0


@verb
def _add_web(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "web",
        help="serve the browser page locally",
        description="Serve the page that solves captchas in the browser (TF.js + WebAssembly; the image "
        "never leaves the browser) and open it. In a source checkout, first: npm ci && npm run build.",
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
