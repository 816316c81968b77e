"""Find captchas in a picture (a screenshot, a loose crop, the bare image) and cut them out at a model's size.

numpy and Pillow only, so the solver, the service and the page's Python twin can all use it.

How: a captcha on a page is a rectangle with the shape of a model's input (160x60, 160x92, ...) whose
edges are straight lines where its background meets a border or the page: Gnuboard draws a 1-px
border round it (``#898989`` on the desktop skin, ``#e9e9e9`` on the PC layout for phones). So we

1. mark, on the green channel, the pixels that differ from the one below by at least ``EDGE`` levels,
   and keep the long horizontal runs of them (a few px of gap allowed, for ink touching the edge);
2. pair a run with a lower run of the same extent whose distance gives a model's aspect ratio;
3. for each pair, take the innermost top, bottom, left and right edge lines in a small window
   around it: the image inside its border;
4. keep boxes whose inside looks like a captcha (a light background with some dark ink).

The picture's own edges count as lines, so a crop of the image alone (with or without border) is
found the same way. A picture already at a model's size is returned whole, with no search.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

EDGE = 10  # grey levels between neighbours that make an edge pixel (#e9e9e9 on white differs by 22)
GAP = 2  # px of no edge tolerated inside a run (JPEG specks); Gnuboard puts the answer box 3 CSS px away
ASPECT_TOL = 0.07  # relative height/width mismatch accepted; Gnuboard's PC-for-phones shows 160x60 as 158x58
SCALE_MIN, SCALE_MAX = 0.55, 3.4  # displayed width / model width: 0.63 (desktop, DPR 1) to 3x, with room
# Gnuboard shows every captcha 38 CSS px high inside its border, whatever its size: a 160x92 image is
# 66x38 at DPR 1 (0.41 of its size), so the smallest width searched for also follows from this height.
MIN_HEIGHT = 36
SIDE_TOL = 3  # px by which the ends of a top and a bottom run may disagree
INK_MIN, INK_MAX = 0.01, 0.6  # fraction of dark pixels inside a captcha
# ...on one background level: >= 61 % of the real sample images' pixels are within 16 levels of their 90th percentile
BACKGROUND_MIN, BACKGROUND_TOL = 0.35, 16
# Resampling from the screen back to the model's pixels, chosen by benchmarks/screenshots.py.
RESAMPLE = Image.NEAREST


@dataclass(frozen=True)
class Found:
    """One captcha: ``box`` (x, y, w, h) in the input's pixels, the model size it fits, and the crop
    resampled to that size (uint8 [height, width, 3])."""

    box: tuple[int, int, int, int]
    size: tuple[int, int]
    pixels: np.ndarray


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
        if not _looks_like_captcha(green[y:y + bh, x:x + bw]):
            continue
        pixels = crop if (bw, bh) == size else np.asarray(Image.fromarray(crop).resize(size, resample))
        found.append(Found(box, size, pixels))
    return found


def _edges(gray: np.ndarray) -> np.ndarray:
    """[H+1, W] bool: row i marks a change between rows i-1 and i; the picture's top and bottom are edges."""
    a, b = gray[1:], gray[:-1]
    inner = (np.maximum(a, b) - np.minimum(a, b)) >= EDGE
    border = np.ones((1, gray.shape[1]), bool)
    return np.concatenate([border, inner, border])


def _runs(row: np.ndarray, min_len: int) -> list[tuple[int, int]]:
    """[start, end) of the runs of True in ``row`` at least ``min_len`` long, closing gaps up to GAP."""
    idx = np.flatnonzero(row)
    if idx.size < min_len:
        return []
    cuts = np.flatnonzero(np.diff(idx) > GAP + 1)
    starts = np.concatenate([[0], cuts + 1])
    ends = np.concatenate([cuts, [idx.size - 1]])
    return [(int(idx[s]), int(idx[e]) + 1) for s, e in zip(starts, ends, strict=True) if idx[e] - idx[s] + 1 >= min_len]


def _boxes(gray: np.ndarray, sizes: list[tuple[int, int]]) -> list[tuple[tuple[int, int, int, int], tuple[int, int]]]:
    h, w = gray.shape
    min_w = int(min(min(SCALE_MIN * sw, MIN_HEIGHT * sw / sh) for sw, sh in sizes))
    max_w = SCALE_MAX * max(s[0] for s in sizes) + 8
    edges = _edges(gray)  # edges[i]: between rows i-1 and i (row -1 and row h are outside)
    counts = edges.view(np.uint8).sum(axis=1, dtype=np.int32)
    runs: list[tuple[int, int, int]] = []  # (edge row, x0, x1)
    for i in np.flatnonzero(counts >= min_w):
        runs.extend((int(i), a, b) for a, b in _runs(edges[i], min_w) if b - a <= max_w)
    runs.sort()
    pairs = []  # (top edge, bottom edge, x0, x1, size)
    for k, (top, a0, a1) in enumerate(runs):
        for bottom, b0, b1 in runs[k + 1:]:
            if abs(a0 - b0) > SIDE_TOL or abs(a1 - b1) > SIDE_TOL:
                continue
            x0, x1 = max(a0, b0), min(a1, b1)
            for size in sizes:
                aspect = (bottom - top) * size[0] / ((x1 - x0) * size[1])
                if abs(aspect - 1) <= ASPECT_TOL:
                    pairs.append((top, bottom, x0, x1, size))
    out: list[tuple[tuple[int, int, int, int], tuple[int, int]]] = []
    taken: list[tuple[int, int, int, int]] = []
    # Narrowest pairs first: a captcha inside a bigger captcha-shaped frame (a crop whose own edges have
    # the right shape) is the captcha; the lines of its own border nest around it and are skipped.
    for top, bottom, x0, x1, size in sorted(pairs, key=lambda p: (p[3] - p[2], p[0])):
        if any(_overlap((x0, top, x1 - x0, bottom - top), t) for t in taken):
            continue
        box = _refine(gray, edges, top, bottom, x0, x1, size)
        if box is not None:
            taken.append((x0, top, x1 - x0, bottom - top))
            out.append((box, size))
    return sorted(out, key=lambda f: (f[0][1], f[0][0]))


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    return ax < bx + bw and bx < ax + aw and ay < by + bh and by < ay + ah


def _refine(
    gray: np.ndarray, edges: np.ndarray, top: int, bottom: int, x0: int, x1: int, size: tuple[int, int],
) -> tuple[int, int, int, int] | None:
    """The image inside its border: the innermost edge lines near each side of an outer pair."""
    h, w = gray.shape
    band = max(2, round(0.06 * (bottom - top)))  # a 1-CSS-px border at 3x plus blending is ~4 px
    inner_w = x1 - x0
    full = edges[:, x0:x1].view(np.uint8).sum(axis=1) >= 0.85 * inner_w
    tops = [i for i in range(top, min(top + band, bottom) + 1) if full[i]]
    bottoms = [i for i in range(max(bottom - band, top), bottom + 1) if full[i]]
    if not tops or not bottoms:
        return None
    y0, y1 = max(tops), min(bottoms)  # content rows [y0, y1)
    if y1 - y0 < 0.8 * (bottom - top):
        return None
    rows = gray[y0:y1]
    a = rows[:, 1:]
    b = rows[:, :-1]
    vertical = (np.maximum(a, b) - np.minimum(a, b)) >= EDGE  # [rows, w-1]: column j marks j|j+1
    cols = np.concatenate([[y1 - y0], vertical.view(np.uint8).sum(axis=0), [y1 - y0]]) >= 0.85 * (y1 - y0)
    # cols[j] marks the edge between columns j-1 and j; the picture's sides are edges.
    side = max(2, round(0.06 * inner_w))
    lefts = [j for j in range(max(0, x0 - 1), min(x0 + side, w) + 1) if cols[j]]
    rights = [j for j in range(max(0, x1 - side), min(x1 + 1, w) + 1) if cols[j]]
    if not lefts or not rights:
        return None
    c0, c1 = max(lefts), min(rights)
    if c1 - c0 < 0.8 * inner_w:
        return None
    aspect = (y1 - y0) * size[0] / ((c1 - c0) * size[1])
    if abs(aspect - 1) > ASPECT_TOL:
        return None
    return c0, y0, c1 - c0, y1 - y0


def _looks_like_captcha(gray: np.ndarray) -> bool:
    """A plain light background with some dark ink: not a blank box, a photo, noise or a filled button."""
    lo, hi = np.percentile(gray, (2, 90))
    if hi - lo < 60:
        return False
    background = np.count_nonzero(np.abs(gray.astype(np.int16) - int(hi)) <= BACKGROUND_TOL) / gray.size
    dark = np.count_nonzero(gray < (int(lo) + int(hi)) // 2) / gray.size
    return background >= BACKGROUND_MIN and INK_MIN <= dark <= INK_MAX
