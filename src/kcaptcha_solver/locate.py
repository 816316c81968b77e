"""Find captchas in a picture (a screenshot, a loose crop, the bare image) and cut them out at a model's size.

numpy and Pillow only, so the solver (and through it the service) can use it; ``web/locate.js`` is its
port for the page, with the same constants.

How: a captcha on a page is a rectangle with the shape of a model's input (160x60, 160x92, ...) whose
sides are straight lines where its background meets a border or the page: Gnuboard draws a 1-px
border round it (``#898989`` on the desktop skin, ``#e9e9e9`` on the PC layout for phones). So we

1. mark, on the green channel, the pixels that differ from the one above by at least ``EDGE`` levels,
   and keep the long horizontal runs that are edge almost all along and have a flat colour (a border,
   the page) on one side: text, photos and noise give none;
2. pair a run with a lower one that ends with it on at least one side (the other end may run on into
   a neighbour, such as the answer box 3 px away) and is far enough below for some model's shape;
3. take the innermost lines near the top and the bottom (inside a 1-4 px border), the width the
   height asks for, and the vertical lines at the shared end and at that distance from it. Each of
   these lines changes the same way (brighter or darker) along most of it, as a border's edge does; ink
   and JPEG noise change both ways. (In a JPEG, the noisy strokes of KCAPTCHA's letters otherwise pass
   for a side, closing a frame of the top border and the edge of the dark credits band of its 160x92
   image.) A line that changes by more than FLAT_TOL levels comes before a weaker one inside it: that
   is the ripple JPEG leaves beside a strong edge, such as the credits band's against the border. A side
   also changes near both corners, and the top and bottom lines stop at it (a letter's edge stops short
   of the corners, and the lines go on past it); of the sides that fit, the pair nearest the width asked
   for that passes is taken (a blended border gives two or three lines each side, and the innermost can
   hold ink);
4. keep the box when a flat colour lies just outside each side and the inside looks like a captcha
   (a plain light background with some dark ink).

Lower frames are tried first, so a captcha inside a taller captcha-shaped frame is the captcha; between
shapes of one height, the widest first (a digit's long stroke can pass for a narrower shape's side),
and a wider shape found on the rows of a narrower one takes its place (a pair of lines one row inside
a blended border can be broken short enough to fit only the narrower shape, which a stroke then closes).
The picture's own edges count as lines, so a crop of the image alone (with or without border) is
found the same way; but a frame that touches them is kept only when no frame inside the picture is
found: a loose crop cuts through the neighbour above (an input box with its text, a frame of the
captcha's shape), and rules drawn across a screen meet its edge. A picture already at a model's size
is returned whole, with no search.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache, partial
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from PIL import Image

from .inputs import fit

EDGE = 6  # grey levels between neighbours that make an edge pixel (#e9e9e9 on white: 22, 1.25 px blended in JPEG: ~10)
DENSITY = 0.85  # share of a line's pixels that are edge pixels
GAP = 2  # px of no edge tolerated inside a run (JPEG specks); Gnuboard puts the answer box 3 CSS px away
ASPECT_TOL = 0.07  # relative height/width mismatch accepted; Gnuboard's PC-for-phones shows 160x60 as 158x58
SCALE_MIN, SCALE_MAX = 0.55, 3.4  # displayed width / model width: 0.63 (desktop, DPR 1) to 3x, with room
# Gnuboard shows every captcha 38 CSS px high inside its border, whatever its size: a 160x92 image is
# 66x38 at DPR 1 (0.41 of its size), so the smallest width searched for also follows from this height.
MIN_HEIGHT = 36
# Share of a side's pixels that must be edge pixels for it to be a line: a pale border (#e9e9e9 on white)
# blended over 1.25 device px and saved as JPEG keeps only ~70 % of its pixels 10 levels apart.
LINE = 0.6
SIDE_TOL = 3  # px by which a line's end may miss the side it belongs to
END_TOL = 7  # px by which the two lines of a frame may end apart: JPEG rings up to an 8x8 block past a dark edge
CORNER, CORNER_SHARE = 0.15, 1 / 3  # the rows at each end of a side, and the share of them on which it must change
BLOCK = 16  # rows summed together in _column_changes, to tell cheaply where a frame's side cannot be
FLAT_TOL, FLAT_SHARE = 24, 0.8  # a border or page line: 80 % of it within 24 levels of its median
# (JPEG's noise on it, and its ripple beside a strong edge, stay within FLAT_TOL: a line that changes by
# more is a strong one)
INK_MIN, INK_MAX = 0.01, 0.6  # fraction of dark pixels inside a captcha
# ...on one background level: >= 61 % of the real sample images' pixels are within 16 levels of their 90th percentile
BACKGROUND_MIN, BACKGROUND_TOL = 0.35, 16
# Resampling from the screen back to the model's pixels, chosen by benchmarks/screenshots.py.
RESAMPLE = Image.NEAREST
# A captcha shown at another size than its own has lost or gained pixels, and where nearest neighbour's grid
# falls decides which of them the reader sees. So it is also cut at PHASES, shifts of that grid in the screen's
# pixels; the solver reads them when the first reading scores below the model's sure_min (then GRID, below).
# On 200 real kcaptcha-default images (not the benchmark's; whole forms): 81.5 -> 87.0 % at DPR 1 and 93.0 ->
# 96.5 % at DPR 1.25 (0.41 and 0.52 of its size); reading every phase gave the same, +-0.2 .. 0.5 were tried,
# 0.4 was best. This was done only under 0.6 of the size at first; doing it at every other size took
# kcaptcha-default at DPR 1.5 (0.65) from 98.87 to 99.40 % on 6,000 generated screenshots (1,500 captchas, both
# skins, PNG and JPEG) and from 98.83 to 99.83 % on real images 200-499 (whole forms); the benchmark's 96 lost one
# image there. gnuboard5 (0.63-2x): 99.11 -> 99.19 % on those real images at DPR 1-1.5, 99.85 -> 99.89 % on
# 7,200 generated screenshots at DPR 1-2; seed-l2 read all 7,200 of its own either way.
PHASES = ((0.4, 0.4), (-0.4, -0.4))
# The surest of those three readings stood until the three were found to disagree in most misreads: each phase alone
# misreads a few captchas (95-97 % each at DPR 1), mostly not the same ones. Now, when they disagree, the captcha
# is read at the GRID too, every other phase of a grid 0.2 screen px apart up to 0.4 px either way (a checkerboard
# of 13 with these three), and the string likeliest under all 13 readings stands (solver.likeliest). On real
# kcaptcha-default images 200-499 and 0-99 (whole forms, both skins, PNG and JPEG, DPR 1-1.5; not the benchmark's):
# 98.42 -> 98.94 % and 98.25 -> 98.83 % (DPR 1: 97.08 -> 98.08 and 95.50 -> 97.00 %); 3,000 generated ones 98.60
# -> 98.80 %; gnuboard5's 6,900 generated ones at another size, unchanged (99.88 %). All 25 phases of the grid read
# 98.92, 98.92 and 98.77 % for 1.6x these 13's extra runs, and 98.92, 98.92 and 98.80 % read whenever the first
# reading is unsure (6x); the likeliest of 9 phases 0.4 px apart 98.64, 98.67 and 98.77 %; the mean of the 25
# phases' probabilities 97.94 and 98.75 % on the real ones.
STEPS = (-0.4, -0.2, 0.0, 0.2, 0.4)
GRID = tuple((x, y) for j, y in enumerate(STEPS) for i, x in enumerate(STEPS)
             if (i + j) % 2 == 0 and (x, y) != (0.0, 0.0) and (x, y) not in PHASES)


@dataclass(frozen=True)
class Found:
    """One captcha: ``box`` (x, y, w, h) in the input's pixels, the model size it fits, and the crop
    resampled to that size (uint8 [height, width, 3]); for one at another size also the ``crop`` itself, of
    which ``views()`` makes the other phases."""

    box: tuple[int, int, int, int]
    size: tuple[int, int]
    pixels: np.ndarray
    crop: np.ndarray | None = None

    def views(self, shifts: Sequence[tuple[float, float]] = PHASES) -> tuple[np.ndarray, ...]:
        """The crop resampled at each of ``shifts`` (none at the captcha's own size). Made when asked: the solver
        asks only when the first reading is unsure (0.2-0.5 ms a 1920x1080 screen otherwise spent)."""
        return () if self.crop is None else tuple(fit(self.crop, *self.size, shift) for shift in shifts)


def locate(rgb: np.ndarray, sizes: Sequence[tuple[int, int]], resample: int = RESAMPLE) -> list[Found]:
    """Every captcha in ``rgb`` (uint8 [H, W, 3]) that has the shape of one of ``sizes`` ((width, height)
    of the models), top to bottom; an empty list when there is none."""
    h, w = rgb.shape[:2]
    sizes = list(dict.fromkeys(tuple(s) for s in sizes))
    if (w, h) in sizes:  # the bare captcha: nothing to search
        return [Found((0, 0, w, h), (w, h), rgb)]
    green = np.ascontiguousarray(rgb[:, :, 1])
    found: list[Found] = []
    for box, size in _boxes(green, sizes):
        x, y, bw, bh = box
        crop = rgb[y:y + bh, x:x + bw]
        if (bw, bh) == size:
            found.append(Found(box, size, crop))
        else:
            found.append(Found(box, size, np.asarray(Image.fromarray(crop).resize(size, resample)), crop))
    return found


def _edge_rows(gray: np.ndarray, min_count: int, rows: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """The edge rows where at least ``min_count`` pixels change, and their pixels ([n, W] bool). Edge row i lies
    between rows i-1 and i; rows 0 and H (the picture's top and bottom) change everywhere.

    Computed ``rows`` at a time in small buffers, and only those rows are kept: whole-picture temporaries
    (four of a 1920x1080 screen's size) made the allocator hand their pages back and fault them in again on
    every call, 3.5 ms of such a screen's locate instead of 0.3."""
    h, w = gray.shape
    ends = w >= min_count  # the picture's top and bottom are kept
    index, kept = [np.array([0])] if ends else [], [np.ones((1, w), bool)] if ends else []
    hi, lo, edge = np.empty((rows, w), np.uint8), np.empty((rows, w), np.uint8), np.empty((rows, w), bool)
    for i in range(1, h, rows):
        j = min(i + rows, h)
        n = j - i
        _changed(gray[i:j], gray[i - 1:j - 1], (hi[:n], lo[:n]), edge[:n])
        many = np.flatnonzero(np.count_nonzero(edge[:n], axis=1) >= min_count)
        index.append(many + i)
        kept.append(edge[many])
    if ends:
        index.append(np.array([h]))
        kept.append(np.ones((1, w), bool))
    return np.concatenate([np.zeros(0, np.intp), *index]), np.concatenate([np.zeros((0, w), bool), *kept])


def _changed(a: np.ndarray, b: np.ndarray, buffers: tuple[np.ndarray, np.ndarray], out: np.ndarray) -> None:
    """``out`` = where uint8 ``a`` and ``b`` differ by EDGE levels or more, through two uint8 ``buffers`` of their
    shape: no temporaries, no wider type."""
    hi, lo = buffers
    np.maximum(a, b, out=hi)
    np.minimum(a, b, out=lo)
    np.subtract(hi, lo, out=hi)
    np.greater_equal(hi, EDGE, out=out)


def _runs(rows: np.ndarray, edges: np.ndarray, min_len: int) -> list[tuple[int, int, int]]:
    """(row, start, end) of the runs of edge pixels at least ``min_len`` long in ``edges`` (the pixels of edge
    rows ``rows``), closing gaps up to GAP, in one pass: the rows are laid end to end with a gap wide enough
    to cut between them."""
    stride = edges.shape[1] + GAP + 2
    laid = np.zeros((len(rows), stride), bool)
    laid[:, :edges.shape[1]] = edges
    idx = np.flatnonzero(laid.ravel())
    if idx.size == 0:
        return []
    cuts = np.flatnonzero(np.diff(idx) > GAP + 1)
    first, last = np.concatenate([[0], cuts + 1]), np.concatenate([cuts, [idx.size - 1]])
    starts, ends = idx[first], idx[last] + 1
    # A border is an edge almost all along; a line of text is one only here and there.
    keep = (ends - starts >= min_len) & (last - first + 1 >= DENSITY * (ends - starts))
    row, x0 = np.divmod(starts[keep], stride)
    x1 = x0 + (ends - starts)[keep]
    return list(zip(rows[row].tolist(), x0.tolist(), x1.tolist(), strict=True))


def _is_line(gray: np.ndarray, i: int, a: int, b: int) -> bool:
    """Edge row i (between rows i-1 and i) over [a, b) is a line: one side of it is a flat border or page
    (in noise or a photo neither side is). The picture's own top and bottom are lines."""
    h = gray.shape[0]
    return i == 0 or i == h or _flat(gray[i - 1, a:b]) or _flat(gray[i, a:b])


def _boxes(gray: np.ndarray, sizes: list[tuple[int, int]]) -> list[tuple[tuple[int, int, int, int], tuple[int, int]]]:
    min_w = int(min(min(SCALE_MIN * sw, MIN_HEIGHT * sw / sh) for sw, sh in sizes))
    tallest = {size: SCALE_MAX * size[1] + 8 for size in sizes}  # a frame: the shape at SCALE_MAX, and a border
    max_h = max(tallest.values())
    runs = [r for r in _runs(*_edge_rows(gray, min_w), min_w) if _is_line(gray, *r)]
    columns = _column_changes(gray)
    # An edge blended over two rows gives a frame two or more pairs of lines, whose searches ask for the same
    # windows' vertical lines (on twelve 1920x1080 screens at DPR 1.25, 837 asked, 336 distinct): each found once.
    vertical = cache(partial(_vertical_lines, gray))
    # A top and a bottom line over a common stretch at least as wide as a model's shape needs at that
    # height. A line may run on into a neighbour (the answer box 3 px away, once JPEG noise bridges the
    # gap), so the sides are found afterwards, from vertical lines.
    pairs = []  # (expected width, top edge, bottom edge, x0, x1, size)
    for k, (top, a0, a1) in enumerate(runs):
        for bottom, b0, b1 in runs[k + 1:]:
            height = bottom - top
            if height > max_h:
                break
            x0, x1 = max(a0, b0), min(a1, b1)
            left, right = abs(a0 - b0) <= END_TOL, abs(a1 - b1) <= END_TOL
            if height < MIN_HEIGHT * 0.9 or not (left or right):  # a frame's two lines end together on a side
                continue
            for size in sizes:
                expected = height * size[0] / size[1]
                if height <= tallest[size] and x1 - x0 >= expected * (1 - ASPECT_TOL) - SIDE_TOL:
                    pairs.append((expected, top, bottom, x0 if left else None, x1 if right else None, size))
    h, w = gray.shape
    pairs = [pair for pair, maybe in zip(pairs, _may_have_sides(columns, h, pairs), strict=True) if maybe]
    out: list[tuple[tuple[int, int, int, int], tuple[int, int]]] = []
    refused: list[tuple[tuple[int, int, int, int], tuple[int, int]]] = []  # frames found that are no captcha
    # Frames of the page's own lines first; one that leans on the picture's edge (a crop cut through a
    # neighbour, rules that run off the screen) comes last, and is kept only when nothing else is found.
    # Then lowest first: a captcha inside a taller captcha-shaped frame (a crop whose own edges have the
    # right shape) is the captcha; the lines of its own border nest around it and are skipped. Between
    # shapes of one height, the widest first: a digit's long stroke can pass for the side of a narrower shape.
    def order(p: tuple) -> tuple:
        expected, top, bottom, x0, x1, _ = p
        return (top == 0 or bottom == h or x0 == 0 or x1 == w, bottom - top, -expected, top)

    for expected, top, bottom, x0, x1, size in sorted(pairs, key=order):
        # The frame, from the side where both lines end (the other may run on into a neighbour).
        from_left = x0 is not None
        a = x0 if from_left else round(x1 - expected)
        if any(_overlap((a, top, round(expected), bottom - top), box) and not _wider(size, other)
               for box, other in out):
            continue
        if any(_frames(top, bottom, x0 if from_left else x1, from_left, size, *seen) for seen in refused):
            continue
        box = _refine(gray, vertical, top, bottom, a, from_left, expected, size)
        if box is None:
            continue
        # A wider shape on a found frame's rows is that frame, read whole: the found one was cut short by
        # a digit's stroke (a pair of lines one row inside the border, broken by blending, fits only the
        # narrower shape, and such a pair is lower).
        clash = [f for f in out if _overlap(box, f[0])]
        if not all(_wider(size, other) and _same_rows(box, found) for found, other in clash):
            continue
        x, y, bw, bh = box
        if _looks_like_captcha(gray[y:y + bh, x:x + bw]):
            out = [f for f in out if f not in clash] + [(box, size)]
        else:
            refused.append((box, size))
    inside = [f for f in out if not _at_edge(f[0], w, h)]
    return sorted(inside or out, key=lambda f: (f[0][1], f[0][0]))


def _frames(top: int, bottom: int, side: int, from_left: bool, size: tuple[int, int],
            box: tuple[int, int, int, int], found: tuple[int, int]) -> bool:
    """A pair of lines (``top``, ``bottom``, ending together at column ``side``) is another pair of the frame
    ``box`` found for ``size``: its lines lie on the frame's border (within the band ``_refine`` searches) and it
    ends where the frame's side is."""
    x, y, bw, bh = box
    band = _band(bottom - top)
    edge = x if from_left else x + bw
    return (size == found and y - band <= top <= y and y + bh <= bottom <= y + bh + band
            and abs(side - edge) <= band + SIDE_TOL)


def _band(height: ArrayLike) -> Any:
    """The rows either side of a pair's line where ``_refine`` looks for the captcha's edge, for a pair ``height``
    rows apart: a 1-CSS-px border at 3x, plus blending, is ~4 px. A number or an array of them
    (``_may_have_sides``), element-wise; a number gives an int (numpy's scalars would slow ``_refine``'s
    arithmetic)."""
    band = np.maximum(2, np.rint(0.06 * np.asarray(height))).astype(int)
    return band if band.ndim else int(band)


def _wider(a: tuple[int, int], b: tuple[int, int]) -> bool:
    """Shape ``a`` (width, height) is wider than shape ``b``."""
    return a[0] * b[1] > b[0] * a[1]


def _same_rows(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    """Boxes ``a`` and ``b`` share their top and bottom, within SIDE_TOL."""
    return abs(a[1] - b[1]) <= SIDE_TOL and abs(a[1] + a[3] - b[1] - b[3]) <= SIDE_TOL


def _at_edge(box: tuple[int, int, int, int], w: int, h: int) -> bool:
    """The box touches the picture's edge: one of its sides may be the picture's, not a line of the page."""
    x, y, bw, bh = box
    return x == 0 or y == 0 or x + bw == w or y + bh == h


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    return ax < bx + bw and bx < ax + aw and ay < by + bh and by < ay + ah


def _vertical_lines(gray: np.ndarray, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    """Indices j in [x0, x1] where columns j-1 and j differ the same way along most of rows [y0, y1);
    the picture's sides count as lines."""
    w = gray.shape[1]
    lo, hi = max(x0 - 1, 0), min(x1 + 1, w)
    rows = gray[y0:y1, lo:hi]
    a, b = rows[:, 1:], rows[:, :-1]
    changed = (np.maximum(a, b) - np.minimum(a, b)) >= EDGE
    need = LINE * (y1 - y0)
    cols = np.flatnonzero(changed.sum(axis=0) >= need)
    if cols.size:  # of these few, those that change one way (ink and JPEG noise change both ways)
        cols = cols[_one_way(a[:, cols].astype(np.int16) - b[:, cols], EDGE) >= need]
    lines = list(cols + lo + 1)
    if x0 <= 0:
        lines.insert(0, 0)
    if x1 >= w:
        lines.append(w)
    return np.array([j for j in lines if x0 <= j <= x1], dtype=int)


def _one_way(change: np.ndarray, levels: int) -> np.ndarray:
    """How many of each column of ``change`` (signed differences) are ``levels`` or more the same way: all
    brighter or all darker, whichever more are."""
    return np.maximum((change >= levels).sum(axis=0), (change <= -levels).sum(axis=0))


def _inner_lines(gray: np.ndarray, top: int, bottom: int, band: int, a: int, b: int) -> tuple[int, int] | None:
    """``_inner_line`` at a pair's ``top`` and ``bottom`` over [a, b), the rows of both read in one batch; None
    when either has no line."""
    h = gray.shape[0]
    windows = [(max(line - band, 0), min(line + band, h)) for line in (top, bottom)]
    kinds = _line_kinds(gray, windows, a, b)
    y0 = _inner_line(kinds[0], windows[0], top, 1, band)
    y1 = _inner_line(kinds[1], windows[1], bottom, -1, band)
    return None if y0 is None or y1 is None else (y0, y1)


def _inner_line(kinds: list[tuple[int, int]], window: tuple[int, int], line: int, inward: int, band: int) -> int | None:
    """Where the captcha meets its border, near a pair's ``line`` (edge rows: row i lies between rows i-1
    and i; ``inward`` is 1 at the top, -1 at the bottom), from the ``kinds`` (``_line_kinds``) of the edge
    rows of ``window``, ``band`` either side of it. A row is a line when LINE of it changes the same way by EDGE
    levels, a strong one by more than FLAT_TOL: a weaker line inside a strong one is the ripple JPEG leaves
    beside it (within FLAT_TOL, as the noise on a flat line is). So: the first strong line from ``band`` rows
    inside ``line`` out to it; else, on outwards while the rows change the way ``line`` does (one edge blended
    over rows: ``line`` may be a blended row beside the border's strong edge), the first strong one there;
    else the first line. The picture's top and bottom are lines, not strong ones."""
    lo, hi = window

    def clip(i: int) -> int:
        return min(max(i, lo), hi)

    weak, way = None, 0
    for i in range(clip(line + inward * band), line - inward, -inward):  # innermost first, to ``line``
        strength, way = kinds[i - lo]
        if strength == 2:
            return i
        if strength and weak is None:
            weak = i
    for i in range(line - inward, clip(line - inward * band) - inward, -inward):  # then outwards
        strength, towards = kinds[i - lo]
        if not strength or not way or towards != way:
            break
        if strength == 2:
            return i
    return weak


def _line_kinds(gray: np.ndarray, windows: list[tuple[int, int]], a: int, b: int) -> list[list[tuple[int, int]]]:
    """For the edge rows lo..hi of each of ``windows`` over [a, b): (0 no line, 1 a line, 2 a strong one; 1
    brighter, -1 darker, 0 the picture's top or bottom), all windows in one batch of array operations (the
    rows of each laid one after another; the change across from one to the next is not read)."""
    h = gray.shape[0]
    need = LINE * (b - a)
    kinds = [[(1, 0)] * (hi - lo + 1) for lo, hi in windows]  # rows 0 and h, the picture's edges
    spans = [(max(lo, 1), min(hi, h - 1)) for lo, hi in windows]
    rows = [np.arange(first - 1, last + 1) for first, last in spans if first <= last]
    if not rows:
        return kinds
    block = gray[np.concatenate(rows), a:b].astype(np.int16)
    change = block[1:] - block[:-1]
    up, down = np.count_nonzero(change >= EDGE, axis=1), np.count_nonzero(change <= -EDGE, axis=1)
    way = np.where(up > down, 1, -1)
    strong = np.count_nonzero(way[:, None] * change > FLAT_TOL, axis=1) >= need
    lines = np.maximum(up, down) >= need
    found = list(zip(lines.tolist(), way.tolist(), strong.tolist(), strict=True))
    at = 0  # the first change of the window's rows in ``found``
    for (lo, _), (first, last), row_kinds in zip(windows, spans, kinds, strict=True):
        if first > last:
            continue
        for k, (line, w, s) in enumerate(found[at:at + last - first + 1]):
            row_kinds[first + k - lo] = (1 + s, w) if line else (0, 0)
        at += last - first + 2
    return kinds


def _refine(
    gray: np.ndarray, vertical: Callable[[int, int, int, int], np.ndarray], top: int,
    bottom: int, x0: int, from_left: bool, outer: float, size: tuple[int, int],
) -> tuple[int, int, int, int] | None:
    """The image inside its border, from a top and a bottom line that start at ``x0`` (or, when not
    ``from_left``, whose right ends are ``outer`` px right of it): the innermost lines near the top and
    the bottom (a border is 1-4 px), then the vertical lines (``vertical``: ``_vertical_lines`` of ``gray``)
    at the anchored side and where the height says the other side is. Only small windows are read, so a
    page-wide pair of lines costs little; the far side, which most pairs lack, first (and ``_boxes`` asks
    ``_may_have_sides`` whether there can be one before it calls this)."""
    h, w = gray.shape
    height = bottom - top
    band = _band(height)
    a, b = max(x0, 0), min(round(x0 + outer), w)
    inner = _inner_lines(gray, top, bottom, band, a, b)
    if inner is None:
        return None
    y0, y1 = inner
    expected = (y1 - y0) * size[0] / size[1]
    tol = ASPECT_TOL * expected + SIDE_TOL
    reach = band + SIDE_TOL + 1
    # The far side first: most pairs of lines (text and rules across a screen) have none there.
    end = x0 if from_left else round(x0 + outer)
    far = vertical(y0, y1, *map(int, _far_window(end, from_left, expected, reach)))
    if not far.size:
        return None
    near = vertical(y0, y1, end - reach, end + reach)
    left, right = (near, far) if from_left else (far, near)
    # The sides nearest the width the height asks for (between equals, the rightmost left side) that make a
    # frame: a blended border gives two or three lines each side, and the inner one can hold ink.
    pairs = sorted(((int(c0), int(c1)) for c0 in left for c1 in right if c1 > c0),
                   key=lambda p: (abs(p[1] - p[0] - expected), -p[0]))
    for c0, c1 in pairs:
        if abs(c1 - c0 - expected) > tol:
            return None  # and so are all the rest
        if _frame(gray, y0, y1, c0, c1, size):
            return c0, y0, c1 - c0, y1 - y0
    return None


def _frame(gray: np.ndarray, y0: int, y1: int, c0: int, c1: int, size: tuple[int, int]) -> bool:
    """Rows [y0, y1) and columns [c0, c1) are a captcha's frame: of ``size``'s shape, each side running into
    both corners (``_spans``) with the top and bottom lines ending there (``_runs_on``), and just outside each
    side a border or the page, one flat colour (inside a captcha, ink is not)."""
    h, w = gray.shape
    aspect = (y1 - y0) * size[0] / ((c1 - c0) * size[1])
    if abs(aspect - 1) > ASPECT_TOL or not (_spans(gray, y0, y1, c0) and _spans(gray, y0, y1, c1)):
        return False
    if _runs_on(gray, y0, y1, range(c1 + 2, c1 + 5)) or _runs_on(gray, y0, y1, range(c0 - 4, c0 - 1)):
        return False
    outside = [gray[y0 - 1, c0:c1] if y0 > 0 else None, gray[y1, c0:c1] if y1 < h else None,
               gray[y0:y1, c0 - 1] if c0 > 0 else None, gray[y0:y1, c1] if c1 < w else None]
    return all(line is None or _flat(line) for line in outside)


def _runs_on(gray: np.ndarray, y0: int, y1: int, columns: range) -> bool:
    """The frame's top and bottom lines (edge rows ``y0`` and ``y1``) both go on through ``columns``, just past
    a side (2-4 px out, beyond a border): changing there by more than FLAT_TOL on 2 of 3 columns, as inside
    the captcha, where a letter's edge closed a frame of its top border and its credits band. Past a true side
    lie a border and the page, or the 3-px gap to the answer box, where only JPEG noise and the box's corner
    change, and by less."""
    h, w = gray.shape
    cols = [c for c in columns if 0 <= c < w]
    if len(cols) < 2 or y0 <= 0 or y1 >= h:
        return False
    top = np.abs(gray[y0, cols].astype(np.int16) - gray[y0 - 1, cols]) > FLAT_TOL
    bottom = np.abs(gray[y1, cols].astype(np.int16) - gray[y1 - 1, cols]) > FLAT_TOL
    return bool(np.count_nonzero(top) >= 2 and np.count_nonzero(bottom) >= 2)


def _spans(gray: np.ndarray, y0: int, y1: int, c: int) -> bool:
    """The vertical line at column ``c`` (between c-1 and c) changes, either way, on CORNER_SHARE of the
    CORNER rows at each end of [y0, y1): a side runs into the frame's corners, where a letter's edge, which
    in a JPEG at 0.41x can pass for a side (the right of a `3` between the top border and kcaptcha-default's
    dark credits band), stops short. The picture's sides count."""
    if c <= 0 or c >= gray.shape[1]:
        return True
    k = max(3, round(CORNER * (y1 - y0)))
    column = gray[y0:y1, c - 1:c + 1].astype(np.int16)
    changed = np.abs(column[:, 1] - column[:, 0]) >= EDGE
    need = CORNER_SHARE * k
    return bool(np.count_nonzero(changed[:k]) >= need and np.count_nonzero(changed[-k:]) >= need)


def _may_have_sides(columns: np.ndarray, h: int, pairs: list[tuple]) -> np.ndarray:
    """For each of ``pairs`` (as ``_boxes`` lists them), whether ``_refine`` can find the far side of its frame in
    a picture ``h`` rows high, told before its costlier steps from ``columns`` (``_column_changes``), for all pairs
    in one batch of array operations: a test that never rejects a frame ``_refine`` would find (so the boxes are
    the same), and rejects most pairs (89 % of those on 1920x1080 screens, whose rules, text lines and input boxes
    have no side there).

    ``_refine`` puts the top and bottom within ``band`` rows of ``top`` and ``bottom``, so its rows [y0, y1)
    hold the core rows [top + band, bottom - band), its height lies between the core's and that plus 4 bands,
    and its search window for the far side within the union of the windows of those heights. A column that is
    a line there changes on LINE of [y0, y1), so on at least the core's height - (1 - LINE) x the largest
    height of the core's rows; the blocks of rows that cover the core hold at least as many changes."""
    if not pairs:
        return np.zeros(0, bool)
    w = columns.shape[1] + 1
    expected, top, bottom, x0, x1, size = zip(*pairs, strict=True)
    expected, top, bottom = np.array(expected), np.array(top), np.array(bottom)
    from_left = np.array([x is not None for x in x0])
    anchor = np.where(from_left, [x or 0 for x in x0], np.rint(np.array([x or 0 for x in x1]) - expected))
    end = np.where(from_left, anchor, np.rint(anchor + expected)).astype(int)  # as _boxes and _refine round it
    sw, sh = np.array(size).T
    band = _band(bottom - top)
    core0, core1 = np.minimum(top + band, h), np.maximum(bottom - band, 0)
    tallest = np.minimum(bottom + band, h) - np.maximum(top - band, 0)
    need = (core1 - core0) - (1 - LINE) * tallest - 1e-6  # slack for LINE's rounding
    reach = band + SIDE_TOL + 1
    # The window's ends move one way with the width, so the extreme heights' windows bound all of them.
    windows = [_far_window(end, from_left, height * sw / sh, reach) for height in (core1 - core0, tallest)]
    lo, hi = np.minimum(windows[0][0], windows[1][0]), np.maximum(windows[0][1], windows[1][1])
    maybe = (need <= 0) | (lo <= 0) | (hi >= w)  # the picture's side counts as a line
    ask = np.flatnonzero(~maybe)
    if ask.size:
        # The most changes in each asked window: its columns laid end to end, one reduceat.
        counts = hi[ask] - lo[ask] + 1
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        cols = np.repeat(lo[ask] - 1 - starts, counts) + np.arange(counts.sum())
        first, last = (np.repeat(rows, counts) for rows in (core0[ask] // BLOCK, -(-core1[ask] // BLOCK)))
        most = np.maximum.reduceat(columns[last, cols] - columns[first, cols], starts)
        maybe[ask] = most >= need[ask]
    return maybe


def _far_window(end: ArrayLike, from_left: ArrayLike, expected: ArrayLike, reach: ArrayLike) -> tuple[Any, Any]:
    """The columns [lo, hi] where a frame ``expected`` px wide, anchored at column ``end`` on its left
    (``from_left``) or right side, may have its other side: ASPECT_TOL of the width and SIDE_TOL either way, and
    ``reach`` more outwards (a blended border). Numbers or arrays of them (``_may_have_sides``), element-wise."""
    tol = ASPECT_TOL * expected + SIDE_TOL
    centre = end + np.where(from_left, expected, -expected)
    lo = np.rint(centre - tol).astype(int) - np.where(from_left, 0, reach)
    return lo, np.rint(centre + tol).astype(int) + np.where(from_left, reach, 0)


def _column_changes(gray: np.ndarray, rows: int = 4 * BLOCK) -> np.ndarray:
    """[blocks + 1, W - 1] int32: row k, column j - 1 counts the rows above row k x BLOCK where columns j - 1 and
    j differ by EDGE levels (rows past the picture's bottom count none). Made ``rows`` at a time, in small
    buffers, as ``_edge_rows`` is: about 0.5 ms for a 1920x1080 screen."""
    h, w = gray.shape
    blocks = -(-h // BLOCK)
    out = np.zeros((blocks + 1, w - 1), np.int32)
    hi, lo = np.empty((rows, w - 1), np.uint8), np.empty((rows, w - 1), np.uint8)
    edge = np.zeros((rows, w - 1), bool)
    for i in range(0, h, rows):
        n = min(rows, h - i)
        _changed(gray[i:i + n, 1:], gray[i:i + n, :-1], (hi[:n], lo[:n]), edge[:n])
        edge[n:] = False
        k = i // BLOCK
        m = -(-n // BLOCK)
        out[k + 1:k + 1 + m] = edge[:m * BLOCK].reshape(m, BLOCK, w - 1).sum(axis=1, dtype=np.int32)
    return np.cumsum(out, axis=0, out=out)


def _median(line: np.ndarray) -> int:
    """``int(np.median(line))`` of uint8 levels from one partial sort, without np.median's overhead (it
    is called for every line and side tried)."""
    lo, hi = (line.size - 1) // 2, line.size // 2
    part = np.partition(line, (lo, hi))
    return (int(part[lo]) + int(part[hi])) // 2


def _flat(line: np.ndarray) -> bool:
    """Most of a line within FLAT_TOL levels of its median (a border, the page; JPEG noise allowed)."""
    median = _median(line)
    near = (line >= max(median - FLAT_TOL, 0)) & (line <= min(median + FLAT_TOL, 255))
    return np.count_nonzero(near) >= FLAT_SHARE * line.size


def _looks_like_captcha(gray: np.ndarray) -> bool:
    """A plain light background with some dark ink: not a blank box, a photo, noise or a filled button.
    Counted on the levels' histogram (a 1-CSS-px frame at 3x holds 35k pixels; np.percentile took 0.17 ms)."""
    counts = np.bincount(gray.ravel(), minlength=256)
    below = np.cumsum(counts)  # below[v]: pixels at level v or darker
    lo, hi = (_percentile(below, q) for q in (2, 90))
    if hi - lo < 60:
        return False
    top = int(hi)
    background = int(counts[max(top - BACKGROUND_TOL, 0):top + BACKGROUND_TOL + 1].sum()) / gray.size
    middle = (int(lo) + top) // 2
    dark = (int(below[middle - 1]) if middle > 0 else 0) / gray.size
    return background >= BACKGROUND_MIN and INK_MIN <= dark <= INK_MAX


def _percentile(below: np.ndarray, q: float) -> float:
    """``np.percentile(levels, q)`` (its default, linear) from the cumulative histogram ``below`` of the levels,
    with the same float arithmetic, so the same value."""
    n = int(below[-1])
    at = (n - 1) * (q / 100)
    first = min(int(np.floor(at)), n - 1)
    a, b = (int(np.searchsorted(below, k, side="right")) for k in (first, min(first + 1, n - 1)))
    gamma = at - first
    return a + (b - a) * gamma if gamma < 0.5 else b - (b - a) * (1 - gamma)
