"""KCAPTCHA drawn exactly as the PHP program draws it, from the same seed.

The algorithm (from gnuboard5's ``kcaptcha.lib.php``, KCAPTCHA 1.2.6, and
KCAPTCHA 2.x ``kcaptcha.php``) in our own vectorised NumPy code:

1. a keystring of symbols drawn with ``mt_rand``, redrawn while it holds one of
   a few confusable bigrams;
2. glyphs from a randomly chosen font atlas, alpha-blended by GD onto a white
   canvas, each moved up or down, either 1 px apart or (``no_spaces``) pushed
   left until they touch;
3. white then black noise pixels;
4. a sine wave warp with bilinear interpolation that also recolours the text
   from black-on-white to the foreground and background colours;
5. optionally the ``www.captcha.ru`` credits strip, then JPEG or PNG.

Every float expression keeps PHP's operation order so that rounding, and
therefore every pixel, comes out the same.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
from PIL import Image

from . import gdfont
from .errors import ConfigError
from .fonts import DEFAULT_FONTS, TRANSPARENT, Atlas, load_fonts
from .phprand import PhpRandom

ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
BIGRAMS = re.compile("cp|cb|ck|c6|c9|rn|rm|mm|co|do|cl|db|qp|qb|dp|ww")
Range = tuple[int, int]
Color = tuple[Range, Range, Range]


@dataclass(frozen=True)
class CaptchaConfig:
    """Every setting of a KCAPTCHA deployment (the PHP config file, plus which code drew it).

    Ranges are inclusive ``(low, high)``; equal ends mean a fixed value and no
    ``mt_rand`` call, as when the PHP config holds a constant.
    """

    name: str = "custom"
    alphabet: str = ALPHABET  # atlas order; never changes without new atlases
    allowed_symbols: str = "0123456789"
    length: Range = (6, 6)
    width: int = 160
    height: int = 60
    fluctuation_amplitude: int = 5
    white_noise_density: float = 1 / 6
    black_noise_density: float = 1 / 20
    no_spaces: bool = False
    show_credits: bool = False
    credits: str = "www.captcha.ru"
    foreground: Color = ((0, 0), (0, 0), (0, 0))
    background: Color = ((255, 255), (255, 255), (255, 255))
    wave: bool = True  # gnuboard's switch; 2.x always waves
    # "1.2": gnuboard5's KCAPTCHA 1.2.6 (no fit retry, vertical wave amplitude /110);
    # "2.x": KCAPTCHA 2.0/2.1 (redraws until the text fits, amplitude /100).
    engine: Literal["1.2", "2.x"] = "1.2"
    # "driver": the page draws the keystring before the image (gnuboard5's
    # kcaptcha_session.php, kcaptcha-generator's ?string=); "constructor": KCAPTCHA
    # 2.x draws it itself, inside its fit loop.
    keystring: Literal["driver", "constructor"] = "driver"
    image_format: Literal["jpg", "png"] = "jpg"
    jpeg_quality: int = 90
    fonts: tuple[str, ...] = DEFAULT_FONTS

    def __post_init__(self) -> None:
        problems = []
        if not 1 <= self.length[0] <= self.length[1]:
            problems.append(f"length range {self.length} is empty")
        if not self.allowed_symbols or set(self.allowed_symbols) - set(self.alphabet):
            problems.append("allowed_symbols must be a non-empty subset of alphabet")
        if self.width < 20 or self.height < 31:
            problems.append(f"size {self.width}x{self.height} is too small (KCAPTCHA needs height >= 31)")
        for label, color in (("foreground", self.foreground), ("background", self.background)):
            if len(color) != 3 or any(not 0 <= lo <= hi <= 255 for lo, hi in color):
                problems.append(f"{label} must be three (low, high) ranges within 0..255")
        if self.engine not in ("1.2", "2.x") or self.keystring not in ("driver", "constructor"):
            problems.append("engine must be '1.2' or '2.x' and keystring 'driver' or 'constructor'")
        if self.image_format not in ("jpg", "png") or not 1 <= self.jpeg_quality <= 100:
            problems.append("image_format must be jpg or png, jpeg_quality 1..100")
        if not self.fonts:
            problems.append("at least one font atlas is needed")
        if problems:
            raise ConfigError("invalid captcha configuration: " + "; ".join(problems))

    @property
    def image_size(self) -> tuple[int, int]:
        """``(width, height)`` of the final image, credits strip included."""
        return self.width, self.height + (12 if self.show_credits else 0)

    @property
    def classes(self) -> str:
        """The symbols a reader must tell apart, in a stable order."""
        return "".join(sorted(set(self.allowed_symbols)))


PRESETS: dict[str, CaptchaConfig] = {
    "gnuboard5": CaptchaConfig(name="gnuboard5"),
    "seed-l2": CaptchaConfig(
        name="seed-l2", length=(2, 2), no_spaces=True, engine="2.x", image_format="png"
    ),
    "kcaptcha-default": CaptchaConfig(
        name="kcaptcha-default",
        allowed_symbols="23456789abcdegikpqsvxyz",
        length=(5, 7),
        height=80,
        fluctuation_amplitude=8,
        black_noise_density=1 / 30,
        no_spaces=True,
        show_credits=True,
        foreground=((0, 80), (0, 80), (0, 80)),
        background=((220, 255), (220, 255), (220, 255)),
        engine="2.x",
        keystring="constructor",
    ),
}


def get_preset(name: str) -> CaptchaConfig:
    """A preset by name, with a suggestion when the name is close to one."""
    try:
        return PRESETS[name]
    except KeyError:
        import difflib

        close = difflib.get_close_matches(name, PRESETS, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"unknown preset '{name}' (known: {', '.join(PRESETS)}).{hint}") from None


@dataclass
class Sample:
    """One drawn captcha: the raster before encoding, its label, and where each glyph ended up."""

    label: str
    seed: int
    raster: np.ndarray  # (H, W, 3) uint8, what GD held before imagejpeg/imagepng
    boxes: list[tuple[int, int, int, int]] = field(default_factory=list)  # (x0, y0, x1, y1), x1/y1 exclusive
    font: str = ""
    image_format: str = "jpg"
    jpeg_quality: int = 90

    def encode(self) -> bytes:
        """The file bytes, as PHP would send them."""
        buf = io.BytesIO()
        im = Image.fromarray(self.raster)
        if self.image_format == "jpg":
            # GD's imagejpeg turns chroma subsampling off (4:4:4) from quality 90 up.
            subsampling = 0 if self.jpeg_quality >= 90 else 2
            im.save(buf, format="JPEG", quality=self.jpeg_quality, subsampling=subsampling)
        else:
            im.save(buf, format="PNG")
        return buf.getvalue()

    def pixels(self) -> np.ndarray:
        """What a reader decodes from the file (JPEG loss included)."""
        if self.image_format == "png":
            return self.raster
        with Image.open(io.BytesIO(self.encode())) as im:
            return np.asarray(im.convert("RGB"))


def _php_round(value: float) -> int:
    """PHP's round(): halves away from zero."""
    return int(math.copysign(math.floor(abs(value) + 0.5), value))


def _draw_range(rng: PhpRandom, bounds: Range) -> int:
    low, high = bounds
    return low if low == high else rng.randint(low, high)


class Generator:
    """Draws captchas for one configuration; holds the loaded atlases.

    ``Generator("gnuboard5").draw(81000000)`` is image 0 of the shared sample.
    """

    def __init__(self, config: CaptchaConfig | str = "gnuboard5", fonts_dir: str | None = None) -> None:
        self.config = get_preset(config) if isinstance(config, str) else config
        self.atlases: list[Atlas] = load_fonts(self.config.fonts, self.config.alphabet, fonts_dir)
        cfg = self.config
        self._credits = np.zeros((12, cfg.width), dtype=bool)
        if cfg.show_credits:
            mask = gdfont.text_mask(cfg.credits)
            # imagestring at x = width/2 - 6*len/2 (PHP truncates), y = height - 2:
            # glyph rows 2.. fall into the 12-px strip below the picture.
            x0 = int(cfg.width / 2 - gdfont.WIDTH * len(cfg.credits) / 2)
            strip = np.zeros((12, cfg.width + 2 * mask.shape[1] + 2), dtype=bool)
            off = mask.shape[1] + 1
            strip[: gdfont.HEIGHT - 2, off + x0 : off + x0 + mask.shape[1]] = mask[2:]
            self._credits = strip[:, off : off + cfg.width]

    # -- the steps, in PHP's order -------------------------------------------

    def _keystring(self, rng: PhpRandom, length: int) -> str:
        symbols = self.config.allowed_symbols
        top = len(symbols) - 1
        while True:
            text = "".join(symbols[rng.randint(0, top)] for _ in range(length))
            if not BIGRAMS.search(text):
                return text

    def _pack_shift(self, canvas: np.ndarray, glyph, x: int, y: float, height: int) -> int | None:
        """How far ``no_spaces`` pushes a glyph left so it touches the text so far (None: no contact).

        For each probed glyph row, KCAPTCHA walks left from the glyph's first
        inked column until the canvas is dark enough that canvas + glyph alpha
        < 170, and keeps the smallest distance.
        """
        cfg = self.config
        rows = np.arange(3, self.atlases[0].height - 10)
        cols = glyph.probe_col[rows]
        keep = cols >= 0
        rows, cols = rows[keep], cols[keep]
        opacity = glyph.probe_alpha[rows].astype(np.int32)
        left = cols - 1 + x  # (start - 1 + col) - start + x
        py = rows + y
        inside = py <= height
        left, py, opacity = left[inside], py[inside], opacity[inside]
        if len(left) == 0:
            return None
        first = np.minimum(left, cfg.width - 1)
        steps = np.arange(200)
        px = first[:, None] - steps[None, :]
        valid = (px > (left - 200)[:, None]) & (px >= 0)
        iy = np.trunc(py).astype(np.int64)
        in_rows = (iy >= 0) & (iy < canvas.shape[0])
        color = np.zeros(px.shape, dtype=np.int32)  # out of the canvas, imagecolorat is false: 0
        ok = valid & in_rows[:, None] & (px < canvas.shape[1])
        color[ok] = canvas[np.broadcast_to(iy[:, None], px.shape)[ok], px[ok]]
        hit = valid & (color + opacity[:, None] < 170)
        found = hit.any(axis=1)
        if not found.any():
            return None
        first_hit = hit.argmax(axis=1)
        dist = left - (first - first_hit)
        return int(dist[found].min())

    def _place_text(self, rng: PhpRandom, label: str, atlas: Atlas):
        """Blend the glyphs onto a white canvas; returns canvas (blue channel), glyph map, text end x."""
        cfg = self.config
        h, w = cfg.height, cfg.width
        canvas = np.full((h, w), 255, dtype=np.int32)
        owner = np.full((h, w), -1, dtype=np.int8)
        amp = cfg.fluctuation_amplitude
        jitter = _php_round(amp / 3)
        odd = rng.randint(0, 1) or -1
        x = 1
        for i, ch in enumerate(label):
            g = atlas.glyphs[ch]
            y = ((i % 2) * amp - amp / 2) * odd + rng.randint(-jitter, jitter) + (h - atlas.height) / 2
            if not cfg.no_spaces:
                shift = 1
            elif i == 0:
                shift = 0
            else:
                shift = self._pack_shift(canvas, g, x, y, h)
                if shift is None:
                    shift = rng.randint(4, 6)
            dx, dy = x - shift, int(y)
            # imagecopy clips to the canvas; GD blends each pixel over the opaque canvas.
            x0, x1 = max(dx, 0), min(dx + g.width, w)
            y0, y1 = max(dy, 0), min(dy + atlas.height, h)
            if x0 < x1 and y0 < y1:
                a = g.alpha[y0 - dy : y1 - dy, x0 - dx : x1 - dx].astype(np.int32)
                src = g.blue[y0 - dy : y1 - dy, x0 - dx : x1 - dx].astype(np.int32)
                dst = canvas[y0:y1, x0:x1]
                canvas[y0:y1, x0:x1] = (src * (TRANSPARENT - a) + dst * a) // TRANSPARENT
                owner[y0:y1, x0:x1][a < TRANSPARENT] = i
            x += g.width - shift
        return canvas, owner, x

    def _noise(self, rng: PhpRandom, canvas: np.ndarray, x: int) -> None:
        cfg = self.config
        h, w = cfg.height, cfg.width
        for density, value in ((cfg.white_noise_density, 255), (cfg.black_noise_density, 0)):
            count = max(math.ceil(((h - 30) * x) * density), 0)
            pts = rng.randint_pattern(np.array([0, 10]), np.array([x - 1, h - 15]), count)
            px, py = pts[:, 0], pts[:, 1]
            ok = (px >= 0) & (px < w) & (py >= 0) & (py < h)
            canvas[py[ok], px[ok]] = value

    def _wave(self, rng: PhpRandom, canvas: np.ndarray, owner: np.ndarray, x_end: int, fg, bg):
        """The sine warp; returns the warped RGB picture and the glyph map in picture coordinates."""
        cfg = self.config
        h, w = cfg.height, cfg.width
        periods = [rng.randint(750000, 1200000) / 10000000 for _ in range(4)]
        phases = [rng.randint(0, 31415926) / 10000000 for _ in range(4)]
        amp_x = rng.randint(330, 420) / 110
        amp_y = rng.randint(330, 450) / (110 if cfg.engine == "1.2" else 100)
        center = x_end / 2
        # Separable sines: math.sin is the same libm call PHP makes.
        xs, ys = range(w), range(h)
        sin_x1 = np.array([math.sin(x * periods[0] + phases[0]) for x in xs])
        sin_y1 = np.array([math.sin(y * periods[2] + phases[1]) for y in ys])
        sin_x2 = np.array([math.sin(x * periods[1] + phases[2]) for x in xs])
        sin_y2 = np.array([math.sin(y * periods[3] + phases[3]) for y in ys])
        X = np.arange(w, dtype=np.float64)[None, :]
        Y = np.arange(h, dtype=np.float64)[:, None]
        if cfg.wave or cfg.engine == "2.x":
            sx = X + (sin_x1[None, :] + sin_y1[:, None]) * amp_x - w / 2 + center + 1
            sy = Y + (sin_x2[None, :] + sin_y2[:, None]) * amp_y
        else:
            sx = np.broadcast_to(X - w / 2 + center + 1, (h, w))
            sy = Y + (sin_x2[None, :] + sin_y2[:, None]) * 1.5
        inside = (sx >= 0) & (sy >= 0) & (sx < w - 1) & (sy < h - 1)
        sx = np.where(inside, sx, 0.0)
        sy = np.where(inside, sy, 0.0)
        ix, iy = sx.astype(np.int64), sy.astype(np.int64)
        # 1.2 reads (int)$sx + 1; 2.x passes the float $sx + 1, which PHP truncates.
        ix1 = ix + 1 if cfg.engine == "1.2" else (sx + 1).astype(np.int64)
        iy1 = iy + 1 if cfg.engine == "1.2" else (sy + 1).astype(np.int64)
        c = canvas[iy, ix]
        cx = canvas[iy, ix1]
        cy = canvas[iy1, ix]
        cxy = canvas[iy1, ix1]
        white = (c == 255) & (cx == 255) & (cy == 255) & (cxy == 255)
        black = (c == 0) & (cx == 0) & (cy == 0) & (cxy == 0)
        fx = sx - np.floor(sx)
        fy = sy - np.floor(sy)
        fx1 = 1 - fx
        fy1 = 1 - fy
        shade = c * fx1 * fy1 + cx * fx * fy1 + cy * fx1 * fy + cxy * fx * fy
        shade = np.minimum(shade, 255) / 255
        shade0 = 1 - shade
        written = inside & ~white
        out = np.empty((h, w, 3), dtype=np.uint8)
        for ch in range(3):
            value = (shade0 * fg[ch] + shade * bg[ch]).astype(np.int64)
            value = np.where(black, fg[ch], value)
            out[..., ch] = np.where(written, value, bg[ch])
        glyph_map = np.where(written, owner[iy, ix], -1)
        return out, glyph_map

    # -- public ----------------------------------------------------------------

    def draw(self, seed: int, boxes: bool = True) -> Sample:
        """Image drawn right after ``mt_srand(seed)``, as PHP would draw it."""
        cfg = self.config
        if not 0 <= seed <= 0xFFFFFFFF:
            raise ConfigError(f"seed must be in 0..4294967295, got {seed}")
        rng = PhpRandom(seed)
        label = ""
        if cfg.keystring == "driver":
            label = self._keystring(rng, _draw_range(rng, cfg.length))
            length = len(label)
        else:
            length = _draw_range(rng, cfg.length)
        fg = [_draw_range(rng, r) for r in cfg.foreground]
        bg = [_draw_range(rng, r) for r in cfg.background]
        while True:
            if cfg.keystring == "constructor":
                label = self._keystring(rng, length)
            atlas = self.atlases[rng.randint(0, len(self.atlases) - 1)]
            canvas, owner, x_end = self._place_text(rng, label, atlas)
            if cfg.engine == "1.2" or x_end < cfg.width - 10:
                break
        self._noise(rng, canvas, x_end)
        picture, glyph_map = self._wave(rng, canvas, owner, x_end, fg, bg)
        width, height = cfg.image_size
        raster = np.empty((height, width, 3), dtype=np.uint8)
        raster[: cfg.height] = picture
        if cfg.show_credits:
            raster[cfg.height :] = np.where(self._credits[:, :, None], bg, fg)
        return Sample(
            label=label,
            seed=seed,
            raster=raster,
            boxes=_boxes(glyph_map, len(label)) if boxes else [],
            font=atlas.name,
            image_format=cfg.image_format,
            jpeg_quality=cfg.jpeg_quality,
        )

    def samples(self, seed: int, count: int | None = None, boxes: bool = False) -> Iterator[Sample]:
        """Samples for seeds ``seed, seed + 1, ...`` (endless when ``count`` is None)."""
        i = 0
        while count is None or i < count:
            yield self.draw(seed + i, boxes=boxes)
            i += 1


def _boxes(glyph_map: np.ndarray, n: int) -> list[tuple[int, int, int, int]]:
    """Tight boxes of the picture pixels each glyph's ink was sampled from."""
    out = []
    for i in range(n):
        mask = glyph_map == i
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        if len(rows) == 0:
            out.append((0, 0, 0, 0))
        else:
            out.append((int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1))
    return out


def with_overrides(config: CaptchaConfig, **changes) -> CaptchaConfig:
    """A copy of ``config`` with some fields changed (validated again)."""
    return replace(config, **changes)
