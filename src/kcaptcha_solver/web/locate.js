// Find captchas in a picture (a screenshot, a loose crop, the bare image): the page's copy of locate.py,
// with the same constants and the same decisions, so that the page and Python cut the same boxes
// (tests/test_locate_js.py checks that on real images drawn into pages and on Chromium screenshots).
// How it works is said in locate.py's docstring; the comments here say only where the port must take
// care to decide as numpy and Python do (rounding, medians, percentiles, slices).
// Pure: pixels in (RGB or RGBA bytes, row by row), boxes out; the crop is brought to the model's size by
// reading.js's fit(), as Python's locate does with Pillow's NEAREST.

export const EDGE = 6;
export const DENSITY = 0.85;
export const GAP = 2;
export const ASPECT_TOL = 0.07;
export const SCALE_MIN = 0.55;
export const SCALE_MAX = 3.4;
export const MIN_HEIGHT = 36;
export const LINE = 0.6;
export const SIDE_TOL = 3;
export const END_TOL = 7;
export const CORNER = 0.15;
export const CORNER_SHARE = 1 / 3;
export const FLAT_TOL = 24;
export const FLAT_SHARE = 0.8;
export const INK_MIN = 0.01;
export const INK_MAX = 0.6;
export const BACKGROUND_MIN = 0.35;
export const BACKGROUND_TOL = 16;
export const PHASES = [
  [0.4, 0.4],
  [-0.4, -0.4],
];
// locate.py's GRID, read where the readings at PHASES disagree: every other phase (a checkerboard) of a grid 0.2 px
// apart up to 0.4 px either way, in the same order.
const STEPS = [-0.4, -0.2, 0, 0.2, 0.4];
export const GRID = STEPS.flatMap((y, j) => STEPS.map((x, i) => [x, y, i + j]))
  .filter(([x, y, k]) => k % 2 === 0 && !(x === 0 && y === 0) && !PHASES.some(([px, py]) => px === x && py === y))
  .map(([x, y]) => [x, y]);

/**
 * Every captcha in `pixels` (width x height, `channels` bytes a pixel: 3 for RGB, 4 for RGBA) that has the
 * shape of one of `sizes` ([width, height] of the models), top to bottom: [{box: [x, y, w, h], size: [w, h]}].
 * A picture already at one of the sizes is returned whole, with no search; an empty list when there is none.
 */
export function locate(pixels, width, height, sizes, channels = pixels.length / (width * height)) {
  const known = [...new Map(sizes.map(([w, h]) => [`${w}x${h}`, [w, h]])).values()];
  const bare = known.find(([w, h]) => w === width && h === height);
  if (bare) return [{ box: [0, 0, width, height], size: bare }];
  return boxes(scan(pixels, width, height, channels), known).map(([box, size]) => ({ box, size }));
}

/**
 * The shifts of the resampling grid at which a found captcha may be read, as solver.py reads locate.py's views:
 * its own, and for one shown at another size than its own also PHASES (read when the first reading is unsure),
 * then GRID (read when those readings disagree).
 */
export function shifts([, , w, h], [width, height]) {
  return w === width && h === height ? [[[0, 0]]] : [[[0, 0]], PHASES, GRID];
}

/** RGB integers (as reading.js's fit() takes them) of `box` in `pixels` (`width` wide, `channels` a pixel). */
export function cut(pixels, width, [x, y, w, h], channels = 3) {
  const rgb = new Int32Array(w * h * 3);
  for (let r = 0, o = 0; r < h; r++) {
    for (let c = 0, i = ((y + r) * width + x) * channels; c < w; c++, i += channels, o += 3) {
      rgb[o] = pixels[i];
      rgb[o + 1] = pixels[i + 1];
      rgb[o + 2] = pixels[i + 2];
    }
  }
  return rgb;
}

/** Python's round(): the nearest integer, halves to the even one (Math.round takes halves up). */
function pyRound(x) {
  const r = Math.round(x);
  return x - Math.floor(x) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * What the search reads, in one pass over the pixels (a page runs this once, before the JIT has warmed
 * up, so one simple loop beats three): the green channel (as locate.py reads), and edges [H+1, W], row i
 * marking a change between rows i-1 and i (the picture's top and bottom are edges), with each row's count.
 */
function scan(pixels, w, h, channels) {
  const gray = new Uint8Array(w * h);
  const edges = new Uint8Array((h + 1) * w);
  const counts = new Int32Array(h + 1);
  for (let y = 0; y < h; y++) {
    let count = 0;
    for (let x = 0, i = y * w, j = i * channels + 1; x < w; x++, i++, j += channels) {
      const g = pixels[j];
      gray[i] = g;
      const e = y === 0 || Math.abs(g - gray[i - w]) >= EDGE ? 1 : 0;
      edges[i] = e;
      count += e;
    }
    counts[y] = count;
  }
  edges.fill(1, h * w);
  counts[h] = w;
  return { gray, w, h, edges, counts };
}

/**
 * [row, start, end) of the runs of edge pixels in `row` at least `minLen` long, gaps up to GAP closed.
 * The row is walked stretch by stretch (the typed array's own indexOf), not pixel by pixel.
 */
function rowRuns(edges, w, row, minLen, out) {
  const line = edges.subarray(row * w, (row + 1) * w);
  let first = -1; // the run being grown: its first and last edge pixel, and how many it has
  let last = -1;
  let count = 0;
  const close = () => {
    const length = last + 1 - first;
    // A border is an edge almost all along; a line of text is one only here and there.
    if (length >= minLen && count >= DENSITY * length) out.push([row, first, last + 1]);
  };
  for (let start = line.indexOf(1); start >= 0; ) {
    let end = line.indexOf(0, start); // this stretch of edge pixels is [start, end)
    if (end < 0) end = w;
    if (first >= 0 && start - last > GAP + 1) close();
    if (first < 0 || start - last > GAP + 1) {
      first = start;
      count = 0;
    }
    count += end - start;
    last = end - 1;
    start = end < w ? line.indexOf(1, end) : -1;
  }
  if (first >= 0) close();
}

function boxes(pic, sizes) {
  const { gray, w, h } = pic;
  const minW = Math.trunc(Math.min(...sizes.map(([sw, sh]) => Math.min(SCALE_MIN * sw, (MIN_HEIGHT * sw) / sh))));
  const tallest = sizes.map(([, sh]) => SCALE_MAX * sh + 8); // a frame: the shape at SCALE_MAX, and a border
  const maxH = Math.max(...tallest);
  const { edges, counts } = pic;
  const found = [];
  for (let row = 0; row <= h; row++) if (counts[row] >= minW) rowRuns(edges, w, row, minW, found);
  const runs = found.filter(([i, a, b]) => isLine(pic, i, a, b));
  const pairs = []; // [expected width, top edge, bottom edge, x0 or null, x1 or null, size]
  for (let k = 0; k < runs.length; k++) {
    const [top, a0, a1] = runs[k];
    for (let m = k + 1; m < runs.length; m++) {
      const [bottom, b0, b1] = runs[m];
      const height = bottom - top;
      if (height > maxH) break;
      const x0 = Math.max(a0, b0);
      const x1 = Math.min(a1, b1);
      const left = Math.abs(a0 - b0) <= END_TOL;
      const right = Math.abs(a1 - b1) <= END_TOL;
      if (height < MIN_HEIGHT * 0.9 || !(left || right)) continue;
      sizes.forEach((size, n) => {
        const expected = (height * size[0]) / size[1];
        if (height <= tallest[n] && x1 - x0 >= expected * (1 - ASPECT_TOL) - SIDE_TOL) {
          pairs.push([expected, top, bottom, left ? x0 : null, right ? x1 : null, size]);
        }
      });
    }
  }
  // Frames of the page's own lines first, one leaning on the picture's edge last; then the lowest frame,
  // the widest shape, the highest (Array.sort is stable, as Python's sorted; false sorts before true).
  const edge = ([, top, bottom, x0, x1]) => (top === 0 || bottom === h || x0 === 0 || x1 === w ? 1 : 0);
  pairs.sort((p, q) => edge(p) - edge(q) || p[2] - p[1] - (q[2] - q[1]) || q[0] - p[0] || p[1] - q[1]);
  let out = [];
  const refused = []; // frames found that are no captcha
  for (const [expected, top, bottom, x0, x1, size] of pairs) {
    const fromLeft = x0 !== null;
    const a = fromLeft ? x0 : pyRound(x1 - expected);
    const rough = [a, top, pyRound(expected), bottom - top];
    if (out.some(([box, other]) => overlap(rough, box) && !wider(size, other))) continue;
    const side = fromLeft ? x0 : x1;
    if (refused.some(([box, other]) => frames(top, bottom, side, fromLeft, size, box, other))) continue;
    const box = refine(pic, top, bottom, a, fromLeft, expected, size);
    if (box === null) continue;
    // A wider shape on a found frame's rows is that frame, read whole (locate.py says why).
    const clash = out.filter(([other]) => overlap(box, other));
    if (!clash.every(([found, other]) => wider(size, other) && sameRows(box, found))) continue;
    if (looksLikeCaptcha(pic, box)) out = [...out.filter((f) => !clash.includes(f)), [box, size]];
    else refused.push([box, size]);
  }
  const inside = out.filter(([box]) => !atEdge(box, w, h));
  return (inside.length ? inside : out).sort((p, q) => p[0][1] - q[0][1] || p[0][0] - q[0][0]);
}

/** locate.py's _frames(): a pair of lines (ending together at column side) is another pair of the frame box
 * found for shape found: on its border, within the band refine() searches, and ending at its side. */
function frames(top, bottom, side, fromLeft, size, [x, y, bw, bh], found) {
  const band = borderBand(bottom - top);
  const edge = fromLeft ? x : x + bw;
  return size[0] === found[0] && size[1] === found[1] && y - band <= top && top <= y
    && y + bh <= bottom && bottom <= y + bh + band && Math.abs(side - edge) <= band + SIDE_TOL;
}

/** locate.py's _band(): the rows either side of a pair's line where refine() looks for the captcha's edge. */
function borderBand(height) {
  return Math.max(2, pyRound(0.06 * height));
}

/** Shape a ([width, height]) is wider than shape b. */
function wider(a, b) {
  return a[0] * b[1] > b[0] * a[1];
}

/** Boxes a and b share their top and bottom, within SIDE_TOL. */
function sameRows(a, b) {
  return Math.abs(a[1] - b[1]) <= SIDE_TOL && Math.abs(a[1] + a[3] - b[1] - b[3]) <= SIDE_TOL;
}

/** The box touches the picture's edge: one of its sides may be the picture's, not a line of the page. */
function atEdge([x, y, bw, bh], w, h) {
  return x === 0 || y === 0 || x + bw === w || y + bh === h;
}

function overlap([ax, ay, aw, ah], [bx, by, bw, bh]) {
  return ax < bx + bw && bx < ax + aw && ay < by + bh && by < ay + ah;
}

/** Edge row i over [a, b) is a line: a flat border or page on one side; the picture's top and bottom are. */
function isLine(pic, i, a, b) {
  return i === 0 || i === pic.h || flat(pic.gray, (i - 1) * pic.w + a, 1, b - a) || flat(pic.gray, i * pic.w + a, 1, b - a);
}

/** Python's [start:stop] of a length-n axis, as [lo, hi) with lo <= hi. */
function slice(start, stop, n) {
  const at = (i) => (i < 0 ? Math.max(i + n, 0) : Math.min(i, n));
  const lo = at(start);
  return [lo, Math.max(at(stop), lo)];
}

/** Columns j in [x0, x1] where columns j-1 and j differ the same way along most of rows [y0, y1); the sides count. */
function verticalLines({ gray, w }, y0, y1, x0, x1) {
  const [lo, hi] = slice(Math.max(x0 - 1, 0), Math.min(x1 + 1, w), w);
  const lines = [];
  if (x0 <= 0) lines.push(0);
  const need = LINE * (y1 - y0);
  for (let j = lo + 1; j < hi; j++) {
    let up = 0;
    let down = 0;
    for (let y = y0, i = y0 * w + j; y < y1; y++, i += w) {
      const change = gray[i] - gray[i - 1];
      if (change >= EDGE) up++;
      else if (change <= -EDGE) down++;
    }
    if (Math.max(up, down) >= need) lines.push(j);
  }
  if (x1 >= w) lines.push(w);
  return lines.filter((j) => x0 <= j && j <= x1);
}

/** How many of row r's edge pixels lie in [a, b) (numpy's slice of that row). */
function rowCount({ edges, w }, r, a, b) {
  const [lo, hi] = slice(a, b, w);
  let count = 0;
  for (let i = r * w + lo, end = r * w + hi; i < end; i++) count += edges[i];
  return count;
}

/**
 * locate.py's _inner_line(): near a pair's `line` (`inward` 1 at the top, -1 at the bottom), the first strong
 * line from `band` rows inside it out to it; else, on outwards while rows change the way `line` does, the first
 * strong one; else the first line; null when none.
 */
function innerLine(pic, line, inward, band, a, b) {
  const { gray, w, h } = pic;
  const need = LINE * (b - a);
  const [c0, c1] = slice(a, b, w);
  const lo = Math.max(line - band, 0);
  const hi = Math.min(line + band, h);
  // [0 no line, 1 a line, 2 a strong one; 1 brighter, -1 darker, 0 the picture's edge]
  const kind = (i) => {
    if (rowCount(pic, i, a, b) < need) return [0, 0];
    if (i === 0 || i === h) return [1, 0];
    let up = 0;
    let down = 0;
    for (let k = i * w + c0, end = i * w + c1; k < end; k++) {
      const change = gray[k] - gray[k - w];
      if (change >= EDGE) up++;
      else if (change <= -EDGE) down++;
    }
    if (Math.max(up, down) < need) return [0, 0];
    const way = up > down ? 1 : -1;
    let strong = 0;
    for (let k = i * w + c0, end = i * w + c1; k < end; k++) if (way * (gray[k] - gray[k - w]) > FLAT_TOL) strong++;
    return [strong >= need ? 2 : 1, way];
  };
  const clip = (i) => Math.min(Math.max(i, lo), hi);
  let weak = null;
  let way = 0;
  for (let i = clip(line + inward * band); i !== line - inward; i -= inward) {
    const [strength, towards] = kind(i);
    way = towards;
    if (strength === 2) return i;
    if (strength && weak === null) weak = i;
  }
  for (let i = line - inward, stop = clip(line - inward * band) - inward; i !== stop; i -= inward) {
    const [strength, towards] = kind(i);
    if (!strength || !way || towards !== way) break;
    if (strength === 2) return i;
  }
  return weak;
}

/** locate.py's _refine(): the image inside its border, or null. */
function refine(pic, top, bottom, x0, fromLeft, outer, size) {
  const { gray, w, h } = pic;
  const height = bottom - top;
  const band = borderBand(height);
  const a = Math.max(x0, 0);
  const b = Math.min(pyRound(x0 + outer), w);
  const y0 = innerLine(pic, top, 1, band, a, b);
  if (y0 === null) return null;
  const y1 = innerLine(pic, bottom, -1, band, a, b);
  if (y1 === null) return null;
  const expected = ((y1 - y0) * size[0]) / size[1];
  const tol = ASPECT_TOL * expected + SIDE_TOL;
  const reach = band + SIDE_TOL + 1;
  // The far side first: most pairs of lines (text and rules across a screen) have none there.
  const end = fromLeft ? x0 : pyRound(x0 + outer);
  const far = fromLeft
    ? verticalLines(pic, y0, y1, pyRound(x0 + expected - tol), pyRound(x0 + expected + tol) + reach)
    : verticalLines(pic, y0, y1, pyRound(end - expected - tol) - reach, pyRound(end - expected + tol));
  if (far.length === 0) return null;
  const near = verticalLines(pic, y0, y1, end - reach, end + reach);
  const [left, right] = fromLeft ? [near, far] : [far, near];
  const pairs = [];
  for (const c0 of left) for (const c1 of right) if (c1 > c0) pairs.push([c0, c1]);
  // Python's stable sort on (distance from the expected width, -c0)
  const off = ([c0, c1]) => Math.abs(c1 - c0 - expected);
  pairs.sort((p, q) => off(p) - off(q) || q[0] - p[0]);
  for (const [c0, c1] of pairs) {
    if (off([c0, c1]) > tol) return null;
    if (frame(pic, y0, y1, c0, c1, size)) return [c0, y0, c1 - c0, y1 - y0];
  }
  return null;
}

/** locate.py's _frame(): rows [y0, y1) and columns [c0, c1) are a captcha's frame. */
function frame(pic, y0, y1, c0, c1, size) {
  const { gray, w, h } = pic;
  const aspect = ((y1 - y0) * size[0]) / ((c1 - c0) * size[1]);
  if (Math.abs(aspect - 1) > ASPECT_TOL) return false;
  if (!spans(pic, y0, y1, c0) || !spans(pic, y0, y1, c1)) return false;
  if (runsOn(pic, y0, y1, c1 + 2) || runsOn(pic, y0, y1, c0 - 4)) return false;
  if (y0 > 0 && !flat(gray, (y0 - 1) * w + c0, 1, c1 - c0)) return false;
  if (y1 < h && !flat(gray, y1 * w + c0, 1, c1 - c0)) return false;
  if (c0 > 0 && !flat(gray, y0 * w + c0 - 1, w, y1 - y0)) return false;
  if (c1 < w && !flat(gray, y0 * w + c1, w, y1 - y0)) return false;
  return true;
}

/** locate.py's _runs_on(): the top and bottom lines both go on through columns from..from+2. */
function runsOn({ gray, w, h }, y0, y1, from) {
  const cols = [from, from + 1, from + 2].filter((c) => c >= 0 && c < w);
  if (cols.length < 2 || y0 <= 0 || y1 >= h) return false;
  const count = (y) => cols.filter((c) => Math.abs(gray[y * w + c] - gray[(y - 1) * w + c]) > FLAT_TOL).length;
  return count(y0) >= 2 && count(y1) >= 2;
}

/** locate.py's _spans(): the vertical line at column c changes near both ends of rows [y0, y1). */
function spans({ gray, w }, y0, y1, c) {
  if (c <= 0 || c >= w) return true;
  const k = Math.max(3, pyRound(CORNER * (y1 - y0)));
  const need = CORNER_SHARE * k;
  const count = (from) => {
    let n = 0;
    for (let y = from; y < from + k; y++) if (Math.abs(gray[y * w + c] - gray[y * w + c - 1]) >= EDGE) n++;
    return n;
  };
  return count(y0) >= need && count(y1 - k) >= need;
}

const LEVELS = new Int32Array(256); // one histogram at a time, reused: no allocation per line

/** How many of each grey level `n` pixels from `start`, `step` apart, hold (in LEVELS). */
function histogram(gray, start, step, n) {
  const counts = LEVELS.fill(0);
  for (let k = 0, i = start; k < n; k++, i += step) counts[gray[i]]++;
  return counts;
}

/** The k-th smallest (from 0) level of a histogram. */
function kth(counts, k) {
  let seen = 0;
  for (let v = 0; v < 256; v++) {
    seen += counts[v];
    if (seen > k) return v;
  }
  return 255;
}

/** Most of a line within FLAT_TOL levels of its median, as int(np.median(line)) (a pair's mean, truncated). */
function flat(gray, start, step, n) {
  const counts = histogram(gray, start, step, n);
  const median = n % 2 ? kth(counts, (n - 1) / 2) : Math.trunc((kth(counts, n / 2 - 1) + kth(counts, n / 2)) / 2);
  let near = 0;
  for (let v = Math.max(median - FLAT_TOL, 0); v <= Math.min(median + FLAT_TOL, 255); v++) near += counts[v];
  return near >= FLAT_SHARE * n;
}

/** np.percentile(..., q) of a histogram of n levels (method 'linear'), with numpy's own arithmetic. */
function percentile(counts, n, q) {
  const virtual = (n - 1) * (q / 100);
  if (virtual >= n - 1) return kth(counts, n - 1);
  const previous = Math.floor(virtual);
  const gamma = virtual - previous;
  const a = kth(counts, previous);
  const b = kth(counts, previous + 1);
  return gamma >= 0.5 ? b - (b - a) * (1 - gamma) : a + (b - a) * gamma;
}

/** A plain light background with some dark ink: not a blank box, a photo, noise or a filled button. */
function looksLikeCaptcha({ gray, w }, [x, y, bw, bh]) {
  const counts = LEVELS.fill(0);
  for (let r = y; r < y + bh; r++) for (let i = r * w + x, end = i + bw; i < end; i++) counts[gray[i]]++;
  const n = bw * bh;
  const lo = percentile(counts, n, 2);
  const hi = percentile(counts, n, 90);
  if (hi - lo < 60) return false;
  const top = Math.trunc(hi);
  const middle = Math.floor((Math.trunc(lo) + top) / 2);
  let background = 0;
  let dark = 0;
  for (let v = 0; v < 256; v++) {
    if (Math.abs(v - top) <= BACKGROUND_TOL) background += counts[v];
    if (v < middle) dark += counts[v];
  }
  return background / n >= BACKGROUND_MIN && INK_MIN <= dark / n && dark / n <= INK_MAX;
}
