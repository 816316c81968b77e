"""KCAPTCHA font atlases: finding, loading and checking them.

An atlas is a PNG strip of glyphs. In row 0, non-transparent pixels mark each
glyph's column span, in alphabet order; rows 1.. hold the glyphs. The three
original atlases are third-party files: they never ship with this package and
reach users through ``kcaptcha fonts download``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from .errors import FontsError

DEFAULT_FONTS = ("palatino_linotype_bold.png", "perpetua_bold.png", "times_bold.png")
FONTS_ENV = "KCAPTCHA_FONTS"
TRANSPARENT = 127  # GD's 7-bit alpha: 0 opaque, 127 fully transparent


def user_fonts_dir() -> Path:
    """Where ``kcaptcha fonts download`` puts the atlases (XDG data dir)."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "kcaptcha-solver" / "fonts"


def resolve_fonts_dir(fonts_dir: str | os.PathLike[str] | None = None) -> Path:
    """The folder to read atlases from: argument, then ``$KCAPTCHA_FONTS``, then the user folder."""
    if fonts_dir is not None:
        return Path(fonts_dir)
    env = os.environ.get(FONTS_ENV)
    return Path(env) if env else user_fonts_dir()


@dataclass(frozen=True)
class Glyph:
    """One glyph as GD sees it after loading the PNG.

    ``blue`` and ``alpha`` are the glyph's rows 1.. (what ``imagecopy`` copies);
    ``probe_col``/``probe_alpha`` give, for each glyph row, the first column
    scanned from one left of the span that is not fully transparent (or -1),
    which is what the ``no_spaces`` packing looks at.
    """

    start: int
    end: int
    blue: np.ndarray  # (h, w) uint8
    alpha: np.ndarray  # (h, w) int16, 0..127
    probe_col: np.ndarray  # (h + 1,) column offset from start - 1, or -1
    probe_alpha: np.ndarray  # (h + 1,)

    @property
    def width(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class Atlas:
    """A loaded font atlas: glyphs by character, and the glyph height."""

    name: str
    height: int  # image height - 1: rows 1.. are glyph rows
    glyphs: dict[str, Glyph] = field(repr=False)


def _gd_alpha(rgba: np.ndarray) -> np.ndarray:
    """GD's 7-bit alpha for an 8-bit PNG alpha channel (127 = transparent)."""
    return (TRANSPARENT - (rgba[..., 3].astype(np.int16) >> 1)).astype(np.int16)


def load_atlas(path: str | os.PathLike[str], alphabet: str) -> Atlas:
    """Read an atlas PNG and cut it into glyphs for ``alphabet``."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            rgba = np.asarray(im.convert("RGBA"))
    except FileNotFoundError:
        raise FontsError(f"font atlas not found: {path}") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise FontsError(f"font atlas {path} is not a readable PNG ({exc})") from None
    alpha = _gd_alpha(rgba)
    height = rgba.shape[0] - 1
    marks = alpha[0] != TRANSPARENT
    # Spans are runs of marked columns in row 0; the last may run to the edge
    # without an end, which PHP never closes, so it is dropped like PHP does.
    edges = np.flatnonzero(np.diff(np.concatenate([[False], marks, [False]]).astype(np.int8)))
    starts, ends = edges[0::2], edges[1::2]
    closed = ends < rgba.shape[1]
    starts, ends = starts[closed], ends[closed]
    if len(starts) < len(alphabet) or height < 20:
        raise FontsError(
            f"{path} is not a KCAPTCHA font atlas: it marks {len(starts)} glyphs in row 0,"
            f" the alphabet needs {len(alphabet)}"
        )
    blue = rgba[..., 2]
    glyphs = {}
    for ch, start, end in zip(alphabet, starts.tolist(), ends.tolist()):
        # The probe starts one column left of the span; a column outside the
        # image reads as opaque in PHP (imagecolorat returns false, i.e. 0).
        lo = start - 1
        window = alpha[:, max(lo, 0) : end]
        if lo < 0:
            window = np.concatenate([np.zeros((alpha.shape[0], 1), np.int16), window], axis=1)
        opaque = window < TRANSPARENT
        has = opaque.any(axis=1)
        col = np.where(has, opaque.argmax(axis=1), -1)
        probe_alpha = np.where(has, window[np.arange(len(window)), np.maximum(col, 0)], TRANSPARENT)
        glyphs[ch] = Glyph(
            start=start,
            end=end,
            blue=np.ascontiguousarray(blue[1:, start:end]),
            alpha=np.ascontiguousarray(alpha[1:, start:end]),
            probe_col=col,
            probe_alpha=probe_alpha.astype(np.int16),
        )
    return Atlas(name=path.name, height=height, glyphs=glyphs)


def load_fonts(
    names: tuple[str, ...], alphabet: str, fonts_dir: str | os.PathLike[str] | None = None
) -> list[Atlas]:
    """Load the atlases ``names`` (in this order) from the resolved fonts folder."""
    folder = resolve_fonts_dir(fonts_dir)
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise FontsError(
            f"KCAPTCHA fonts not found in {folder} (missing {', '.join(missing)}). "
            f"Run 'kcaptcha fonts download', or point --fonts / ${FONTS_ENV} at a folder that holds them."
        )
    return [load_atlas(folder / n, alphabet) for n in names]
