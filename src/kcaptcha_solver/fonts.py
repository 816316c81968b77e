"""KCAPTCHA font atlases: finding, loading and checking them.

An atlas is a PNG strip of glyphs. In row 0, non-transparent pixels mark each
glyph's column span, in alphabet order; rows 1.. hold the glyphs. The
original atlases (KCAPTCHA 2.x's three, 70 px high, and KCAPTCHA 1.2.x's 22, 50 px
high) are third-party files: they never ship with this package and reach users
through ``kcaptcha fonts download``, all into one folder (no two share a name).
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
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from .errors import FontsError

DEFAULT_FONTS = ("palatino_linotype_bold.png", "perpetua_bold.png", "times_bold.png")
FONTS_ENV = "KCAPTCHA_FONTS"
FONTS_URL_ENV = "KCAPTCHA_FONTS_URL"
_RAW = "https://raw.githubusercontent.com/gnuboard/gnuboard5"


@dataclass(frozen=True)
class FontSet:
    """Atlases fetched together from one pinned folder, each checked against its sha256."""

    name: str
    url: str  # a commit-pinned folder, so the bytes never move under us
    sha256: dict[str, str]


FONT_SETS = (
    # KCAPTCHA 2.x's three bold atlases, as gnuboard5 5.6.34 ships them.
    FontSet(
        "2.x",
        f"{_RAW}/0b6f081f765ac1af204d53c6a2b17a1b25a71502/plugin/kcaptcha/fonts",
        {
            "palatino_linotype_bold.png": "38b6a1d4a4bd1d0c056205119c5e24176913ac0d898371f53a0339952a319365",
            "perpetua_bold.png": "55dbbe97dae128dea47b5e8d640414b3d813119c854c688037a20a581ec8fdc4",
            "times_bold.png": "d3d32ce1f418e3c3c3b1afe3b6acabadb36207bc12368f5e86420cf1a529ff8f",
        },
    ),
    # KCAPTCHA 1.2.x's 22 atlases (50 px high), which gnuboard5 drew with until 2015-12-07:
    # gnuboard5 5.1.6, the last commit before they were replaced.
    FontSet(
        "1.2",
        f"{_RAW}/34c633ebb9848cb6a8afc9964b34703a2f59b2d6/plugin/kcaptcha/fonts",
        {
            "antiqua.png": "02be5168313484b532d0ff2ecd33e874331181536350823f691d6e17873b14ee",
            "baskerville.png": "768dc2cfce02959ed2e37f1e2d5587eb5436551e5d836abb8818e4783d243684",
            "batang.png": "bc8e9d92dfa9f584d37de69ff8fd538f5acbdc0e3dd0c88771aa5474a611f872",
            "bookman.png": "a4503b57133a9259bc2eddcabda280249c7732574a47a085a1f7e46f2b47dfb6",
            "calisto.png": "f6398cf07de8c406af10abdc12ef9ef8265977d82bcac97ce619cb8dde8cebc8",
            "cambria.png": "363184ba7dc9693b1e91c68cb5271682c130aab698a3292e3a1ea4fe368de855",
            "centaur.png": "4ce438d513224e212625c5b08027f7cb8234a06ac69164733f0a48c6e455df2a",
            "century.png": "2a75d6e5badec81289a4698bd76e771d9c59a5ac83745d258f12878598132e53",
            "chaparral.png": "68e7da599aec5a079193e15223fa3c66844c76ab6bd13409313d072365132d77",
            "constantia.png": "8a025e03e1c9918c6e317cd2e9f1bdc1f6e73f15d315b3fb090cbac1fcfd6d8b",
            "footlight.png": "3f785cdde1c80da75221c6efbd1b1bfa3417e420af2d4464bae92a51688d1aba",
            "garamond.png": "0dc76492b713940cdc1df2ae422fabface3bad02082c57f3b3bb03f875fd2d3d",
            "georgia.png": "30a32a964fb236a1bd1f77cbdb4d9b458137e3c7f8bd6aa29f13dfd5e15a5c34",
            "goudy_old.png": "97a48b9bc9c5af0bf02cf3cfac8b32e18388ca77e91e5e03e179c7a5a778c19b",
            "kozuka.png": "4b987250df557bc91e9ca44b6463abafca91a205a1161bfb141cd6a2399819f6",
            "lucida.png": "8cce92b3a06e4485323bcdbc5cc0570ceae4863954549a739a1803a48d3f5da5",
            "minion.png": "4a426d5382a465e869d1dc093ccc89a6e5dec42976f350bd76992e569dbd0ebc",
            "palatino.png": "e794d270562cd41ee102279aa3c14d4c5af53b6c11c35eac7765b4d500e9b877",
            "perpetua.png": "587809ac71ba6cb8130c8f9d795660786113f57ba84e94db852e060a525506cd",
            "rockwell.png": "da87ccedc866c73638cebe114d0ccc88d72868543d98a63ae709b698a55af4a9",
            "times.png": "742e24d37d5712f397605322e1eeaf48dcf2aa72884a75715638d1d0228d3b0c",
            "warnock.png": "ba72414ed40063778583179a5c167ea82a8533c0c73f663b6398ec0fb7845ce1",
        },
    ),
)
FONTS_1_2 = tuple(FONT_SETS[1].sha256)  # sorted, as PHP lists them after a sorted directory scan
FONT_SHA256 = {name: digest for s in FONT_SETS for name, digest in s.sha256.items()}
_MAX_DOWNLOAD = 4 << 20  # an atlas is ~15 KB; anything far larger is not one
NOTICE = """KCAPTCHA, Copyright by Kruglov Sergei, www.captcha.ru

These font atlases are part of KCAPTCHA, fetched unchanged from gnuboard5 by
kcaptcha-solver, which does not ship them: the three bold ones from
plugin/kcaptcha/fonts at commit 0b6f081f765ac1af204d53c6a2b17a1b25a71502, the 22
older KCAPTCHA 1.2.x ones (antiqua ... warnock) from the same folder at commit
34c633ebb9848cb6a8afc9964b34703a2f59b2d6. KCAPTCHA is free software; when it is
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
    return [_cached_atlas(folder / n, alphabet, (folder / n).stat().st_mtime_ns) for n in names]


@lru_cache(maxsize=64)
def _cached_atlas(path: Path, alphabet: str, mtime_ns: int) -> Atlas:
    """load_atlas, once per file version: the general model's trainer builds a Generator per image
    (a fresh configuration each), and loading the 22 older atlases took 66 ms, 100x a draw."""
    return load_atlas(path, alphabet)


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
    """Fetch every atlas of :data:`FONT_SETS` (pinned, sha256-checked) into ``dest``; returns the folder.

    ``base_url`` (or ``$KCAPTCHA_FONTS_URL``) replaces every set's pinned folder, so a
    mirror serves all the files from one folder. Every file is fetched and checked
    before anything is written, so a failure leaves the folder as it was (and removes
    it if this call created it).
    """
    folder = Path(dest) if dest is not None else user_fonts_dir()
    mirror = base_url or os.environ.get(FONTS_URL_ENV)
    blobs = {}
    for font_set in FONT_SETS:
        base = (mirror or font_set.url).rstrip("/")
        for name, want in font_set.sha256.items():
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
    """Which of the atlases ``kcaptcha fonts download`` fetches the resolved folder holds."""
    folder = resolve_fonts_dir(fonts_dir)
    return {name: (folder / name).is_file() for name in FONT_SHA256}


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
