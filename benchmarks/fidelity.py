"""Is the generator bit-exact with PHP KCAPTCHA across the whole configuration space (issue 13)?

Reads images that the real PHP code drew and redraws each with our generator from the same
seed: the label must be the same, and so must every decoded pixel (PNG: the raster itself;
JPEG: both files decoded by Pillow). PHP is needed only to make the input folder, never here.

    python benchmarks/fidelity.py PHP_DIR [--fonts DIR] [--out benchmarks/results/fidelity.json]

``PHP_DIR`` holds one folder per configuration ("case"): ``case.json`` with ``config`` (the
CaptchaConfig fields, as ``dataclasses.asdict`` writes them), ``seed`` and ``count``, and
``out/<label>_<index>.<ext>``, image ``index`` drawn right after ``mt_srand(seed + index)``.
``--fonts`` must hold every atlas the cases name (``kcaptcha fonts download`` fetches all 25).

How the committed figures were made (the harness lives in an ignored ``/harness/`` folder and
is never committed, because it assembles third-party code). Three PHP sources, fetched with
git: gnuboard5's ``plugin/kcaptcha/kcaptcha.lib.php`` at commit fa792efac (2025; the same
file as at the gnuboard5 preset's pinned commit 0b6f081f: engine ``1.2``) and at f2d63ee9b
(2013, KCAPTCHA 1.2.6 as distributed: engine ``1.2-original``), and ryanking13/
kcaptcha-generator's ``kcaptcha/kcaptcha.php`` at bbb4883 (KCAPTCHA 2.1: engine ``2.x``).
Changes that leave the pixels alone, as for the shared sample: ``$s{$i}`` read as ``$s[$i]``
(PHP 8), deprecation notices silenced, the font list sorted after the directory scan, the
image bytes caught with output buffering, JPEG or PNG chosen per case, kcaptcha-generator's
bounding-box bookkeeping dropped (it only writes a header); for the ``constructor``
keystring, the distributed keystring loop (commented out in both copies) put back inside
the fit loop. Each case gets its own ``kcaptcha_config.php`` written from the CaptchaConfig:
constants, ``mt_rand(a, b)`` where a range is random (length in the constructor cases,
colour channels), and for gnuboard's engine ``$length = strlen($this->keystring)``. A PHP
driver calls ``mt_srand(seed + i)``, draws the keystring as gnuboard's
``kcaptcha_session.php`` does (driver cases; the length first when it is a range), then
runs the code. The 726 cases come in two batches (case names ``1-...`` and ``2-...``). Each
batch has the three presets and ten named ones (gnuboard5 5.0 at 120x60 with the 22 older
atlases and no noise, as JPEG and PNG; gnuboard5 late 2015, the new code with the older
atlases, JPEG and PNG; hex symbols; wave off; KCAPTCHA 1.2.x's own default; kcaptcha-default
as PNG and at JPEG quality 75 and 100), then draws of ``random_config`` (250, then 200) and
of a wider sweep (100, then 150) with every field uniform over the issue's ranges (any
subset of the 36 symbols, atlas sets mixed, JPEG quality 30..100, text running off
gnuboard's canvas), skipping only fixed keystrings that could never fit (PHP would loop
forever). Three seeds each, from 21,000,000 (batch 1) and 31,000,000 (batch 2) up.
PHP 8.2.36 with GD 2.3.3 (Debian 12 php8.2-cli, php8.2-gd).
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import sys
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

from kcaptcha_solver.fonts import DEFAULT_FONTS, FONTS_1_2
from kcaptcha_solver.generator import Generator, config_from_dict

ROOT = Path(__file__).resolve().parents[1]
_NAMED_SETS = {DEFAULT_FONTS: "DEFAULT_FONTS", FONTS_1_2: "FONTS_1_2"}  # shorter than 22 names per case


def _decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


def compare_case(case: Path, fonts: str | None) -> dict:
    """Redraw one case; returns its config summary, counts and the images that differ."""
    spec = json.loads((case / "case.json").read_text())
    config = config_from_dict(spec["config"])
    gen = Generator(config, fonts_dir=fonts)
    files = sorted((case / "out").iterdir(), key=lambda p: int(p.stem.rsplit("_", 1)[1]))
    if len(files) != spec["count"]:
        raise SystemExit(f"{case}: {len(files)} images, case.json says {spec['count']}")
    differences = []
    for path in files:
        label, index = path.stem.rsplit("_", 1)
        sample = gen.draw(spec["seed"] + int(index))
        php = _decode(path.read_bytes())
        ours = _decode(sample.encode())
        if sample.label != label or php.shape != ours.shape or not np.array_equal(php, ours):
            same_shape = php.shape == ours.shape
            diff = np.abs(php.astype(int) - ours.astype(int)) if same_shape else None
            differences.append({
                "file": path.name, "label": sample.label,
                "pixels": int((diff.max(axis=2) > 0).sum()) if same_shape else None,
                "max_abs": int(diff.max()) if same_shape else None,
            })  # fmt: skip
    return {
        "case": case.name,
        "engine": config.engine,
        "keystring": config.keystring,
        "format": config.image_format,
        "atlases": {0: "2.x", len(config.fonts): "1.2"}.get(len(set(config.fonts) & set(FONTS_1_2)), "mixed"),
        "images": len(files),
        "identical": len(files) - len(differences),
        "seed": spec["seed"],
        "config": {
            **{k: v for k, v in spec["config"].items() if k not in ("name", "alphabet", "credits")},
            "fonts": _NAMED_SETS.get(config.fonts, config.fonts),
        },
        "differences": differences,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("php_dir", type=Path, help="folder of cases drawn by PHP (see the module docstring)")
    parser.add_argument("--fonts", help="atlas folder holding every font the cases name")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "fidelity.json")
    args = parser.parse_args(argv)
    cases = sorted(p for p in args.php_dir.iterdir() if (p / "case.json").is_file())
    if not cases:
        raise SystemExit(f"no cases (folders with case.json) in {args.php_dir}")
    rows = []
    for k, case in enumerate(cases, 1):
        rows.append(compare_case(case, args.fonts))
        print(f"\r{k}/{len(cases)} cases", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    groups: dict[str, Counter] = {}
    for row in rows:
        for key in ("engine", "keystring", "format", "atlases"):
            c = groups.setdefault(f"{key}={row[key]}", Counter())
            c["configs"] += 1
            c["configs_identical"] += not row["differences"]
            c["images"] += row["images"]
            c["identical"] += row["identical"]
    result = {
        "configs": len(rows),
        "configs_identical": sum(not r["differences"] for r in rows),
        "images": sum(r["images"] for r in rows),
        "identical": sum(r["identical"] for r in rows),
        "groups": {k: dict(v) for k, v in sorted(groups.items())},
        "differences": [dict(case=r["case"], **d) for r in rows for d in r["differences"]],
        "cases": [{k: v for k, v in r.items() if k != "differences"} for r in rows],
        "python": platform.python_version(),
    }
    # One line per case: 363 configurations stay readable and diffable.
    head = json.dumps({k: v for k, v in result.items() if k != "cases"}, indent=1)[:-2]
    cases = ",\n  ".join(json.dumps(c, separators=(",", ":")) for c in result["cases"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(f'{head},\n "cases": [\n  {cases}\n ]\n}}\n')
    print(f"{result['identical']}/{result['images']} images identical, "
          f"{result['configs_identical']}/{result['configs']} configurations -> {args.out}")  # fmt: skip
    return 0 if result["identical"] == result["images"] else 1


if __name__ == "__main__":
    sys.exit(main())
