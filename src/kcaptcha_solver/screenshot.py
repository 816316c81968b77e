"""Screenshots of captchas as Gnuboard 5 shows them, rendered by Chromium: for tests, benchmarks, training.

Gnuboard 5 (5.6.34) writes the captcha with ``captcha_html()`` in ``plugin/kcaptcha/kcaptcha.lib.php``:
a ``fieldset#captcha`` holding ``img#captcha_img``, the answer box ``#captcha_key``, a listen button
(desktop only), a reload button and a one-line hint; on phones the fieldset gets class ``m_captcha``
and an ``<audio>`` bar above the image. How big the image is on screen comes from the theme's CSS,
which sets ``box-sizing: border-box`` on every element:

- ``desktop`` (``css/default.css``): ``#captcha_img {height:40px; border:1px solid #898989}``. The
  border is inside the 40 px, so the 160x60 image is drawn 38 CSS px high and 101.3 wide, 0.633 of
  its size: a screenshot at device-pixel-ratio 1 holds a downscaled captcha.
- ``mobile`` (``css/mobile.css``, what a phone is served): the same 40-px rule and no ``m_captcha``
  image rule, so phones show the same 101x38 CSS px, at DPR 2-3 (1.27-1.9x the image's pixels).
- ``mobile-pc`` (``css/default.css`` with ``m_captcha``: a phone asking for the PC layout):
  ``width:160px; height:60px; border:1px solid #e9e9e9; display:block``, so 158x58 CSS px inside the
  border: not quite the image's own size, even at DPR 1.

The HTML and CSS here are our own, restating those rules; the icons are plain shapes of our own.
Many forms are laid out on one page and captured in one screenshot, and every crop is cut from it,
so one render serves every crop. Playwright is a dev dependency, imported only when rendering.
"""

from __future__ import annotations

import base64
import io
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SKINS = ("desktop", "mobile", "mobile-pc")
DPRS = (1.0, 1.25, 1.5, 2.0, 3.0)
# What a person cuts out: the image inside its border, the image with its border, the image with some
# page around it (3-30 CSS px a side), the fieldset with its buttons and hint, the whole form.
CROPS = ("image", "border", "loose", "fieldset", "form")
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
FORMS_PER_PAGE = 12  # one screenshot per 12 captchas; more makes 3x pages of over 30 MP

BASE_CSS = """
*, :after, :before {box-sizing:border-box}
html, form, fieldset, img {margin:0; padding:0; border:0}
body {margin:0; padding:16px; font-size:12px; font-family:sans-serif; color:#000}
legend {position:absolute; font-size:0; line-height:0; text-indent:-9999em; overflow:hidden}
label, input, button, img {vertical-align:middle; font-size:1em}
input, button {margin:0; padding:0; font-family:sans-serif}
.form {width:var(--form-width); padding:14px 16px; margin:0 0 18px; border:1px solid #d7d7d7; background:#fff}
.form h2 {margin:0 0 10px; font-size:15px}
.form .row {margin:0 0 8px}
.form .row label {display:inline-block; width:70px}
.form .row input {width:200px; height:32px; border:1px solid #ccc; padding:0 6px}
.form .submit {margin-top:10px; width:100px; height:36px; border:0; background:#3a8afd; color:#fff}
#captcha_key {font-weight:bold; text-align:center; font-size:1.333em}
.icon {position:relative; overflow:hidden; text-indent:-999px; cursor:pointer}
.icon:after {content:""; position:absolute; left:12px; top:12px; width:16px; height:16px}
.listen {background:#4c5a6b}
.listen:after {border-radius:50%; border:3px solid #fff}
.reload {background:#7a8794}
.reload:after {border:3px solid #fff; border-right-color:transparent; border-radius:50%}
"""

SKIN_CSS = {
    "desktop": """
body {background:#fff}
.captcha {display:inline-block; position:relative}
.captcha img {height:40px; border:1px solid #898989; vertical-align:top; padding:0; margin:0}
.captcha .icon {margin:0; padding:0; width:40px; height:40px; border:0; vertical-align:middle; border-radius:3px}
#captcha_key {margin:0 0 0 3px; padding:0 5px; width:90px; height:40px; border:1px solid #ccc;
  background:#fff; border-radius:3px; vertical-align:top}
.captcha .info {display:block; margin:5px 0 0; font-size:0.95em; letter-spacing:-0.1em}
""",
    "mobile": """
body {background:#f8f8f8}
.captcha {position:relative}
.captcha audio {display:block; margin:0 0 5px}
.captcha img {height:40px; border:1px solid #898989; vertical-align:top; padding:0; margin:0}
.captcha .icon {margin:0; padding:0; width:40px; height:40px; border:0; vertical-align:middle; border-radius:3px}
#captcha_key {margin:0 0 0 3px; padding:0 5px; width:90px; height:40px; border:1px solid #ccc;
  background:#fff; border-radius:0; vertical-align:top}
.captcha .info {display:block; margin:3px 0 5px; font-size:0.95em; letter-spacing:-0.1em}
""",
    "mobile-pc": """
body {background:#fff}
.captcha {display:inline-block; position:relative}
.captcha audio {display:block; margin:0 0 5px; width:187px}
.captcha img {width:160px; height:60px; border:1px solid #e9e9e9; margin:5px 0 3px; display:block; padding:0}
.captcha .icon {margin:0; padding:0; width:40px; height:40px; border:0; vertical-align:middle}
#captcha_key {margin:0 0 0 3px; padding:0 5px; width:115px; height:29px; border:1px solid #b8c9c2;
  background:#f7f7f7; line-height:29px}
.captcha .info {display:block; margin:5px 0 0; font-size:0.95em; letter-spacing:-0.1em}
""",
}
VIEWPORT_WIDTH = {"desktop": 760, "mobile": 400, "mobile-pc": 760}  # CSS px
FORM_WIDTH = {"desktop": "680px", "mobile": "360px", "mobile-pc": "680px"}


def squeezes(skin: str, size: tuple[int, int]) -> bool:
    """Whether ``skin`` draws a captcha of ``size`` (width, height) out of its shape: the PC layout on a
    phone sets 160x60 CSS px whatever the image, so a 160x92 one takes the 160x60 presets' shape, a view no
    site shows of it. Tests and benchmarks leave those pairs out."""
    return skin == "mobile-pc" and size != (160, 60)


@dataclass(frozen=True)
class Shot:
    """One screenshot crop. ``box`` is the captcha image inside its border, (x, y, w, h) in this
    picture's pixels, as floats: at fractional DPRs the image's edges fall between pixels."""

    pixels: np.ndarray  # uint8 [H, W, 3], before any encoding
    label: str
    source: str  # the captcha file's name (or generator seed)
    skin: str
    dpr: float
    crop: str
    box: tuple[float, float, float, float]

    def encode(self, fmt: str = "PNG", quality: int = 90) -> bytes:
        """The picture as PNG or JPEG bytes, as a screenshot tool would save it."""
        buf = io.BytesIO()
        Image.fromarray(self.pixels).save(buf, fmt, **({"quality": quality} if fmt == "JPEG" else {}))
        return buf.getvalue()


def _form_html(i: int, src: str, skin: str) -> str:
    mobile = skin != "desktop"
    audio = '<audio controls class="audio"></audio>' if mobile else ""
    listen = "" if mobile else '<button type="button" class="icon listen"><span></span>listen</button>'
    cls = "captcha m_captcha" if mobile else "captcha"
    return f"""
<form class="form" id="form{i}"><h2>Write a post</h2>
<div class="row"><label>Name</label><input type="text" value="guest"></div>
<div class="row"><label>Subject</label><input type="text" value="hello"></div>
<fieldset id="captcha{i}" class="{cls}"><legend><label>captcha</label></legend>{audio}<img
 src="{src}" alt="" class="captcha_img" id="img{i}"><input type="text" id="captcha_key" size="6"
 maxlength="6">{listen}<button type="button" class="icon reload"><span></span>reload</button><span
 class="info">Type the digits you see, in order.</span></fieldset>
<button type="button" class="submit">Submit</button></form>"""


def _page_html(sources: Sequence[str], skin: str) -> str:
    forms = "".join(_form_html(i, src, skin) for i, src in enumerate(sources))
    css = BASE_CSS + SKIN_CSS[skin]
    return (f"<!doctype html><html><head><meta charset='utf-8'><style>:root{{--form-width:{FORM_WIDTH[skin]}}}"
            f"{css}</style></head><body>{forms}</body></html>")


def _data_url(data: bytes) -> str:
    mime = "image/png" if data[:4] == b"\x89PNG" else "image/jpeg"
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


# Boxes in CSS px from the page: per form, the image's content box, its border box, the fieldset, the form.
_BOXES_JS = """() => [...document.querySelectorAll('form')].map((f, i) => {
  const r = e => { const b = e.getBoundingClientRect();
                   return [b.left + scrollX, b.top + scrollY, b.width, b.height]; };
  const img = document.getElementById('img' + i), cs = getComputedStyle(img);
  const bw = parseFloat(cs.borderLeftWidth), bt = parseFloat(cs.borderTopWidth);
  const o = r(img);
  return {content: [o[0] + bw, o[1] + bt, o[2] - 2 * bw, o[3] - 2 * bt], border: o,
          fieldset: r(document.getElementById('captcha' + i)), form: r(f), ready: img.complete && img.naturalWidth > 0};
})"""


class Renderer:
    """One headless Chromium, reused for every page. Use as a context manager."""

    def __init__(self, executable: str = CHROMIUM) -> None:
        from playwright.sync_api import sync_playwright  # a dev dependency: only rendering needs it

        self._pw = sync_playwright().start()
        self._browser = self._pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)

    def __enter__(self) -> Renderer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._browser.close()
        self._pw.stop()

    def render(
        self, images: Sequence[tuple[bytes, str, str]], skin: str, dpr: float,
        crops: Sequence[str] = CROPS, seed: int = 0,
    ) -> Iterator[Shot]:
        """Each (encoded image, label, source name) shown in a Gnuboard form; yields one Shot per crop."""
        if skin not in SKINS:
            raise ValueError(f"unknown skin {skin!r} (known: {', '.join(SKINS)})")
        rng = random.Random(seed)
        for start in range(0, len(images), FORMS_PER_PAGE):
            chunk = images[start:start + FORMS_PER_PAGE]
            page_px, boxes = self._page(chunk, skin, dpr)
            for (_, label, name), b in zip(chunk, boxes, strict=True):
                for crop in crops:
                    yield _cut(page_px, b, crop, dpr, rng, label, name, skin)

    def _page(self, chunk: Sequence[tuple[bytes, str, str]], skin: str, dpr: float) -> tuple[np.ndarray, list]:
        context = self._browser.new_context(
            viewport={"width": VIEWPORT_WIDTH[skin], "height": 600}, device_scale_factor=dpr)
        try:
            page = context.new_page()
            page.set_content(_page_html([_data_url(d) for d, _, _ in chunk], skin), wait_until="load")
            boxes = page.evaluate(_BOXES_JS)
            if not all(b["ready"] for b in boxes):
                raise RuntimeError("a captcha image did not load in the rendered page")
            png = page.screenshot(full_page=True, type="png", animations="disabled", caret="hide")
        finally:
            context.close()
        return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")), boxes


def _cut(page: np.ndarray, b: dict, crop: str, dpr: float, rng: random.Random,
         label: str, name: str, skin: str) -> Shot:
    """Cut one crop from a rendered page, in whole device pixels, as a snipping tool would."""
    cx, cy, cw, ch = (v * dpr for v in b["content"])
    if crop == "image":
        region = (cx, cy, cx + cw, cy + ch)
    elif crop == "border":
        x, y, w, h = (v * dpr for v in b["border"])
        region = (x, y, x + w, y + h)
    elif crop == "loose":
        x, y, w, h = (v * dpr for v in b["border"])
        m = [rng.uniform(3, 30) * dpr for _ in range(4)]
        region = (x - m[0], y - m[1], x + w + m[2], y + h + m[3])
    elif crop in ("fieldset", "form"):
        x, y, w, h = (v * dpr for v in b[crop])
        pad = 6 * dpr
        region = (x - pad, y - pad, x + w + pad, y + h + pad)
    else:
        raise ValueError(f"unknown crop {crop!r} (known: {', '.join(CROPS)})")
    x0, y0 = max(0, round(region[0])), max(0, round(region[1]))
    x1, y1 = min(page.shape[1], round(region[2])), min(page.shape[0], round(region[3]))
    pixels = np.ascontiguousarray(page[y0:y1, x0:x1])
    return Shot(pixels, label, name, skin, dpr, crop, (cx - x0, cy - y0, cw, ch))


def screen(shot: Shot, width: int = 1920, height: int = 1080, seed: int = 0) -> Shot:
    """The crop pasted at a random place on a full screen of page background with some text lines around:
    what a whole-screen capture (PrtScn) gives. Used for the 1920x1080 timing."""
    rng = random.Random(seed)
    bg = (248, 248, 248) if shot.skin == "mobile" else (255, 255, 255)
    canvas = Image.new("RGB", (width, height), bg)
    draw = ImageDraw.Draw(canvas)
    for k in range(0, height, 23):  # lines of "text" and rules, like a board's list around the form
        if rng.random() < 0.5:
            draw.text((rng.randint(10, 200), k), "Lorem ipsum board post title " * rng.randint(1, 4), fill=(40, 40, 40))
        if rng.random() < 0.1:
            draw.line((0, k + 18, width, k + 18), fill=(221, 221, 221))
    h, w = shot.pixels.shape[:2]
    x, y = rng.randint(0, max(0, width - w)), rng.randint(0, max(0, height - h))
    canvas.paste(Image.fromarray(shot.pixels), (x, y))
    bx, by, bw, bh = shot.box
    return Shot(np.asarray(canvas), shot.label, shot.source, shot.skin, shot.dpr, "screen",
                (bx + x, by + y, bw, bh))


def sample_images(folder: str | Path, count: int, start: int = 0) -> list[tuple[bytes, str, str]]:
    """(bytes, label, file name) of a shared-sample folder (``<label>_<index>.<ext>``), read in place."""
    files = sorted(Path(folder).iterdir(), key=lambda p: p.stem.rsplit("_", 1)[1])[start:start + count]
    return [(p.read_bytes(), p.stem.rsplit("_", 1)[0], p.name) for p in files]

