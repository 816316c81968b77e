"""The errors this package raises. The CLI turns each into one line and a non-zero exit."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class KcaptchaError(Exception):
    """Base class: every error the library raises on purpose."""

    exit_code = 1


class ConfigError(KcaptchaError, ValueError):
    """A preset name, configuration value or argument is not valid."""

    exit_code = 2


class FontsError(KcaptchaError):
    """Font atlases are missing, corrupt, or could not be fetched or built."""


class InputError(KcaptchaError, ValueError):
    """Something given to solve cannot be read: the base of every per-input error.

    A service answers it with 400 and a batch names the input; the subclass says what kind of
    input it was.
    """


class ImageError(InputError):
    """An input is not a readable image (corrupt, empty, wrong kind, too large)."""


class NoCaptchaError(ImageError):
    """A readable picture with no captcha in it: nothing of a model's shape was found, or a picture read whole
    has no ink, so nothing is read (an answer invented from a photo or a blank page would pass for a reading)."""


class UsageError(KcaptchaError, TypeError):
    """An API was called with the wrong kind of argument: a mistake in the calling code, not bad input."""

    exit_code = 2


class ModelError(KcaptchaError):
    """A model file or checkpoint is missing, unknown, or not one of ours."""


class DatasetError(KcaptchaError):
    """A folder of labelled images cannot be used (empty, no labels, wrong sizes)."""


class AudioError(InputError):
    """A spoken captcha (mp3) is not an exact concatenation of one known voice set's clips.

    ``offset`` is the byte where matching stopped, ``digits`` what was read before it and ``voice``
    the set that got that far (None when no set matched even the first clip).
    """

    def __init__(self, message: str, *, offset: int | None = None, digits: str = "", voice: str | None = None):
        super().__init__(message)
        self.offset = offset
        self.digits = digits
        self.voice = voice


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` when ``name`` is close to one of ``known``, else ``""``: for messages."""
    close = difflib.get_close_matches(name, list(known), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""
