"""KCAPTCHA font atlases: finding, loading and checking them.

An atlas is a PNG strip of glyphs. In row 0, non-transparent pixels mark each
glyph's column span, in alphabet order; rows 1.. hold the glyphs. The three
original atlases are third-party files: they never ship with this package and
reach users through ``kcaptcha fonts download``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from .errors import FontsError

DEFAULT_FONTS = ("palatino_linotype_bold.png", "perpetua_bold.png", "times_bold.png")
FONTS_ENV = "KCAPTCHA_FONTS"
FONTS_URL_ENV = "KCAPTCHA_FONTS_URL"
# gnuboard5 5.6.34: pinned, so the bytes (and the sha256 below) never move under us.
FONTS_URL = (
    "https://raw.githubusercontent.com/gnuboard/gnuboard5/"
    "0b6f081f765ac1af204d53c6a2b17a1b25a71502/plugin/kcaptcha/fonts"
)
FONT_SHA256 = {
    "palatino_linotype_bold.png": "38b6a1d4a4bd1d0c056205119c5e24176913ac0d898371f53a0339952a319365",
    "perpetua_bold.png": "55dbbe97dae128dea47b5e8d640414b3d813119c854c688037a20a581ec8fdc4",
    "times_bold.png": "d3d32ce1f418e3c3c3b1afe3b6acabadb36207bc12368f5e86420cf1a529ff8f",
}
_MAX_DOWNLOAD = 4 << 20  # an atlas is ~15 KB; anything far larger is not one
NOTICE = """KCAPTCHA, Copyright by Kruglov Sergei, www.captcha.ru

These three font atlases are part of KCAPTCHA, fetched unchanged from gnuboard5
(plugin/kcaptcha/fonts at commit 0b6f081f765ac1af204d53c6a2b17a1b25a71502) by
kcaptcha-solver, which does not ship them. KCAPTCHA is free software; when it is
used as part of other software its copyright notices must be kept intact, so this
notice travels with the atlases and should be kept next to them.
"""
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
    """A loaded font atlas: glyphs by character, the glyph height, and the glyph rows whole.

    ``blue``/``alpha`` hold rows 1.. of the image, so that several glyphs can be
    drawn in one compiled call from their spans; each glyph's arrays are views of them.
    """

    name: str
    height: int  # image height - 1: rows 1.. are glyph rows
    glyphs: dict[str, Glyph] = field(repr=False)
    blue: np.ndarray = field(repr=False)  # (height, W) uint8
    alpha: np.ndarray = field(repr=False)  # (height, W) int16, 0..127


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
    blue = np.ascontiguousarray(rgba[1:, :, 2])
    rows = np.ascontiguousarray(alpha[1:])
    glyphs = {}
    for ch, start, end in zip(alphabet, starts.tolist(), ends.tolist(), strict=False):
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
            blue=blue[:, start:end],
            alpha=rows[:, start:end],
            probe_col=col,
            probe_alpha=probe_alpha.astype(np.int16),
        )
    return Atlas(name=path.name, height=height, glyphs=glyphs, blue=blue, alpha=rows)


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


# -- download ------------------------------------------------------------------


def _fetch(url: str, timeout: float) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            data = response.read(_MAX_DOWNLOAD + 1)
    except urllib.error.HTTPError as exc:
        raise FontsError(f"could not download {url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise FontsError(f"could not download {url}: {reason}") from None
    if len(data) > _MAX_DOWNLOAD:
        raise FontsError(f"{url} is larger than {_MAX_DOWNLOAD} bytes; not a font atlas")
    return data


def _write_atomic(path: Path, data: bytes) -> None:
    """Write through a temp file in the same folder, so a reader never sees half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def download_fonts(
    dest: str | os.PathLike[str] | None = None, base_url: str | None = None, timeout: float = 60.0
) -> Path:
    """Fetch the three atlases (pinned commit, sha256-checked) into ``dest``; returns the folder.

    Every file is fetched and checked before anything is written, so a failure
    leaves the folder as it was (and removes it if this call created it).
    """
    folder = Path(dest) if dest is not None else user_fonts_dir()
    base = (base_url or os.environ.get(FONTS_URL_ENV) or FONTS_URL).rstrip("/")
    blobs = {}
    for name, want in FONT_SHA256.items():
        url = f"{base}/{name}"
        data = _fetch(url, timeout)
        got = hashlib.sha256(data).hexdigest()
        if got != want:
            raise FontsError(f"{url} has sha256 {got}, expected {want}; refusing it")
        blobs[name] = data
    created = not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in blobs.items():
            _write_atomic(folder / name, data)
        _write_atomic(folder / "NOTICE.txt", NOTICE.encode())
    except OSError as exc:
        if created:
            for name in (*blobs, "NOTICE.txt"):
                with contextlib.suppress(OSError):
                    (folder / name).unlink()
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise FontsError(f"could not write the fonts to {folder}: {exc.strerror or exc}") from None
    return folder


def fonts_present(fonts_dir: str | os.PathLike[str] | None = None) -> dict[str, bool]:
    """Which default atlases the resolved folder holds."""
    folder = resolve_fonts_dir(fonts_dir)
    return {name: (folder / name).is_file() for name in DEFAULT_FONTS}


# -- build from a TrueType font ----------------------------------------------

ATLAS_HEIGHT = 70  # row 0 marks + 69 glyph rows, as in the originals
_BASELINE = 47  # glyph row of the originals' baseline: digits sit on rows ~12..47
_DIGIT_HEIGHT = 35  # the originals' digit height in px, used to pick a default size
_GAP = 8  # transparent columns between spans (the originals leave 9 to 11)


def build_atlas(
    font_path: str | os.PathLike[str], out: str | os.PathLike[str], alphabet: str, size: int | None = None
) -> Path:
    """Draw an atlas in the KCAPTCHA format from a TrueType/OpenType font; returns ``out``.

    Glyphs are black with the anti-aliasing as alpha, on the originals' baseline;
    without ``size`` the font is scaled so a digit is as tall as in the originals.
    """
    from PIL import ImageDraw, ImageFont

    try:
        if size is None:
            probe = ImageFont.truetype(str(font_path), 100)
            top, bottom = probe.getbbox("0", anchor="ls")[1::2]
            size = max(8, round(100 * _DIGIT_HEIGHT / max(bottom - top, 1)))
        font = ImageFont.truetype(str(font_path), size)
    except OSError as exc:
        raise FontsError(f"{font_path} is not a usable TrueType/OpenType font ({exc})") from None
    glyphs = []
    for ch in alphabet:
        canvas = Image.new("L", (3 * size, ATLAS_HEIGHT - 1), 0)
        ImageDraw.Draw(canvas).text((size, _BASELINE), ch, fill=255, font=font, anchor="ls")
        cover = np.asarray(canvas)
        cols = np.flatnonzero(cover.max(axis=0))
        if len(cols) == 0:
            raise FontsError(f"{font_path} draws nothing for {ch!r}")
        glyphs.append(cover[:, cols[0] : cols[-1] + 1])
    width = _GAP + sum(g.shape[1] + _GAP for g in glyphs)
    rgba = np.zeros((ATLAS_HEIGHT, width, 4), dtype=np.uint8)
    x = _GAP
    for g in glyphs:
        rgba[0, x : x + g.shape[1], 3] = 255
        rgba[1:, x : x + g.shape[1], 3] = g
        x += g.shape[1] + _GAP
    out = Path(out)
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, format="PNG")
    try:
        _write_atomic(out, buf.getvalue())
    except OSError as exc:
        raise FontsError(f"could not write {out}: {exc.strerror or exc}") from None
    return out
