"""The generator: bit-exact against the real PHP images, plus fast checks of its parts."""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import random
import threading
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
from conftest import BASE_SEEDS, sample_files
from PIL import Image

from kcaptcha_solver.cli import main
from kcaptcha_solver.errors import ConfigError
from kcaptcha_solver.fonts import DEFAULT_FONTS, FONTS_1_2
from kcaptcha_solver.generator import (
    ALPHABET,
    ENGINES,
    PRESETS,
    CaptchaConfig,
    Generator,
    config_from_dict,
    get_preset,
    random_config,
)

# (preset, shared folder, --format): gnuboard5 twice, as JPEG and as the PNG raster before JPEG.
BIT_EXACT = [
    ("gnuboard5", "gnuboard5", None),
    ("gnuboard5", "gnuboard5-png", "png"),
    ("seed-l2", "seed-l2", None),
    ("kcaptcha-default", "kcaptcha-default", None),
]


@pytest.mark.slow
@pytest.mark.parametrize(("preset", "folder", "fmt"), BIT_EXACT, ids=[b[1] for b in BIT_EXACT])
def test_bit_exact_with_php(
    preset: str, folder: str, fmt: str | None, shared_dir: Path, tmp_path: Path
) -> None:
    """All 500 images of a folder: same label in the name, identical decoded pixels."""
    refs = sample_files(shared_dir / folder)
    assert len(refs) == 500
    argv = ["generate", "--preset", preset, "--seed", str(BASE_SEEDS[preset]), "--count", "500"]
    argv += ["--out", str(tmp_path), "--quiet"] + (["--format", fmt] if fmt else [])
    assert main(argv) == 0
    mine = sample_files(tmp_path)
    assert [p.name for p in mine] == [p.name for p in refs]
    bad = []
    for ours, ref in zip(mine, refs, strict=True):
        with Image.open(ours) as a, Image.open(ref) as b:
            if not np.array_equal(np.asarray(a.convert("RGB")), np.asarray(b.convert("RGB"))):
                bad.append(ref.name)
    assert not bad, f"{len(bad)} of 500 differ, e.g. {bad[:5]}"


@pytest.fixture(scope="module", params=sorted(PRESETS))
def gen(request: pytest.FixtureRequest, fonts_dir: Path) -> Generator:
    return Generator(request.param, fonts_dir=str(fonts_dir))


def test_first_image_of_each_preset(gen: Generator, shared_dir: Path) -> None:
    name = gen.config.name
    ref = sample_files(shared_dir / name)[0]
    sample = gen.draw(BASE_SEEDS[name])
    assert ref.name == f"{sample.label}_000000.{sample.image_format}"
    with Image.open(ref) as im:
        assert np.array_equal(sample.pixels(), np.asarray(im.convert("RGB")))


def test_samples_shape_label_and_boxes(gen: Generator) -> None:
    cfg = gen.config
    width, height = cfg.image_size
    for sample in gen.samples(1234, 20, boxes=True):
        assert sample.raster.shape == (height, width, 3) and sample.raster.dtype == np.uint8
        assert cfg.length[0] <= len(sample.label) <= cfg.length[1]
        assert set(sample.label) <= set(cfg.allowed_symbols)
        assert sample.font in cfg.fonts
        assert len(sample.boxes) == len(sample.label)
        covered = np.zeros((cfg.height, cfg.width), dtype=bool)
        for x0, y0, x1, y1 in sample.boxes:
            assert 0 <= x0 < x1 <= cfg.width and 0 <= y0 < y1 <= cfg.height
            covered[y0:y1, x0:x1] = True
        # Glyph ink lies in the boxes; the only dark pixels outside are black noise dots.
        dark = sample.raster[: cfg.height].astype(int).sum(axis=2) < 3 * 128
        assert (dark & covered).sum() >= 0.9 * dark.sum()
        starts = [b[0] for b in sample.boxes]
        assert starts == sorted(starts), "glyphs run left to right"


def test_draw_is_repeatable_across_threads_and_pickling(gen: Generator) -> None:
    want = [gen.draw(s).raster for s in range(40, 48)]
    got: dict[int, np.ndarray] = {}

    def work(seeds: range) -> None:
        for s in seeds:
            got[s] = gen.draw(s).raster

    threads = [threading.Thread(target=work, args=(range(40 + k, 48, 2),)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(np.array_equal(got[40 + i], w) for i, w in enumerate(want))
    clone = pickle.loads(pickle.dumps(gen))
    assert np.array_equal(clone.draw(40).raster, want[0])


def test_encode_round_trip(gen: Generator) -> None:
    sample = gen.draw(7)
    data = sample.encode()
    assert data[:4] == (b"\xff\xd8\xff\xe0" if sample.image_format == "jpg" else b"\x89PNG")
    if sample.image_format == "png":
        with Image.open(io.BytesIO(data)) as im:
            assert np.array_equal(np.asarray(im), sample.raster)


def test_presets_and_suggestions() -> None:
    assert set(PRESETS) == {"gnuboard5", "seed-l2", "kcaptcha-default"}
    assert get_preset("gnuboard5").image_size == (160, 60)
    assert get_preset("kcaptcha-default").image_size == (160, 92)
    with pytest.raises(ConfigError, match="Did you mean 'gnuboard5'"):
        get_preset("gnuboard")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"length": (0, 3)}, "length"),
        ({"length": (5, 4)}, "length"),
        ({"length": (6, 65)}, "length"),
        ({"allowed_symbols": "01A"}, "allowed_symbols"),
        ({"allowed_symbols": ""}, "allowed_symbols"),
        ({"height": 30}, "too small"),
        ({"foreground": ((0, 300), (0, 0), (0, 0))}, "foreground"),
        ({"background": ((10, 5), (0, 0), (0, 0))}, "background"),
        ({"engine": "3.0"}, "engine"),
        ({"image_format": "gif"}, "image_format"),
        ({"jpeg_quality": 0}, "jpeg_quality"),
        ({"fonts": ()}, "font"),
    ],
)
def test_config_validation(changes: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        CaptchaConfig(**changes)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_config_json_round_trip(name: str) -> None:
    cfg = PRESETS[name]
    values = json.loads(json.dumps(asdict(cfg)))
    assert config_from_dict(values) == cfg


def test_config_from_dict_shorthands_and_errors() -> None:
    cfg = config_from_dict({"length": 4, "foreground": [10, [0, 5], 20], "allowed_symbols": "abc"})
    assert cfg.name == "custom" and cfg.length == (4, 4)
    assert cfg.foreground == ((10, 10), (0, 5), (20, 20))
    with pytest.raises(ConfigError, match="Did you mean 'length'"):
        config_from_dict({"lenght": 4})
    with pytest.raises(ConfigError, match="foreground"):
        config_from_dict({"foreground": "black"})


def test_custom_config_draws(fonts_dir: Path) -> None:
    cfg = config_from_dict({"allowed_symbols": "abcxyz", "length": [3, 4], "width": 120, "height": 50})
    gen = Generator(cfg, fonts_dir=str(fonts_dir))
    for sample in gen.samples(5, 10, boxes=True):
        assert sample.raster.shape == (50, 120, 3)
        assert 3 <= len(sample.label) <= 4 and set(sample.label) <= set("abcxyz")


def test_seed_out_of_range(gen: Generator) -> None:
    with pytest.raises(ConfigError, match="seed"):
        gen.draw(-1)
    with pytest.raises(ConfigError, match="seed"):
        gen.draw(1 << 32)


# -- the space beyond the presets (issue 13) -------------------------------------------------


def test_every_engine_is_known_and_validated() -> None:
    assert set(ENGINES) == {"1.2", "2.x", "1.2-original"}
    with pytest.raises(ConfigError, match="draws no noise"):
        CaptchaConfig(engine="1.2-original")  # the default densities are gnuboard's 1/6 and 1/20
    with pytest.raises(ConfigError, match="no wave switch"):
        CaptchaConfig(engine="2.x", wave=False)
    with pytest.raises(ConfigError, match="keystring must be 'driver'"):
        CaptchaConfig(engine="1.2", keystring="constructor")
    with pytest.raises(ConfigError, match="fluctuation_amplitude"):
        CaptchaConfig(fluctuation_amplitude=-1)


def test_text_that_never_fits_is_an_error_not_a_hang() -> None:
    """PHP's fit loop would spin until the request times out; we stop and say why."""
    cfg = CaptchaConfig(engine="2.x", length=(7, 7), width=60, allowed_symbols="08")
    with pytest.raises(ConfigError, match="never fits in width 60"):
        Generator(cfg).draw(1_000_000)
    with pytest.raises(ConfigError, match="confusable"):  # every keystring holds "ww": redrawn forever
        CaptchaConfig(allowed_symbols="w")


OLD = {"fonts": FONTS_1_2, "white_noise_density": 0.0, "black_noise_density": 0.0}
# Configurations of the fidelity benchmark (benchmarks/fidelity.py) with the first seed of each
# case there, and the sha256 of our raster for it. On 2026-11-29 each image was also drawn by the
# PHP code (see the benchmark's docstring) and was identical, label and pixels (PNG). No PHP
# image is committed, so these pin today's verified output: a change that moves one pixel fails.
VERIFIED = [
    # gnuboard5 5.0 (2013-2015): KCAPTCHA 1.2.6 as distributed, 120x60, no noise, the 22 old atlases.
    (dict(name="gnuboard5-5.0", width=120, engine="1.2-original", **OLD), 21004000, "104649",
     "8305ff31f3ae330c3497399fb731e576a58e3f4b95ddde38132500714bfbba8f"),
    # KCAPTCHA 1.2.x's own default: letters, 5-6 of them, drawn inside the fit loop, credits.
    (dict(name="kcaptcha-1.2-default", engine="1.2-original", keystring="constructor",
          allowed_symbols="23456789abcdeghkmnpqsuvxyz", length=(5, 6), width=120, show_credits=True, **OLD),
     21009000, "a2a5y", "c00e359dd2d8a58f7cea8c6806457f09dd90ab3fbd3b1759abf529c7d79cba00"),
    # gnuboard5 late 2015: the new code (noise, packing) still with the old atlases.
    (dict(name="gnuboard5-2015-11", fonts=FONTS_1_2), 21006000, "445522",
     "0b35ca2bbe46993d50d44164b728b19f41990f4f17247c8db47416f1adddc424"),
    # gnuboard5 with the hex symbols of its commented-out config line, and with its wave switch off.
    (dict(name="gnuboard5-hex", allowed_symbols="0123456789abcdef"), 21007000, "fcf1dc",
     "ce7f3aaf366f31febf48f80799a495312561e16ea9e833ced85c0ba60a0fd294"),
    (dict(name="gnuboard5-nowave", wave=False), 21008000, "953987",
     "4f69ebefed589ae4c4fcd10efb0c17a76be6bee48bad47bd15ddf6422f4603a7"),
    # Draws of random_config / the benchmark's wider sweep: 2.x drawing its own 4-6 letters in random
    # colours on a 41-px canvas; 1.2.x packing (no_spaces) with credits; gnuboard's code letting 5-7
    # glyphs run off a 108-px canvas, wave off, two old atlases and one 2.x atlas mixed.
    (dict(name="random-2.x", allowed_symbols="23456789abcdeghkmnpqsuvxyz", length=(4, 6), width=169, height=41,
          fluctuation_amplitude=3, black_noise_density=0.0625, foreground=((0, 62),) * 3,
          background=((180, 255),) * 3, engine="2.x", keystring="constructor"),
     21049000, "9bhq6u", "a17a65d06027ff29993dc4d0d4e293bc500c0f17fa85236e9cde012bf1fe20d9"),
    (dict(name="random-1.2-original", allowed_symbols="23456789abcdegikpqsvxyz", length=(4, 5), width=128,
          height=86, fluctuation_amplitude=9, no_spaces=True, show_credits=True,
          foreground=((78, 78), (69, 69), (89, 89)), background=((195, 195), (191, 191), (245, 245)),
          engine="1.2-original", keystring="constructor", **OLD),
     21074000, "scvg", "3bfed2cbf54c1b3bf6ef638621b314e21c852f944580d798ae75ff3a0255de6b"),
    (dict(name="wild-1.2", allowed_symbols="023578abeghiovy", length=(5, 7), width=108, height=50,
          fluctuation_amplitude=7, white_noise_density=0.25, no_spaces=True,
          foreground=((26, 26), (49, 51), (74, 74)), background=((169, 255), (209, 209), (249, 249)),
          wave=False, fonts=("cambria.png", "kozuka.png", "warnock.png")),
     21317000, "yoboh", "ec30b55f4cd565201912e7e4ed7089e0ecc33ed61f17bc0ca6241e011503a17e"),
]  # fmt: skip


@pytest.mark.parametrize(("fields", "seed", "label", "digest"), VERIFIED, ids=[v[0]["name"] for v in VERIFIED])
def test_verified_against_php(fields: dict, seed: int, label: str, digest: str, all_fonts: Path) -> None:
    sample = Generator(CaptchaConfig(**fields), fonts_dir=str(all_fonts)).draw(seed)
    assert sample.label == label
    assert hashlib.sha256(sample.raster.tobytes()).hexdigest() == digest


def test_random_config_covers_the_space() -> None:
    rng = random.Random(13)
    configs = [random_config(rng) for _ in range(600)]
    assert [random_config(random.Random(13)) for _ in range(1)] == configs[:1], "same rng, same config"
    assert {c.engine for c in configs} == set(ENGINES)
    assert {c.keystring for c in configs} == {"driver", "constructor"}
    assert {c.fonts for c in configs} == {DEFAULT_FONTS, FONTS_1_2}
    assert {c.image_format for c in configs} == {"jpg", "png"}
    assert {c.no_spaces for c in configs} == {c.show_credits for c in configs} == {c.wave for c in configs} == {
        True, False
    }  # fmt: skip
    assert {c.allowed_symbols for c in configs} >= {"0123456789", "0123456789abcdef", ALPHABET}
    assert min(c.width for c in configs) == 100 and max(c.width for c in configs) == 200
    assert min(c.height for c in configs) == 40 and max(c.height for c in configs) == 100
    assert {c.fluctuation_amplitude for c in configs} == set(range(13))
    assert {n for c in configs for n in c.length} == set(range(2, 8))
    assert any(c.length[0] < c.length[1] for c in configs) and any(c.white_noise_density == 0 for c in configs)
    assert any(c.foreground[0][0] < c.foreground[0][1] for c in configs), "random colours"
    assert max(c.jpeg_quality for c in configs) == 100


def test_random_configs_draw(all_fonts: Path) -> None:
    """Every draw's text fits where the engine insists on it (no ConfigError), in the right shape."""
    rng = random.Random(7)
    for k in range(40):
        cfg = random_config(rng)
        sample = Generator(cfg, fonts_dir=str(all_fonts)).draw(1_000_000 + k)
        assert sample.raster.shape == (*cfg.image_size[::-1], 3)
        assert cfg.length[0] <= len(sample.label) <= cfg.length[1] and set(sample.label) <= set(cfg.allowed_symbols)
