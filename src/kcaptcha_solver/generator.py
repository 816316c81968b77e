"""KCAPTCHA drawn exactly as the PHP program draws it, from the same seed.

The algorithm (from gnuboard5's ``kcaptcha.lib.php``, KCAPTCHA 1.2.6 as distributed
and as gnuboard modified it, and KCAPTCHA 2.x ``kcaptcha.php``; :data:`ENGINES` lists
what differs) in our own code: NumPy for the random draws, and small numba-compiled
loops for the pixel work (glyph copy, noise dots, wave):

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
therefore every pixel, comes out the same. ``benchmarks/fidelity.py`` checks this
against the PHP code on hundreds of configurations from :func:`random_config`'s space.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import io
import json
import math
import os
import random
import re
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Literal

import numpy as np
from PIL import Image

from . import gdfont
from .errors import ConfigError, FontsError, KcaptchaError
from .fonts import DEFAULT_FONTS, FONTS_1_2, TRANSPARENT, Atlas, load_fonts
from .phprand import PhpRandom

ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
BIGRAMS = re.compile("cp|cb|ck|c6|c9|rn|rm|mm|co|do|cl|db|qp|qb|dp|ww")
Range = tuple[int, int]
Color = tuple[Range, Range, Range]


@dataclass(frozen=True)
class Engine:
    """What one KCAPTCHA code path does differently from the others (``CaptchaConfig.engine``)."""

    fit_retry: bool  # redraw font and layout (and a constructor's keystring) until x < width - 10
    alternate: bool  # 2.x layout: glyphs alternate up/down by the amplitude; 1.2.x: mt_rand(-A, A) + 2
    pack: tuple[int, int, int, int]  # no_spaces: first glyph row, rows left out at the bottom, reach, threshold
    wave_y_divisor: int  # vertical wave amplitude mt_rand(330, 450) / divisor
    int_then_add: bool  # wave samples (int)$sx + 1 (gnuboard's casts) rather than (int)($sx + 1)
    noise: bool  # white and black noise dots exist in this code
    wave_switch: bool  # has gnuboard's $wave setting


ENGINES: dict[str, Engine] = {
    # gnuboard5 5.1+ plugin/kcaptcha/kcaptcha.lib.php: KCAPTCHA 1.2.6 given 2.x's layout, packing and
    # noise, no fit retry, the 1.2 wave and explicit (int) casts. The casts came in 2022; before, the
    # float $sx + 1 was truncated, which differs only where $sx + 1 rounds up to the next integer.
    "1.2": Engine(False, True, (3, 10, 200, 170), 110, True, True, True),
    # KCAPTCHA 2.0 / 2.1 as distributed (and as kcaptcha-generator runs it).
    "2.x": Engine(True, True, (3, 10, 200, 170), 100, False, True, False),
    # KCAPTCHA 1.2.6 as distributed, which gnuboard5 ran until 5.1 (2015-11-16): no noise, its own
    # layout and packing, retries until the text fits.
    "1.2-original": Engine(True, False, (7, 20, 12, 190), 110, False, False, True),
}


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
    wave: bool = True  # the 1.2 codes' $wave switch (off: a fixed 1.5-px vertical wave); 2.x always waves
    # "1.2": gnuboard5 5.1+'s modified KCAPTCHA 1.2.6; "2.x": KCAPTCHA 2.0/2.1;
    # "1.2-original": KCAPTCHA 1.2.6 as distributed (gnuboard5 before 5.1). See ENGINES.
    engine: Literal["1.2", "2.x", "1.2-original"] = "1.2"
    # "driver": the page draws the keystring before the image (gnuboard5's
    # kcaptcha_session.php, kcaptcha-generator's ?string=); "constructor": KCAPTCHA
    # 2.x and 1.2.x as distributed draw it themselves, inside their fit loop.
    keystring: Literal["driver", "constructor"] = "driver"
    image_format: Literal["jpg", "png"] = "jpg"
    jpeg_quality: int = 90
    fonts: tuple[str, ...] = DEFAULT_FONTS

    def __post_init__(self) -> None:
        problems = []
        if not 1 <= self.length[0] <= self.length[1] <= 64:  # glyph numbers are int8 in the glyph map
            problems.append(f"length range {self.length} must be non-empty, within 1..64")
        if not self.allowed_symbols or set(self.allowed_symbols) - set(self.alphabet):
            problems.append("allowed_symbols must be a non-empty subset of alphabet")
        elif len(set(self.allowed_symbols)) == 1 and self.length[0] >= 2 and BIGRAMS.search(self.allowed_symbols * 2):
            problems.append("every keystring of these symbols holds a confusable bigram (mm, ww): PHP redraws forever")
        if self.width < 20 or self.height < 31:
            problems.append(f"size {self.width}x{self.height} is too small (KCAPTCHA needs height >= 31)")
        for label, color in (("foreground", self.foreground), ("background", self.background)):
            if len(color) != 3 or any(not 0 <= lo <= hi <= 255 for lo, hi in color):
                problems.append(f"{label} must be three (low, high) ranges within 0..255")
        engine = ENGINES.get(self.engine)
        if engine is None or self.keystring not in ("driver", "constructor"):
            problems.append(f"engine must be one of {', '.join(ENGINES)} and keystring 'driver' or 'constructor'")
        elif not engine.noise and (self.white_noise_density or self.black_noise_density):
            problems.append(f"engine {self.engine} draws no noise: set both noise densities to 0")
        elif not engine.fit_retry and self.keystring == "constructor":
            problems.append(f"engine {self.engine} never draws its own keystring: keystring must be 'driver'")
        elif not engine.wave_switch and not self.wave:
            problems.append(f"engine {self.engine} has no wave switch: wave must stay true")
        if not 0 <= self.fluctuation_amplitude <= 100:
            problems.append("fluctuation_amplitude must be within 0..100")
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


# -- the whole configuration space, as one distribution ---------------------------

SYMBOL_SETS = {
    "digits": "0123456789",  # gnuboard5, most copies
    "hex": "0123456789abcdef",  # gnuboard's commented-out alternative in kcaptcha_config.php
    "kcaptcha-2.x": "23456789abcdegikpqsvxyz",  # the KCAPTCHA 2.x config as distributed
    "kcaptcha-1.2": "23456789abcdeghkmnpqsuvxyz",  # the KCAPTCHA 1.2.x config as distributed
    "all": ALPHABET,
}
# Text width bounds per atlas set, measured on the atlases: the narrowest atlas's widest glyph
# (digits, any symbol) bounds a text that surely fits in that atlas; the mean glyph width a typical one.
_WIDEST_IN_NARROWEST = {"2.x": (23, 40), "1.2": (16, 26)}
_MEAN_GLYPH = {"2.x": 24, "1.2": 17}


def random_config(rng: random.Random) -> CaptchaConfig:
    """One configuration drawn from the space of KCAPTCHA deployments seen in public code.

    The distribution a general reader trains on (issue 13); every draw is valid and its text
    almost always fits (see the width rule; general.sample skips the rare draw that never does).
    Shares, each drawn independently unless said:

    ========== ===========================================================================
    engine     ``2.x`` 50 %, gnuboard's ``1.2`` 30 %, ``1.2-original`` 20 %
    keystring  ``1.2``: driver; the others: driver or constructor, 1/2 each
    fonts      KCAPTCHA 1.2.x's 22 atlases for ``1.2-original`` 80 %, ``1.2`` 25 %, ``2.x`` 20 %;
               else the three bold 2.x atlases
    symbols    digits 40 %, hex 15 %, the 2.x default set 15 %, the 1.2.x default set 10 %,
               all 36 10 %, a random subset of 4..36 of the 36 10 %
    length     fixed 2..7 (60 %) or ``mt_rand(a, b)``, 2 <= a < b <= 7 (40 %)
    size       width 100..200, height 40..100; credits strip (+12 px) 25 %; width raised
               where the text needs it (below), length lowered where 200 is not enough
    fluct.     ``fluctuation_amplitude`` 0..12
    noise      none for ``1.2-original``; else off 25 %, else white 1/4..1/10, black 1/15..1/40
    no_spaces  1/2
    colours    black on white 50 %; a fixed dark-on-light pair 20 %; ``mt_rand`` per channel
               30 % (foreground 0..50-120, background 180-230..255)
    format     JPEG 75 % (quality 50..100, 90 in half of them), PNG 25 %
    wave       off 10 % on the 1.2 engines (2.x has no switch)
    ========== ===========================================================================

    Width rule: ``1 + length * w < width - 10``, with ``w`` the narrowest atlas's widest
    glyph when the keystring is fixed before the fit loop (driver), or the mean glyph width
    (x 0.8 with ``no_spaces``) when the code redraws the keystring itself. So a fit-retrying
    engine always finds a layout, and gnuboard's (which never retries) rarely overflows.
    """
    engine = rng.choices(["2.x", "1.2", "1.2-original"], [50, 30, 20])[0]
    keystring = "driver" if engine == "1.2" or rng.random() < 0.5 else "constructor"
    old_fonts = rng.random() < {"2.x": 0.2, "1.2": 0.25, "1.2-original": 0.8}[engine]
    family = rng.choices(list(SYMBOL_SETS) + ["subset"], [40, 15, 15, 10, 10, 10])[0]
    if family == "subset":
        symbols = "".join(sorted(rng.sample(ALPHABET, rng.randint(4, len(ALPHABET)))))
    else:
        symbols = SYMBOL_SETS[family]
    no_spaces = rng.random() < 0.5
    atlas_set = "1.2" if old_fonts else "2.x"
    if keystring == "driver" and ENGINES[engine].fit_retry:
        glyph = _WIDEST_IN_NARROWEST[atlas_set][0 if symbols.isdigit() else 1]
    else:
        glyph = _MEAN_GLYPH[atlas_set] * (0.8 if no_spaces else 1.0)
    longest = min(7, int((200 - 12) / glyph))
    high = rng.randint(2, longest)
    low = high if high == 2 or rng.random() < 0.6 else rng.randint(2, high - 1)
    width = rng.randint(max(100, math.ceil(12 + high * glyph)), 200)
    noisy = ENGINES[engine].noise and rng.random() < 0.75
    colours = rng.choices(["plain", "fixed", "random"], [50, 20, 30])[0]
    if colours == "plain":
        fg, bg = ((0, 0),) * 3, ((255, 255),) * 3
    elif colours == "fixed":
        fg = tuple((v, v) for v in (rng.randint(0, 100) for _ in range(3)))
        bg = tuple((v, v) for v in (rng.randint(180, 255) for _ in range(3)))
    else:
        top, bottom = rng.randint(50, 120), rng.randint(180, 230)
        fg, bg = ((0, top),) * 3, ((bottom, 255),) * 3
    jpeg = rng.random() < 0.75
    return CaptchaConfig(
        name=f"random-{engine}",
        allowed_symbols=symbols,
        length=(low, high),
        width=width,
        height=rng.randint(40, 100),
        fluctuation_amplitude=rng.randint(0, 12),
        white_noise_density=1 / rng.randint(4, 10) if noisy else 0.0,
        black_noise_density=1 / rng.randint(15, 40) if noisy else 0.0,
        no_spaces=no_spaces,
        show_credits=rng.random() < 0.25,
        foreground=fg,
        background=bg,
        wave=not ENGINES[engine].wave_switch or rng.random() >= 0.1,
        engine=engine,
        keystring=keystring,
        image_format="jpg" if jpeg else "png",
        jpeg_quality=(90 if rng.random() < 0.5 else rng.randint(50, 100)) if jpeg else 90,
        fonts=FONTS_1_2 if old_fonts else DEFAULT_FONTS,
    )


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
            im.save(buf, format="PNG", compress_level=1)  # lossless at any level; 1 is ~2x faster
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


_MAX_FIT_TRIES = 1000  # layouts tried before a text that never fits is reported


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
        self._local = threading.local()
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

    def _scratch(self, seed: int) -> threading.local:
        """This thread's reusable state: the random stream (reseeded) and the canvas buffers.

        Reseeding costs far less than a new stream, and refilling buffers less than
        fresh pages from the allocator, which is most of what small draws would spend.
        """
        local = self._local
        if not hasattr(local, "rng"):
            local.rng = PhpRandom(seed)
            local.canvas = np.empty((self.config.height, self.config.width), dtype=np.int32)
            local.owner = np.empty((self.config.height, self.config.width), dtype=np.int8)
        else:
            local.rng.reseed(seed)
        return local

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_local"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, _local=threading.local())

    # -- the steps, in PHP's order -------------------------------------------

    def _keystring(self, rng: PhpRandom, length: int) -> str:
        symbols = self.config.allowed_symbols
        top = len(symbols) - 1
        while True:
            text = "".join(symbols[rng.randint(0, top)] for _ in range(length))
            if not BIGRAMS.search(text):
                return text

    def _place_text(
        self, rng: PhpRandom, label: str, atlas: Atlas, canvas: np.ndarray, owner: np.ndarray
    ) -> int:
        """Blend the glyphs onto ``canvas`` (the blue channel, made white) and number them in ``owner``.

        Returns the x where the text ends.
        """
        cfg = self.config
        engine = ENGINES[cfg.engine]
        h = cfg.height
        canvas.fill(255)
        owner.fill(-1)
        amp = cfg.fluctuation_amplitude
        jitter = _php_round(amp / 3)
        odd = (rng.randint(0, 1) or -1) if engine.alternate else 0
        first_row, cut, reach, threshold = engine.pack
        x = 1
        placed: list[tuple[int, int, int, int]] = []  # (span start, width, dx, dy), not yet drawn
        for i, ch in enumerate(label):
            g = atlas.glyphs[ch]
            if engine.alternate:
                y = ((i % 2) * amp - amp / 2) * odd + rng.randint(-jitter, jitter) + (h - atlas.height) / 2
            else:
                y = rng.randint(-amp, amp) + (h - atlas.height) / 2 + 2
            if not cfg.no_spaces:
                shift = 1
            elif i == 0:
                shift = 0
            else:
                # Packing looks at the text drawn so far: draw the pending glyph first.
                _kernels().blend(canvas, owner, atlas.alpha, atlas.blue, np.array(placed), i - len(placed))
                placed.clear()
                shift = _kernels().pack(
                    canvas, g.probe_col, g.probe_alpha, x, y, first_row, atlas.height - cut, reach, threshold
                )
                if shift < 0:  # no contact: PHP leaves $shift at 10000 and draws a random gap
                    shift = rng.randint(4, 6)
            placed.append((g.start, g.width, x - shift, int(y)))
            x += g.width - shift
        _kernels().blend(canvas, owner, atlas.alpha, atlas.blue, np.array(placed), len(label) - len(placed))
        return x

    def _noise(self, rng: PhpRandom, canvas: np.ndarray, x: int) -> None:
        """White then black dots; both loops draw from the same ranges, so one pattern call serves both."""
        cfg = self.config
        if not ENGINES[cfg.engine].noise:
            return
        h = cfg.height
        white = max(math.ceil(((h - 30) * x) * cfg.white_noise_density), 0)
        black = max(math.ceil(((h - 30) * x) * cfg.black_noise_density), 0)
        pts = rng.randint_pattern((0, 10), (x - 1, h - 15), white + black)
        _kernels().dots(canvas, pts[:white], 255)
        _kernels().dots(canvas, pts[white:], 0)

    def _wave(self, rng: PhpRandom, canvas: np.ndarray, owner: np.ndarray, x_end: int, fg, bg, out, n: int):
        """The sine warp into ``out`` (H, W, 3); returns each glyph's box in it."""
        cfg = self.config
        engine = ENGINES[cfg.engine]
        periods = np.array([rng.randint(750000, 1200000) / 10000000 for _ in range(4)])
        phases = np.array([rng.randint(0, 31415926) / 10000000 for _ in range(4)])
        amp_x = rng.randint(330, 420) / 110
        amp_y = rng.randint(330, 450) / engine.wave_y_divisor
        if not cfg.wave:
            # gnuboard's wave switch: no horizontal sine, a fixed 1.5 px vertical one. x + 0.0 == x
            # exactly, so a zero amplitude is the same arithmetic as PHP's shorter formula.
            amp_x, amp_y = 0.0, 1.5
        boxes = np.empty((n, 4), dtype=np.int64)
        _kernels().wave(
            canvas, owner, periods, phases, amp_x, amp_y, x_end / 2, engine.int_then_add,
            np.array(fg, dtype=np.int64), np.array(bg, dtype=np.int64), out, boxes,
        )  # fmt: skip
        return boxes

    # -- public ----------------------------------------------------------------

    def draw(self, seed: int, boxes: bool = True) -> Sample:
        """Image drawn right after ``mt_srand(seed)``, as PHP would draw it."""
        cfg = self.config
        if not 0 <= seed <= 0xFFFFFFFF:
            raise ConfigError(f"seed must be in 0..4294967295, got {seed}")
        scratch = self._scratch(seed)
        rng, canvas, owner = scratch.rng, scratch.canvas, scratch.owner
        label = ""
        if cfg.keystring == "driver":
            label = self._keystring(rng, _draw_range(rng, cfg.length))
            length = len(label)
        else:
            length = _draw_range(rng, cfg.length)
        fg = [_draw_range(rng, r) for r in cfg.foreground]
        bg = [_draw_range(rng, r) for r in cfg.background]
        fit_retry = ENGINES[cfg.engine].fit_retry
        for _ in range(_MAX_FIT_TRIES):
            if cfg.keystring == "constructor":
                label = self._keystring(rng, length)
            atlas = self.atlases[rng.randint(0, len(self.atlases) - 1)]
            x_end = self._place_text(rng, label, atlas, canvas, owner)
            if not fit_retry or x_end < cfg.width - 10:
                break
        else:
            # PHP would loop until the request times out; we say why instead.
            raise ConfigError(
                f"seed {seed}: the text never fits in width {cfg.width} after {_MAX_FIT_TRIES} layouts"
                f" (KCAPTCHA {cfg.engine} redraws until it ends before x = width - 10); widen the image"
            )
        self._noise(rng, canvas, x_end)
        width, height = cfg.image_size
        raster = np.empty((height, width, 3), dtype=np.uint8)
        glyph_boxes = self._wave(rng, canvas, owner, x_end, fg, bg, raster[: cfg.height], len(label))
        if cfg.show_credits:
            raster[cfg.height :] = np.where(self._credits[:, :, None], bg, fg)
        return Sample(
            label=label,
            seed=seed,
            raster=raster,
            boxes=[tuple(b) for b in glyph_boxes.tolist()] if boxes else [],
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


def _as_range(value) -> Range:
    """``5`` or ``[5, 5]`` -> ``(5, 5)``: JSON has no tuples, and a fixed value needs no pair."""
    if isinstance(value, int):
        return (value, value)
    low, high = value
    return (int(low), int(high))


_JSON_FIELDS = {
    "length": _as_range,
    "foreground": lambda v: tuple(_as_range(c) for c in v),
    "background": lambda v: tuple(_as_range(c) for c in v),
    "fonts": tuple,
}


def config_from_dict(values: dict, base: CaptchaConfig | None = None) -> CaptchaConfig:
    """A configuration from JSON-style values (lists for ranges), on top of ``base`` (default: gnuboard5).

    Unknown keys are refused with a suggestion rather than ignored.
    """
    import difflib

    base = base or PRESETS["gnuboard5"]
    known = set(CaptchaConfig.__dataclass_fields__)
    changes = {}
    for key, value in values.items():
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise ConfigError(f"unknown configuration field '{key}'.{hint}")
        try:
            changes[key] = _JSON_FIELDS.get(key, lambda v: v)(value)
        except (TypeError, ValueError):
            raise ConfigError(f"configuration field '{key}' has an unusable value {value!r}") from None
    return replace(base, **{"name": "custom", **changes})


# -- writing image files ---------------------------------------------------------

_CHUNK = 200  # seeds per task: large enough to hide process overhead, small for a smooth bar
_PART_PREFIX = ".kcaptcha-part-"  # files being written; removed if the run stops
_worker: tuple[Generator, bool] | None = None  # this process's generator, and whether to keep boxes


def _init_worker(config: CaptchaConfig, fonts_dir: str | None, manifest: bool) -> None:
    global _worker
    _worker = (Generator(config, fonts_dir), manifest)


def _check_prerequisites(config: CaptchaConfig, fonts_dir: str | None, manifest: bool) -> None:
    """numba and the fonts, checked before anything is written or shown: one error names all that is missing."""
    numba_missing = importlib.util.find_spec("numba") is None
    try:
        _init_worker(config, fonts_dir, manifest)  # loads the atlases: missing or corrupt ones fail here
    except FontsError as exc:
        if numba_missing:
            raise FontsError(f"{NEEDS_NUMBA}; and {exc}") from None
        raise
    if numba_missing:
        raise KcaptchaError(NEEDS_NUMBA)


def _write_chunk(task: tuple[str, int, int, int]) -> list[dict]:
    """Draw seeds ``seed + start .. seed + stop - 1`` into ``out``; returns their manifest rows."""
    out, seed, start, stop = task
    gen, manifest = _worker
    rows = []
    for i in range(start, stop):
        sample = gen.draw(seed + i, boxes=manifest)
        name = f"{sample.label}_{i:06d}.{sample.image_format}"
        tmp = os.path.join(out, f"{_PART_PREFIX}{os.getpid()}-{name}")
        try:
            with open(tmp, "wb") as f:
                f.write(sample.encode())
            os.replace(tmp, os.path.join(out, name))
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        if manifest:
            boxes = [list(b) for b in sample.boxes]
            rows.append(dict(file=name, label=sample.label, seed=sample.seed, font=sample.font, boxes=boxes))
    return rows


def generate_files(
    config: CaptchaConfig,
    out: str | os.PathLike[str],
    seed: int,
    count: int,
    workers: int = 1,
    image_format: str | None = None,
    manifest: bool = False,
    fonts_dir: str | os.PathLike[str] | None = None,
    progress: bool = False,
) -> Path:
    """Write images for seeds ``seed .. seed + count - 1`` as ``<label>_<index>.<ext>`` into ``out``.

    The files are the same whatever ``workers`` is. Each file appears under its
    final name only once complete; ``manifest.jsonl`` lists label, seed, font and
    glyph boxes per file.
    """
    if count <= 0:
        raise ConfigError(f"count must be at least 1, got {count}")
    if seed < 0 or seed + count - 1 > 0xFFFFFFFF:
        raise ConfigError(f"seeds must lie in 0..4294967295; got {seed}..{seed + count - 1}")
    if workers < 1:
        raise ConfigError(f"workers must be at least 1, got {workers}")
    if image_format is not None:
        config = replace(config, image_format=image_format)  # validated by CaptchaConfig
    fonts = None if fonts_dir is None else str(fonts_dir)
    _check_prerequisites(config, fonts, manifest)
    folder = Path(out)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise ConfigError(f"cannot write to output folder {folder}: {exc.strerror or exc}") from None
    tasks = [(str(folder), seed, i, min(i + _CHUNK, count)) for i in range(0, count, _CHUNK)]
    from tqdm import tqdm

    bar = tqdm(total=count, unit="img", file=sys.stderr, disable=not progress)
    rows: list[dict] = []
    pool = None
    try:
        if workers > 1 and len(tasks) > 1:
            import multiprocessing

            pool = multiprocessing.get_context().Pool(
                min(workers, len(tasks)), _init_worker, (config, fonts, manifest)
            )
            chunks = pool.imap(_write_chunk, tasks)
        else:
            chunks = map(_write_chunk, tasks)
        for task, chunk in zip(tasks, chunks, strict=True):
            rows.extend(chunk)
            bar.update(task[3] - task[2])
        if manifest:
            tmp = folder / f"{_PART_PREFIX}manifest.jsonl"
            tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
            os.replace(tmp, folder / "manifest.jsonl")
    except BaseException:
        if pool is not None:
            pool.terminate()  # before cleaning up, so no worker is still writing
        for stale in folder.glob(f"{_PART_PREFIX}*"):
            with contextlib.suppress(OSError):
                stale.unlink()
        raise
    finally:
        bar.close()
        if pool is not None:
            pool.terminate()
    return folder


# -- compiled kernels ----------------------------------------------------------
# Plain Python loops that mirror the PHP pixel loops, compiled by numba on first use
# (cached on disk). Numba keeps IEEE order (no fast-math), and math.sin is the libm sin
# PHP calls, so every float comes out as in PHP.


def _blend_kernel(canvas, owner, alpha, blue, placed, first):  # pragma: no cover - compiled
    """GD's imagecopy of each placed glyph ``(start, width, dx, dy)`` onto the opaque canvas, clipped.

    Glyph k is numbered ``first + k`` in ``owner`` wherever it is not fully transparent.
    """
    h, w = canvas.shape
    gh = alpha.shape[0]
    for k in range(placed.shape[0]):
        start, gw, dx, dy = placed[k, 0], placed[k, 1], placed[k, 2], placed[k, 3]
        for y in range(max(dy, 0), min(dy + gh, h)):
            for x in range(max(dx, 0), min(dx + gw, w)):
                a = np.int32(alpha[y - dy, start + x - dx])
                if a < TRANSPARENT:  # a transparent pixel blends to the canvas value itself
                    src = np.int32(blue[y - dy, start + x - dx])
                    canvas[y, x] = (src * (TRANSPARENT - a) + canvas[y, x] * a) // TRANSPARENT
                    owner[y, x] = first + k


def _pack_kernel(canvas, probe_col, probe_alpha, x, y, rows_start, rows_end, reach, threshold):  # pragma: no cover
    """How far ``no_spaces`` pushes a glyph left to touch the text so far; -1 when it touches nothing.

    For each atlas row in ``rows_start..rows_end - 1`` (2.x: 3..h-11; 1.2.x: 7..h-21),
    take the first inked column (from one left of the span: ``probe_col``/``probe_alpha``),
    walk left on the canvas less than ``reach`` px (2.x: 200, 1.2.x: 12) until canvas +
    glyph alpha < ``threshold`` (170 / 190), and keep the smallest distance. Reads off
    the canvas give 0 (GD's imagecolorat returns false there).
    """
    h, w = canvas.shape
    shift = -1
    for sy in range(rows_start, rows_end):
        col = probe_col[sy]
        if col < 0:
            continue
        left = col - 1 + x  # ($sx - start) + $x with $sx = start - 1 + col
        py = sy + y
        if py > h:  # PHP: `if ($py > $height) break;` leaves this row only
            continue
        iy = int(py)  # PHP truncates the float row, towards zero
        row_ok = 0 <= iy < h
        px = min(left, w - 1)
        while px > left - reach and px >= 0:
            color = canvas[iy, px] if row_ok else 0
            if color + probe_alpha[sy] < threshold:
                if shift < 0 or left - px < shift:
                    shift = left - px
                break
            px -= 1
    return shift


def _dots_kernel(canvas, points, value):  # pragma: no cover - compiled
    """imagesetpixel for each (x, y) point; GD ignores points off the canvas."""
    h, w = canvas.shape
    for k in range(points.shape[0]):
        x, y = points[k, 0], points[k, 1]
        if 0 <= x < w and 0 <= y < h:
            canvas[y, x] = value


def _wave_kernel(canvas, owner, periods, phases, amp_x, amp_y, center, int_then_add, fg, bg, out, boxes):
    """KCAPTCHA's wave loop (bilinear resample + recolour); fills ``out`` and the glyph ``boxes``.

    Each row first computes its source coordinates (branch-free, so the compiler
    vectorises it), then reads and blends; same expressions as PHP, same order.
    """
    h, w = canvas.shape
    sin_x1, sin_x2 = np.empty(w), np.empty(w)
    sin_y1, sin_y2 = np.empty(h), np.empty(h)
    for x in range(w):
        sin_x1[x] = math.sin(x * periods[0] + phases[0])
        sin_x2[x] = math.sin(x * periods[1] + phases[2])
    for y in range(h):
        sin_y1[y] = math.sin(y * periods[2] + phases[1])
        sin_y2[y] = math.sin(y * periods[3] + phases[3])
    boxes[:, 0] = w
    boxes[:, 1] = h
    boxes[:, 2] = 0
    boxes[:, 3] = 0
    row_sx, row_sy = np.empty(w), np.empty(w)
    for y in range(h):
        for x in range(w):
            row_sx[x] = x + (sin_x1[x] + sin_y1[y]) * amp_x - w / 2 + center + 1
            row_sy[x] = y + (sin_x2[x] + sin_y2[y]) * amp_y
        for x in range(w):
            sx, sy = row_sx[x], row_sy[x]
            out[y, x, 0], out[y, x, 1], out[y, x, 2] = bg[0], bg[1], bg[2]
            if not ((sx >= 0) & (sy >= 0) & (sx < w - 1) & (sy < h - 1)):  # one branch, not four
                continue
            ix, iy = int(sx), int(sy)
            # gnuboard's 1.2 reads (int)$sx + 1; the others pass the float $sx + 1, which PHP truncates.
            ix1, iy1 = (ix + 1, iy + 1) if int_then_add else (int(sx + 1), int(sy + 1))
            c, cx, cy, cxy = canvas[iy, ix], canvas[iy, ix1], canvas[iy1, ix], canvas[iy1, ix1]
            if (c & cx & cy & cxy) == 255:  # all four white (values are 0..255)
                continue
            g = owner[iy, ix]
            if g >= 0:
                boxes[g, 0] = min(boxes[g, 0], x)
                boxes[g, 1] = min(boxes[g, 1], y)
                boxes[g, 2] = max(boxes[g, 2], x + 1)
                boxes[g, 3] = max(boxes[g, 3], y + 1)
            if (c | cx | cy | cxy) == 0:
                out[y, x, 0], out[y, x, 1], out[y, x, 2] = fg[0], fg[1], fg[2]
                continue
            fx = sx - ix  # sx >= 0 here, so this is PHP's $sx - floor($sx)
            fy = sy - iy
            fx1 = 1 - fx
            fy1 = 1 - fy
            shade = c * fx1 * fy1 + cx * fx * fy1 + cy * fx1 * fy + cxy * fx * fy
            shade = min(shade, 255.0) / 255
            shade0 = 1 - shade
            for ch in range(3):
                out[y, x, ch] = int(shade0 * fg[ch] + shade * bg[ch])
    for g in range(boxes.shape[0]):
        if boxes[g, 2] == 0:
            boxes[g, :] = 0


NEEDS_NUMBA = "drawing captchas needs numba: pip install 'kcaptcha-solver[generate]'"


@functools.cache
def _kernels() -> SimpleNamespace:
    """The compiled kernels; numba is imported here so that importing the package stays cheap."""
    try:
        import numba
    except ImportError:
        raise KcaptchaError(NEEDS_NUMBA) from None
    jit = numba.njit(cache=True, nogil=True, error_model="numpy")
    kernels = {"blend": _blend_kernel, "pack": _pack_kernel, "dots": _dots_kernel, "wave": _wave_kernel}
    return SimpleNamespace(**{name: jit(fn) for name, fn in kernels.items()})
