"""Turning what a caller hands over into pixels: the "decode" stage of solving (see solver.py).

Accepts encoded bytes, a path, a binary file object, a PIL image or a numpy array, and returns ``uint8 [H, W, 3]``
RGB, or raises :class:`~kcaptcha_solver.errors.ImageError` (an
:class:`~kcaptcha_solver.errors.InputError`) for anything that is not a usable image. Also
:func:`fit`, the resampling to a model's input size that the page does the same way.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import ImageError

# Refuse images whose header declares more pixels than this, before decoding them. The largest picture
# a captcha comes in is a whole 4K screenshot, 3840x2160 = 8,294,400 px; 8.5 MP leaves a little room (a
# window with its title bar) and keeps one decode under ~26 MB of RGB.
MAX_PIXELS = 8_500_000
# What captchas are served as. Fewer decoders also means less parser surface for a public service.
FORMATS = ("JPEG", "PNG", "GIF", "BMP", "WEBP")
SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N", "I")  # Pillow's modes for 16-bit grayscale PNGs

Encoded = bytes | bytearray | memoryview | str | os.PathLike | BinaryIO  # what read_bytes takes
ImageInput = Encoded | Image.Image | np.ndarray
Box = tuple[int, int, int, int]  # x, y, width, height in input pixels
# A picture read whole holds a captcha only if it has ink: on every other row and column, at least INK_SHARE of
# the pixels are more than INK_LEVELS (R + G + B) from the median. Of the real sample, seed-l2's least inked image
# has 4.3 %; of 2,000 generated captchas of the general model's space, a two-letter one in a wide image 1.1 %.
INK_LEVELS = 96
INK_SHARE = 0.0025


def to_rgb_array(image: ImageInput, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Any accepted input -> uint8 [H, W, 3]; ImageError for anything that is not a usable image."""
    if isinstance(image, np.ndarray):
        return _array_rgb(image, max_pixels)
    if isinstance(image, Image.Image):
        _check_size(image.size, max_pixels)
        try:
            return rgb(image)
        except (ValueError, OSError) as exc:  # an unsupported mode, or a lazy image whose file is bad
            raise ImageError(f"cannot convert this {image.mode} image to RGB: {exc}") from exc
    return decode_bytes(read_bytes(image), max_pixels)


def read_bytes(source: Encoded) -> bytes:
    """The bytes of an encoded input, of the file it names or of a binary file object (read from where it
    stands; it stays open: the caller's); ImageError when there are none."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    elif isinstance(source, (str, os.PathLike)):
        try:
            data = Path(source).read_bytes()
        except OSError as exc:
            raise ImageError(f"cannot read {source}: {exc.strerror or exc}") from exc
    elif callable(getattr(source, "read", None)):
        try:
            data = source.read()
        except OSError as exc:  # also io.UnsupportedOperation: a file opened for writing only
            raise ImageError(f"cannot read {getattr(source, 'name', 'the file object')}: {exc}") from exc
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise ImageError(f"the file object gave {type(data).__name__}, not bytes: open the file with 'rb'")
        data = bytes(data)
    else:
        raise ImageError(f"cannot read a {type(source).__name__}: pass bytes, a path, a binary file object, "
                         "a PIL image or an array")
    if not data:
        raise ImageError("empty input")
    return data


def decode_bytes(data: bytes, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode encoded image bytes, refusing huge declared dimensions before any pixel is decoded."""
    try:
        with Image.open(io.BytesIO(data), formats=FORMATS) as im:
            _check_size(im.size, max_pixels)  # the header alone: a decompression bomb is never expanded
            return rgb(im)
    except ImageError:
        raise
    except UnidentifiedImageError as exc:
        raise ImageError(f"not an image (accepted formats: {', '.join(FORMATS)})") from exc
    except Image.DecompressionBombError as exc:  # Pillow's own header check, for gigapixel declarations
        raise ImageError(f"image declares more than the {max_pixels:,} pixels accepted ({exc})") from exc
    except Exception as exc:  # Pillow's decoders raise many types (OSError, SyntaxError, ...) on bad input
        raise ImageError(f"not a readable image ({type(exc).__name__}: {exc})") from exc


def rgb(im: Image.Image) -> np.ndarray:
    """uint8 [H, W, 3] of a decoded image; 16-bit grayscale is scaled down, not clipped.

    Pillow's own conversion of 16-bit gray to RGB clips every value above 255 to white, which
    erased 99 % of a real captcha's pixels; dividing by 257 maps 0-65535 onto 0-255 exactly.
    """
    if im.mode in SIXTEEN_BIT:
        gray = np.rint(np.asarray(im, dtype=np.float64) / 257).clip(0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    # An RGB image as it is: convert("RGB") would copy it first (a 1920x1080 PNG: 31.5 -> 18.5 ms)
    return np.asarray(im if im.mode == "RGB" else im.convert("RGB"))


def fit(pixels: np.ndarray, width: int, height: int, shift: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """``width x height`` pixels: the picture itself at that size, else resized by nearest neighbour.

    Nearest, because the models read crisp pixels: on 100 real gnuboard5 images enlarged
    1.25-2x (nearest, bilinear or Lanczos), it read 93-100 % back, Lanczos 91-100 %, bilinear
    only 43-92 %. The page resamples the same way (no image smoothing).

    ``shift`` (x, y, in source pixels) moves the sampling grid: another phase of the same resampling, which
    solver.py reads as well for a captcha shown at another size than its own (locate.PHASES).
    """
    if shift == (0.0, 0.0):
        same = pixels.shape[:2] == (height, width)
        return pixels if same else np.asarray(Image.fromarray(pixels).resize((width, height), Image.NEAREST))
    rows = nearest(pixels.shape[0], height, shift[1])
    return np.ascontiguousarray(pixels[rows][:, nearest(pixels.shape[1], width, shift[0])])


def inked(rgb: np.ndarray) -> bool:
    """Whether a picture has the ink of a captcha (INK_SHARE): a blank or one-colour picture read whole would
    get an invented answer (gnuboard5 read a white 160x60 one as 111111). The page's reading.js ``inked`` counts
    the same pixels (every other row and column, from the first) against the same median (the upper one)."""
    v = rgb[::2, ::2]
    levels = (v[..., 0].astype(np.int16) + v[..., 1] + v[..., 2]).ravel()  # 14 us for 160x60; .sum(axis=2): 80
    median = int(np.partition(levels, levels.size // 2)[levels.size // 2])
    return int(np.count_nonzero(np.abs(levels - median) > INK_LEVELS)) >= INK_SHARE * levels.size


def nearest(size: int, to: int, shift: float = 0.0) -> np.ndarray:
    """The source index of each of ``to`` pixels resampled from ``size``: the floor of a running sum that starts
    at half the scale (plus ``shift``) and adds the scale once per pixel, kept inside the source. Unshifted, this
    is Pillow's NEAREST (tests/test_reading.py); the page's reading.js sums the same float64 values in the same
    order."""
    scale = size / to
    at = np.cumsum(np.concatenate([[scale * 0.5 + shift], np.full(to - 1, scale)]))
    return np.clip(np.floor(at).astype(np.intp), 0, size - 1)


def _check_size(size: tuple[int, int], max_pixels: int) -> None:
    w, h = size
    if w < 1 or h < 1:
        raise ImageError(f"image has no pixels ({w}x{h})")
    if w * h > max_pixels:
        raise ImageError(f"image is {w}x{h}: more than the {max_pixels:,} pixels accepted")


def _array_rgb(arr: np.ndarray, max_pixels: int) -> np.ndarray:
    if arr.dtype != np.uint8:
        raise ImageError(f"array must be uint8, got {arr.dtype}")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    elif arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[:, :, :3]
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ImageError(f"array must be HxWx3 RGB or HxW gray, got shape {arr.shape}")
    _check_size((arr.shape[1], arr.shape[0]), max_pixels)
    return np.ascontiguousarray(arr)
