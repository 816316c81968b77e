"""The generator: bit-exact against the real PHP images, plus fast checks of its parts."""

from __future__ import annotations

import io
import json
import pickle
import threading
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
from conftest import BASE_SEEDS, sample_files
from PIL import Image

from kcaptcha_solver.cli import main
from kcaptcha_solver.errors import ConfigError
from kcaptcha_solver.generator import PRESETS, CaptchaConfig, Generator, config_from_dict, get_preset

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
