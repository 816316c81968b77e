"""kcaptcha-solver: generate, learn and read KCAPTCHA, the Gnuboard 5 captcha."""

from .errors import (
    AudioError,
    ConfigError,
    DatasetError,
    FontsError,
    ImageError,
    InputError,
    KcaptchaError,
    ModelError,
    NoCaptchaError,
    UsageError,
)
from .generator import PRESETS, CaptchaConfig, Generator, Sample
from .solver import ModelInfo, Result, Solver, shipped_models

__all__ = [
    "PRESETS",
    "AudioError",
    "CaptchaConfig",
    "ConfigError",
    "DatasetError",
    "FontsError",
    "Generator",
    "ImageError",
    "InputError",
    "KcaptchaError",
    "ModelError",
    "ModelInfo",
    "NoCaptchaError",
    "Result",
    "Sample",
    "Solver",
    "UsageError",
    "shipped_models",
]
__version__ = "0.1.0"
