"""kcaptcha-solver: generate, learn and read KCAPTCHA, the Gnuboard 5 captcha."""

from .errors import ConfigError, DatasetError, FontsError, ImageError, KcaptchaError, ModelError
from .generator import PRESETS, CaptchaConfig, Generator, Sample

__all__ = [
    "PRESETS",
    "CaptchaConfig",
    "ConfigError",
    "DatasetError",
    "FontsError",
    "Generator",
    "ImageError",
    "KcaptchaError",
    "ModelError",
    "Sample",
]
__version__ = "0.1.0"
