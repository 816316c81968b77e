"""The general model's task (issue 13): any KCAPTCHA configuration, read at one input size.

Sample ``seed`` is a configuration drawn by :func:`~kcaptcha_solver.generator.random_config`
from ``random.Random(seed)`` and the image that configuration draws from ``mt_srand(seed)``,
decoded as a reader gets it (JPEG loss included), then stretched to ``WIDTH x HEIGHT`` by
:func:`kcaptcha_solver.inputs.fit` (nearest neighbour, aspect not kept). That is the transform
every runtime (solver.py, the page's reading.js) already applies to a picture that is not a
model's size, so the model file's ``width``/``height`` say all a reader needs: no new metadata.

Why a stretch to 192x64 (benchmarks/any_input.py, 5,000 draws): images are 100-200 x 40-112 px.
Stretched, every image keeps at least 0.96x its own width, and 0.66 % of strings have neighbours
closer than a 4-px CTC step separates. Keeping the aspect at height 64 shrinks tall images to 0.57x,
2.1 % of strings get too tight, and the input is 28 % padding at 192 wide (53 % at the 320 that the
widest aspect needs).

Families are fixed slices of the space with their own validation sets, so training reports
accuracy per kind of deployment and not only over the mixture.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np

from .errors import ConfigError
from .fonts import FONTS_1_2
from .generator import ALPHABET, PRESETS, SYMBOL_SETS, CaptchaConfig, Generator, Sample, random_config
from .inputs import fit
from .modelfile import GENERAL

NAME = GENERAL  # the TrainConfig.preset that selects this task, and the exported file's preset
MODEL_NAME = "kcaptcha-any"  # the exported model's default name
WIDTH, HEIGHT = 192, 64  # the model input; see the module docstring for why
LENGTH = (2, 7)  # what random_config draws


@dataclass(frozen=True)
class Task:
    """What a reader of one training task must handle: input size, symbols, string lengths."""

    width: int
    height: int
    classes: str
    length: tuple[int, int]


TASK = Task(WIDTH, HEIGHT, ALPHABET, LENGTH)


def _until(rng: random.Random, keep: Callable[[CaptchaConfig], bool]) -> CaptchaConfig:
    """A random_config draw that ``keep`` accepts (rejection sampling keeps every draw valid)."""
    while not keep(config := random_config(rng)):
        pass
    return config


# name -> configuration for one sample's rng. "any" is the training distribution itself.
FAMILIES: dict[str, Callable[[random.Random], CaptchaConfig]] = {
    NAME: random_config,
    # gnuboard5 with the commented-out hex line of kcaptcha_config.php switched on
    "hex-160x60": lambda rng: replace(PRESETS["gnuboard5"], name="hex-160x60", allowed_symbols=SYMBOL_SETS["hex"]),
    # gnuboard5 before 5.1 (until late 2015): KCAPTCHA 1.2.6 as distributed, 120x60, no noise, the 22 old atlases
    "gnuboard5-pre-5.1": lambda rng: CaptchaConfig(
        name="gnuboard5-pre-5.1", width=120, white_noise_density=0.0, black_noise_density=0.0,
        engine="1.2-original", fonts=FONTS_1_2),
    # KCAPTCHA 2.x copies with all 36 symbols, every other setting as random_config draws it
    "2.x-alnum": lambda rng: _until(rng, lambda c: c.engine == "2.x" and c.allowed_symbols == ALPHABET),
    **{name: (lambda rng, c=config: c) for name, config in PRESETS.items()},
}


@lru_cache(maxsize=8)
def _generator(config: CaptchaConfig, fonts_dir: str | None) -> Generator:
    """Fixed families reuse one Generator; random draws differ every time (the atlases are cached)."""
    return Generator(config, fonts_dir=fonts_dir)


def sample(seed: int, fonts_dir: str | None = None, family: str = NAME) -> Sample:
    """Sample ``seed`` of ``family`` as PHP draws it (its own size; ``encode()`` gives the file)."""
    return configured(seed, fonts_dir, family)[1]


def configured(seed: int, fonts_dir: str | None = None, family: str = NAME) -> tuple[CaptchaConfig, Sample]:
    """Sample ``seed`` of ``family`` and the configuration that drew it (what benchmarks/any_settings.py
    groups accuracy by).

    random_config's width rule bounds a redrawn keystring by a mean glyph width, so a subset of wide
    letters can make a configuration whose text never fits (seed 31,886,566: ``0dhmy``, 7 symbols,
    149 px, no spaces). PHP would redraw until the request timed out: no site runs such a configuration,
    so the seed's next configuration is taken instead (same rng), and every seed stays reproducible.
    """
    rng = random.Random(seed)
    while True:
        config = FAMILIES[family](rng)
        try:
            return config, _generator(config, fonts_dir).draw(seed, boxes=False)
        except ConfigError:
            if family != NAME:  # a fixed family that never fits is a bug, not a rare draw
                raise


def draw(seed: int, fonts_dir: str | None = None, family: str = NAME) -> tuple[np.ndarray, str]:
    """Sample ``seed`` of ``family`` as the model reads it: (``uint8 [HEIGHT, WIDTH, 3]``, label)."""
    drawn = sample(seed, fonts_dir, family)
    return fit(drawn.pixels(), WIDTH, HEIGHT), drawn.label
