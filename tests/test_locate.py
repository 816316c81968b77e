"""Finding captchas in pictures (locate.py): real PHP images drawn into pages, exact boxes, nothing invented."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import MODELS, SHIPPED, label, model_files
from PIL import Image, ImageDraw

from kcaptcha_solver.generator import PRESETS
from kcaptcha_solver.inputs import decode_bytes, fit
from kcaptcha_solver.locate import GRID, PHASES, locate
from kcaptcha_solver.screenshot import squeezes
from kcaptcha_solver.solver import Solver

SIZES = sorted({(m.width, m.height) for m in SHIPPED if not m.general})  # the shapes locate searches for


def real(shared_dir: Path, model: str, index: int = 0) -> tuple[np.ndarray, str]:
    path = model_files(shared_dir, model)[index]
    return np.asarray(Image.open(path).convert("RGB")), label(path)


def on_page(captcha: np.ndarray, scale: float, at: tuple[int, int], border: str = "#898989",
            size: tuple[int, int] = (900, 500), background: str = "#ffffff", under: int | None = None) -> Image.Image:
    """A page with a line of text, an input box beside the captcha and the captcha in a 1-px border
    (and, ``under`` px below the border, a dark box as wide)."""
    page = Image.new("RGB", size, background)
    draw = ImageDraw.Draw(page)
    draw.text((20, 20), "Write a post - type the digits you see, in order " * 2, fill=(30, 30, 30))
    w, h = round(captcha.shape[1] * scale), round(captcha.shape[0] * scale)
    x, y = at
    draw.rectangle((x - 1, y - 1, x + w, y + h), outline=border)
    draw.rectangle((x + w + 4, y - 1, x + w + 100, y + h), outline="#cccccc")  # the answer box, 3 px away
    if under is not None:
        draw.rectangle((x - 1, y + h + under, x + w, y + h + under + 30), outline="#555555")
    page.paste(Image.fromarray(captcha).resize((w, h), Image.NEAREST), (x, y))
    return page


@pytest.mark.parametrize("preset", MODELS)
def test_a_bare_captcha_is_returned_whole_without_search(shared_dir: Path, preset: str) -> None:
    rgb, _ = real(shared_dir, preset)
    (found,) = locate(rgb, SIZES)
    assert found.box == (0, 0, rgb.shape[1], rgb.shape[0])
    assert found.size == (rgb.shape[1], rgb.shape[0])
    assert found.pixels is rgb  # the very array: nothing was searched, copied or resampled


@pytest.mark.parametrize(("scale", "at"), [(1.0, (37, 81)), (1.5, (120, 200)), (2.0, (301, 97)), (3.0, (55, 60))])
def test_exact_box_of_a_bordered_captcha_on_a_page(shared_dir: Path, scale: float, at: tuple[int, int]) -> None:
    rgb, label = real(shared_dir, "gnuboard5", 3)
    page = np.asarray(on_page(rgb, scale, at))
    (found,) = locate(page, SIZES)
    assert found.box == (*at, round(160 * scale), round(60 * scale))
    assert found.size == (160, 60) and found.pixels.shape == (60, 160, 3)
    assert Solver("gnuboard5").solve(found.pixels).text == label


@pytest.mark.parametrize("scale", [1.0, 2.0, 3.0])
@pytest.mark.parametrize("preset", ["gnuboard5", "kcaptcha-default"])
def test_a_dark_line_just_under_a_pale_border_is_not_its_edge(shared_dir: Path, preset: str, scale: float) -> None:
    """A pale border's edges change little (22 levels); a dark box one row of page below changes a lot,
    but the other way from the border's outer edge: no blended row of it, so not the captcha's edge."""
    rgb, _ = real(shared_dir, preset, 3)
    (found,) = locate(np.asarray(on_page(rgb, scale, (60, 80), border="#e9e9e9", under=2)), SIZES)
    assert found.box == (60, 80, round(rgb.shape[1] * scale), round(rgb.shape[0] * scale))


@pytest.mark.parametrize(("scale", "phases"), [(0.41, True), (0.65, True), (1.0, False), (1.5, True)])
def test_a_captcha_at_another_size_is_also_cut_at_other_phases(shared_dir: Path, scale: float, phases: bool) -> None:
    """At another size than its own (kcaptcha-default on Gnuboard's desktop skin: 0.41 at DPR 1, 0.65 at 1.5), a
    captcha is also cut at each of PHASES (by default) or any other shifts, such as GRID's 10: the same box, nearest
    neighbour's grid shifted; at its own size, once."""
    rgb, _ = real(shared_dir, "kcaptcha-default", 3)
    page = np.asarray(on_page(rgb, scale, (60, 80)))
    (found,) = locate(page, SIZES)
    x, y, w, h = found.box
    assert found.box == (60, 80, round(160 * scale), round(92 * scale))
    assert len(GRID) == 10 and {(0.0, 0.0), *PHASES}.isdisjoint(GRID)
    assert len(found.views()) == (len(PHASES) if phases else 0)
    assert len(found.views(GRID)) == (len(GRID) if phases else 0)
    for view, shift in zip(found.views() + found.views(GRID), PHASES + GRID, strict=False):
        assert view.shape == (92, 160, 3)
        assert (view == fit(page[y:y + h, x:x + w], 160, 92, shift)).all()
        assert shift in GRID or not (view == found.pixels).all()  # a 0.2 px shift may fall on the same pixels


def test_each_captcha_of_a_picture_is_found_top_to_bottom(shared_dir: Path) -> None:
    a, label_a = real(shared_dir, "gnuboard5", 5)
    b, label_b = real(shared_dir, "kcaptcha-default", 5)
    page = on_page(b, 1.0, (400, 300), background="#f8f8f8")
    page.paste(on_page(a, 2.0, (30, 60)).crop((0, 0, 400, 200)), (0, 0))
    found = locate(np.asarray(page), SIZES)
    assert [f.box for f in found] == [(30, 60, 320, 120), (400, 300, 160, 92)]
    assert [f.size for f in found] == [(160, 60), (160, 92)]
    assert [r.text for r in Solver("auto").solve_many([f.pixels for f in found])] == [label_a, label_b]


def test_pictures_without_a_captcha_give_nothing(shared_dir: Path) -> None:
    rgb, _ = real(shared_dir, "gnuboard5")
    blank_frame = np.asarray(on_page(np.full_like(rgb, 255), 1.5, (100, 100)))  # a border round nothing
    text_page = Image.new("RGB", (1920, 1080), "white")
    draw = ImageDraw.Draw(text_page)
    for y in range(10, 1080, 18):
        draw.text((10, y), "board post title, author, date, views " * 8, fill=(20, 20, 20))
    noise = np.random.default_rng(0).integers(0, 256, (600, 1600, 3), dtype=np.uint8)  # 160x60-shaped
    for picture in (np.full((1080, 1920, 3), 255, np.uint8), blank_frame, np.asarray(text_page), noise):
        assert locate(picture, SIZES) == []


@pytest.mark.parametrize(("scale", "found"), [(3.45, True), (3.6, False)])
def test_each_shape_is_searched_up_to_scale_max_of_its_own_size(shared_dir: Path, scale: float, found: bool) -> None:
    """SCALE_MAX bounds each shape by its own height: 160x60 at 3.6x (216 px high) is not searched for, though
    a 160x92 frame may be that high (a page's forms and boxes of such heights cost the search most of its time)."""
    from kcaptcha_solver.locate import SCALE_MAX

    rgb, _ = real(shared_dir, "gnuboard5", 3)
    assert (160, 92) in SIZES and 3.45 < SCALE_MAX + 8 / 60 < 3.6 < SCALE_MAX * 92 / 60
    boxes = [f.box for f in locate(np.asarray(on_page(rgb, scale, (40, 50))), SIZES)]
    assert boxes == ([(40, 50, round(160 * scale), round(60 * scale))] if found else [])


# Chromium renders of Gnuboard's markup (screenshot.py): the truth box is the image's content box from the page.
@pytest.fixture(scope="module")
def renderer():
    from kcaptcha_solver.screenshot import Renderer

    with Renderer() as r:
        yield r


@pytest.mark.slow
@pytest.mark.parametrize("skin", ["desktop", "mobile", "mobile-pc"])
@pytest.mark.parametrize("dpr", [1.0, 1.25, 1.5, 2.0, 3.0])
def test_boxes_on_rendered_screenshots(shared_dir: Path, renderer, skin: str, dpr: float) -> None:
    """Every edge of the found box within 1 device pixel of the image's edge on the page, rounded (at
    fractional DPRs, and at 3x with a 3-px border, the page blends the edge row), for every crop from
    the image alone to the whole form."""
    from kcaptcha_solver.screenshot import sample_images

    presets = [p for p in ("gnuboard5", "seed-l2", "kcaptcha-default") if not squeezes(skin, PRESETS[p].image_size)]
    for preset in presets:
        for shot in renderer.render(sample_images(shared_dir / preset, 2, 10), skin, dpr):
            rgb = decode_bytes(shot.encode("PNG"), 4_000_000)
            found = locate(rgb, SIZES)
            assert len(found) == 1, (preset, shot.crop)
            x, y, w, h = found[0].box
            tx, ty, tw, th = shot.box
            edges = np.array([x, y, x + w, y + h]) - np.round([tx, ty, tx + tw, ty + th])
            assert np.abs(edges).max() <= 1.0, (preset, shot.crop, found[0].box, shot.box)


@pytest.mark.slow
def test_a_rendered_set_is_read_right(shared_dir: Path, renderer) -> None:
    from kcaptcha_solver.screenshot import sample_images

    solver = Solver("auto")
    for preset in ("gnuboard5", "seed-l2", "kcaptcha-default"):
        for shot in renderer.render(sample_images(shared_dir / preset, 6, 20), "desktop", 2.0, crops=("form",)):
            (found,) = locate(decode_bytes(shot.encode("JPEG"), 4_000_000), SIZES)
            assert solver.solve(found.pixels).text == shot.label


@pytest.mark.slow
@pytest.mark.parametrize("dpr", [1.0, 1.25, 3.0])
def test_the_shortcuts_reject_no_frame_the_full_search_finds(
    shared_dir: Path, renderer, monkeypatch: pytest.MonkeyPatch, dpr: float,
) -> None:
    """``_may_have_sides`` and ``_frames`` (a pair of lines of a frame already found to be no captcha) only save
    time: with them answering "search it" for every pair, the same frames are found, on blended (fractional DPR)
    and JPEG screenshots and on whole 1920x1080 screens, where the side test rejects most pairs and the other
    skips the pairs of the page's own frames after their first."""
    from kcaptcha_solver import locate as module
    from kcaptcha_solver.screenshot import sample_images, screen

    pictures = []
    for preset in ("gnuboard5", "kcaptcha-default"):
        for shot in renderer.render(sample_images(shared_dir / preset, 2, 40), "desktop", dpr):
            pictures.append(decode_bytes(shot.encode("JPEG"), 4_000_000))
            if shot.crop == "form":
                pictures.append(screen(shot, seed=len(pictures)).pixels)
    grays = [np.ascontiguousarray(p[:, :, 1]) for p in pictures]
    sides, frames = [], []

    def counted(answers: list, test: Callable) -> Callable:
        return lambda *args: answers.append(test(*args)) or answers[-1]

    monkeypatch.setattr(module, "_may_have_sides", counted(sides, module._may_have_sides))
    monkeypatch.setattr(module, "_frames", counted(frames, module._frames))
    fast = [module._boxes(g, SIZES) for g in grays]
    monkeypatch.setattr(module, "_may_have_sides", lambda columns, h, pairs: np.ones(len(pairs), bool))
    monkeypatch.setattr(module, "_frames", lambda *args: False)
    assert fast == [module._boxes(g, SIZES) for g in grays]
    asked = np.concatenate(sides)
    assert np.count_nonzero(~asked) > asked.size / 2  # it does skip most pairs
    # and some pairs of the page's own frames (the answer box's); at 3x those were frames past SCALE_MAX of the
    # shape, which are not paired at all
    assert frames.count(True) > len(grays) / 2 or dpr == 3.0


def test_edge_rows_are_the_rows_that_change_enough() -> None:
    from kcaptcha_solver.locate import _edge_rows

    rng = np.random.default_rng(1)
    gray = (rng.integers(0, 2, (203, 97)) * rng.integers(0, 12, (203, 97))).astype(np.uint8)  # changes of 0..11
    changed = np.abs(np.diff(gray.astype(int), axis=0)) >= 6
    every = np.vstack([np.ones((1, 97), bool), changed, np.ones((1, 97), bool)])  # the picture's top and bottom
    for least in (0, 20, 40, 98):
        rows, pixels = _edge_rows(gray, least, rows=16)  # small chunks: the last one is partial
        want = np.flatnonzero(every.sum(axis=1) >= least)
        assert rows.tolist() == want.tolist()
        assert np.array_equal(pixels, every[want])


def test_captcha_test_counts_percentiles_as_numpy_does() -> None:
    from kcaptcha_solver.locate import _percentile

    rng = np.random.default_rng(2)
    for n in [1, 2, 3, 50, 51, 99, 1000, 34_656]:
        levels = rng.integers(0, 256, n).astype(np.uint8)
        below = np.cumsum(np.bincount(levels, minlength=256))
        for q in (2, 90):
            assert _percentile(below, q) == np.percentile(levels, q)
