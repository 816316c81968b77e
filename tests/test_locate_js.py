"""locate.py and the page's locate.js cut the same boxes from the same pictures (tests/fixtures/locate.json):
real PHP images drawn into pages, Chromium screenshots of Gnuboard's form, bare captchas, pictures with
no captcha. Python's boxes are checked against the truth first, then Node's against Python's, exactly,
with the crop resampled to the model's size (reading.js's fit, locate.py's RESAMPLE) byte for byte."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import model_files
from PIL import Image, ImageDraw
from test_locate import SIZES, on_page

from kcaptcha_solver.inputs import decode_bytes
from kcaptcha_solver.locate import GRID, PHASES, locate

ROOT = Path(__file__).resolve().parents[1]
SPEC = json.loads((ROOT / "tests" / "fixtures" / "locate.json").read_text())

# Each picture's raw RGB bytes (a file beside the manifest), searched as RGB and as RGBA (what the page's
# canvas gives); prints, per picture, the boxes, sizes and a sha256 of each crop at its model's size.
NODE_JS = """
import * as fs from 'node:fs';
import { createHash } from 'node:crypto';
import { cut, locate, shifts } from './src/kcaptcha_solver/web/locate.js';
import { fit } from './src/kcaptcha_solver/web/reading.js';
const [manifest, sizes] = [JSON.parse(fs.readFileSync(process.argv[1], 'utf8')), JSON.parse(process.argv[2])];
const out = [];
for (const { file, width, height } of manifest) {
  const rgb = new Uint8Array(fs.readFileSync(file));
  const rgba = new Uint8ClampedArray(width * height * 4);
  for (let i = 0, j = 0; i < rgb.length; i += 3, j += 4) rgba.set([rgb[i], rgb[i + 1], rgb[i + 2], 255], j);
  const found = locate(rgb, width, height, sizes);
  const again = locate(rgba, width, height, sizes, 4);
  if (JSON.stringify(found) !== JSON.stringify(again)) throw new Error(`${file}: RGBA gives ${JSON.stringify(again)}`);
  const sha = (pixels) => createHash('sha256').update(Uint8Array.from(pixels)).digest('hex');
  out.push(found.map(({ box, size }) => {
    const crop = cut(rgba, width, box, 4);
    const cutAt = (shift) => sha(fit(crop, box[2], box[3], size[0], size[1], shift));
    const [first, ...views] = shifts(box, size).flat().map(cutAt);
    return { box, size, sha256: first, views };
  }));
}
console.log(JSON.stringify(out));
"""


def image(shared_dir: Path, preset: str, index: int) -> np.ndarray:
    return np.asarray(Image.open(model_files(shared_dir, preset)[index]).convert("RGB"))


def page_case(shared_dir: Path, case: dict) -> tuple[np.ndarray, list]:
    """A page from test_locate's on_page; the truth: each captcha's exact box."""
    captcha = image(shared_dir, case["preset"], case["index"])
    style = {key: case[key] for key in ("border", "background", "under") if key in case}
    size = tuple(case.get("size", (900, 500)))
    truth = [(*case["at"], round(captcha.shape[1] * case["scale"]), round(captcha.shape[0] * case["scale"]))]
    page = on_page(captcha, case["scale"], tuple(case["at"]), size=size, **style)
    if "second" in case:  # the first captcha's corner of a page pasted over another page with a second
        two = case["second"]
        other = image(shared_dir, two["preset"], two["index"])
        under = on_page(other, two["scale"], tuple(two["at"]), size=size, background="#f8f8f8")
        under.paste(page.crop((0, 0, 400, 200)), (0, 0))
        page = under
        truth.append((*two["at"], round(other.shape[1] * two["scale"]), round(other.shape[0] * two["scale"])))
    return np.asarray(page), truth


def empty_pictures(shared_dir: Path) -> dict[str, np.ndarray]:
    """What test_locate's no-captcha test draws: nothing to find in any of them."""
    captcha = image(shared_dir, "gnuboard5", 0)
    text = Image.new("RGB", (1920, 1080), "white")
    draw = ImageDraw.Draw(text)
    for y in range(10, 1080, 18):
        draw.text((10, y), "board post title, author, date, views " * 8, fill=(20, 20, 20))
    return {
        "white screen": np.full((1080, 1920, 3), 255, np.uint8),
        "blank frame": np.asarray(on_page(np.full_like(captcha, 255), 1.5, (100, 100))),
        "text page": np.asarray(text),
        "noise": np.random.default_rng(0).integers(0, 256, (600, 1600, 3), dtype=np.uint8),
        # 216 px high: past SCALE_MAX of a 160x60 shape, though under 160x92's bound
        "beyond SCALE_MAX": np.asarray(on_page(captcha, 3.6, (40, 50))),
    }


def screenshots(shared_dir: Path) -> list[tuple[str, np.ndarray, tuple]]:
    """Chromium renders of Gnuboard's form (screenshot.py), saved as PNG or JPEG and decoded by Pillow.
    Rendered in a thread of its own: Playwright's sync API runs one instance per thread, and another
    test's browser may be running in this one."""
    from concurrent.futures import ThreadPoolExecutor

    from kcaptcha_solver.screenshot import Renderer, sample_images, screen

    def render() -> list[tuple[str, np.ndarray, tuple]]:
        out = []
        with Renderer() as renderer:
            for case in SPEC["screenshots"]:
                folder = model_files(shared_dir, case["preset"])[0].parent
                # "after": forms drawn above it on the page, "seed": the loose crops' margins, as the
                # benchmark that missed it drew them (at DPR 1.25 a form's place on the page moves its
                # edges within a pixel)
                after = case.get("after", 0)
                images = sample_images(folder, after + 1, case["index"] - after)
                for shot in renderer.render(images, case["skin"], case["dpr"], crops=case["crops"],
                                            seed=case.get("seed", 0)):
                    if shot.source != images[-1][2]:
                        continue
                    if "screen" in case:
                        shot = screen(shot, *case["screen"])
                    about = f"{case['preset']} {case['skin']} {case['dpr']}x {shot.crop} {case['format']}"
                    out.append((about, decode_bytes(shot.encode(case["format"]), 10_000_000), shot.box))
        return out

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(render).result()


def boxes_and_hashes(found) -> list[dict]:
    def sha(pixels: np.ndarray) -> str:
        return hashlib.sha256(np.ascontiguousarray(pixels).tobytes()).hexdigest()

    return [{"box": list(f.box), "size": list(f.size), "sha256": sha(f.pixels),
             "views": [sha(v) for v in f.views((*PHASES, *GRID))]} for f in found]


def test_the_page_cuts_the_boxes_python_cuts(shared_dir: Path, tmp_path: Path) -> None:
    if shutil.which("node") is None:
        pytest.fail("node is needed (Node 18+): the page's locate.js is checked in Node")
    pictures: list[tuple[str, np.ndarray]] = []
    for case in SPEC["pages"]:
        page, truth = page_case(shared_dir, case)
        assert [f.box for f in locate(page, SIZES)] == truth, case["about"]
        pictures.append((case["about"], page))
    for case in SPEC["bare"]:
        rgb = image(shared_dir, case["preset"], case["index"])
        assert [f.box for f in locate(rgb, SIZES)] == [(0, 0, rgb.shape[1], rgb.shape[0])]
        pictures.append((f"bare {case['preset']}", rgb))
    for about, rgb, box in screenshots(shared_dir):
        (found,) = locate(rgb, SIZES)
        x, y, w, h = found.box
        edges = np.array([x, y, x + w, y + h]) - np.round([box[0], box[1], box[0] + box[2], box[1] + box[3]])
        assert np.abs(edges).max() <= 1.0, (about, found.box, box)
        pictures.append((about, rgb))
    for about, rgb in empty_pictures(shared_dir).items():
        assert locate(rgb, SIZES) == [], about
        pictures.append((about, rgb))
    assert len(SPEC["empty"]) == len(empty_pictures(shared_dir))

    manifest = []
    for k, (about, rgb) in enumerate(pictures):
        path = tmp_path / f"{k}.rgb"
        path.write_bytes(np.ascontiguousarray(rgb).tobytes())
        manifest.append({"file": str(path), "width": rgb.shape[1], "height": rgb.shape[0], "about": about})
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    done = subprocess.run(["node", "--input-type=module", "-e", NODE_JS, str(tmp_path / "manifest.json"),
                           json.dumps(SIZES)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout)
    for (about, rgb), node in zip(pictures, got, strict=True):
        assert node == boxes_and_hashes(locate(rgb, SIZES)), about


def test_the_page_resamples_a_crop_as_locate_py() -> None:
    """locate.py brings a crop to the model's size with RESAMPLE, the page with reading.js's fit(), which
    is inputs.fit's nearest neighbour (test_reading.py checks that pair): RESAMPLE must stay nearest."""
    from kcaptcha_solver import locate as locate_py

    assert locate_py.RESAMPLE == Image.NEAREST
