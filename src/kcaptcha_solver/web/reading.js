// How the page routes a picture to a model and reads the model's answer: the same rules as solver.py's
// route() and read(), written once more because the page runs no Python. Pure functions of arrays and
// catalogue entries (no DOM, no runtime), so tests/test_reading.py runs them in Node on the cases of
// tests/fixtures/reading.json and checks solver.py against the same file. The thresholds come from each
// model's catalogue entry (site.py fills it from the model file), never from constants here; only the ink a
// picture must hold (inked) is the same for every model.

/** A confidence as reported: 4 places, as Python's round(p, 4) gives for a float32 probability. */
export const round4 = (p) => Math.round(p * 1e4) / 1e4;
const round6 = (x) => Math.round(x * 1e6) / 1e6;

/**
 * probs (Float32Array, [steps, K+1]) -> { text, chars: [{ ch, prob, alternatives: [{ ch, prob }] }],
 * score, sure }.
 * decoder "positions": step k is character k, up to the first "none". "ctc": runs of one symbol
 * collapse, "none" is the blank, and each character is read at the most confident step of its run.
 * A character below entry.low_confidence (after rounding) lists the other classes at least
 * entry.alternative_min likely (at most entry.alternatives_max, most likely first, ties by class);
 * ch "" is "none": the string may end there. score is stringScore() rounded to 4 places, and the answer
 * is sure when confident(): it reaches entry.sure_min (the model's calibrated threshold) with a length the
 * model reads. A CTC best path one character off those lengths is mend()-ed first; unmended is the best path's
 * own string.
 */
export function read(probs, steps, entry) {
  const { classes, decoder } = entry;
  const k = classes.length + 1;
  const none = k - 1;
  const rows = [];
  let best = [];
  for (let s = 0; s < steps; s++) {
    const row = probs.subarray(s * k, (s + 1) * k);
    let b = 0;
    for (let c = 1; c < k; c++) if (row[c] > row[b]) b = c;
    rows.push(row);
    best.push(b);
  }
  let unmended = null;
  if (decoder === 'ctc') {
    unmended = labelsOf(best, none).map((c) => classes[c]).join('');
    best = mend(best, rows, entry);
  }
  const picked = [];
  if (decoder === 'ctc') {
    for (let start = 0, end = 1; start < steps; start = end, end = start + 1) {
      while (end < steps && best[end] === best[start]) end++;
      if (best[start] === none) continue;
      let at = start;
      for (let s = start + 1; s < end; s++) if (rows[s][best[start]] > rows[at][best[start]]) at = s;
      picked.push(at);
    }
  } else {
    for (let s = 0; s < steps && best[s] !== none; s++) picked.push(s);
  }
  const least = Math.fround(entry.alternative_min); // compared in float32, as numpy compares the output
  const chars = picked.map((s) => {
    const prob = round4(rows[s][best[s]]);
    const alternatives =
      prob >= entry.low_confidence
        ? []
        : Array.from(rows[s], (p, c) => ({ c, p }))
            .filter((a) => a.c !== best[s] && a.p >= least)
            .sort((a, b) => b.p - a.p || a.c - b.c)
            .slice(0, entry.alternatives_max)
            .map((a) => ({ ch: a.c === none ? '' : classes[a.c], prob: round4(a.p) }));
    return { ch: classes[best[s]], prob, alternatives };
  });
  const labels = picked.map((s) => best[s]);
  const score = round4(stringScore(rows, labels, decoder, none));
  const text = chars.map((c) => c.ch).join('');
  return { text, chars, score, sure: confident(score, text, entry), unmended: unmended ?? text };
}

/**
 * solver.py's mend(): a CTC best path whose string is one character shorter or longer than the model reads ->
 * the path of the likeliest string (stringScore) of a length it reads among those one change to the path gives:
 * a step set to the blank or to its likeliest symbol, or one character's run set to the blank (the first of
 * equal scores, in that order). Any other path is returned as it is, as is this one when no change fits.
 */
function mend(best, rows, entry) {
  const none = entry.classes.length;
  const fits = (n) => n >= entry.length_min && n <= entry.length_max;
  const length = labelsOf(best, none).length;
  if (length < entry.length_min - 1 || length > entry.length_max + 1 || fits(length)) return best;
  const paths = [];
  best.forEach((b, t) => {
    let top = 0;
    for (let c = 1; c < none; c++) if (rows[t][c] > rows[t][top]) top = c;
    for (const k of [none, top]) if (k !== b) paths.push(best.map((x, s) => (s === t ? k : x)));
  });
  for (let start = 0, end = 1; start < best.length; start = end, end = start + 1) {
    while (end < best.length && best[end] === best[start]) end++;
    if (best[start] !== none) paths.push(best.map((x, s) => (s >= start && s < end ? none : x)));
  }
  const seen = new Set();
  let [chosen, top] = [best, -1];
  for (const path of paths) {
    const labels = labelsOf(path, none);
    const key = labels.join(',');
    if (!fits(labels.length) || seen.has(key)) continue;
    seen.add(key);
    const score = stringScore(rows, labels, 'ctc', none);
    if (score > top) [chosen, top] = [path, score];
  }
  return chosen;
}

/** A CTC path's string, as class indices: runs collapsed, blanks dropped. */
function labelsOf(path, none) {
  return path.filter((k, i) => k !== none && (i === 0 || k !== path[i - 1]));
}

/** As solver.py's confident(): the calibrated score, and a length the model reads (a CTC model can drop a
 * character with full confidence; no site draws a string of another length). */
export function confident(score, text, entry) {
  return score >= entry.sure_min && fitsLength(text, entry);
}

/** As solver.py's fits(): whether text has a length the model reads (a reading of another length is surely wrong). */
export function fitsLength(text, entry) {
  return text.length >= entry.length_min && text.length <= entry.length_max;
}

/**
 * The model's probability of the string `labels` (class indices), as solver.py's string_score():
 * "positions" multiplies every step's probability for its class, the characters then "none" to the
 * last step; "ctc" sums over every alignment that collapses to the string (the CTC forward
 * algorithm), so a doubled character read once scores low. score >= entry.sure_min is a sure answer.
 */
export function stringScore(rows, labels, decoder, none) {
  if (decoder !== 'ctc') {
    let p = 1;
    rows.forEach((row, s) => (p *= row[s < labels.length ? labels[s] : none]));
    return p;
  }
  const ext = [none];
  for (const c of labels) ext.push(c, none); // blank, l1, blank, l2, ..., blank
  let alpha = ext.map((_, i) => (i === 0 ? 1 : 0)); // before the first step, in the leading blank's state
  for (const row of rows) {
    alpha = ext.map((c, i) => {
      let a = alpha[i] + (i > 0 ? alpha[i - 1] : 0);
      if (i > 2 && c !== none && c !== ext[i - 2]) a += alpha[i - 2]; // skip a blank between two others
      return a * row[c];
    });
  }
  return alpha[ext.length - 1] + (ext.length > 1 ? alpha[ext.length - 2] : 0);
}

/**
 * solver.py's likeliest(): of one captcha's readings at several phases ({probs, steps, answer} each), the one whose
 * string is likeliest under all of them (the sum of their log stringScore(), the first read of equals), and of
 * those with that string the surest (the first of equals).
 */
export function likeliest(readings, entry) {
  const texts = [...new Set(readings.map((r) => r.answer.text))];
  const none = entry.classes.length;
  let [text] = texts;
  if (texts.length > 1) {
    const rowsOf = readings.map(({ probs, steps }) =>
      Array.from({ length: steps }, (_, s) => probs.subarray(s * (none + 1), (s + 1) * (none + 1))));
    let top = -Infinity;
    for (const candidate of texts) {
      const labels = [...candidate].map((ch) => entry.classes.indexOf(ch));
      let sum = 0;
      for (const rows of rowsOf) sum += Math.log(Math.max(stringScore(rows, labels, entry.decoder, none), 1e-300));
      if (sum > top) [top, text] = [sum, candidate];
    }
  }
  return readings.filter((r) => r.answer.text === text).reduce((best, r) => (r.answer.score > best.answer.score ? r : best));
}

/**
 * The catalogue entry for a picture of width x height (rgb: Int32Array or Uint8Array, HxWx3): one
 * trained on its size; else the general model (preset "any") when there is one, else the closest aspect
 * ratio (it is resized); between models of one size,
 * the one whose string length fits the ink width (entry.char_width px a character). Ties go to the
 * first in `entries`, which the page keeps in catalogue order, as solver.py does.
 * Returns { entry, ink }: ink is the scaled ink width in px when it decided, else null.
 */
export function route(entries, width, height, rgb) {
  const general = entries.find(isGeneral);
  if (general) {
    const exact = entries.filter((m) => !isGeneral(m) && m.width === width && m.height === height);
    entries = exact.length > 0 ? exact : [general];
  }
  const misfit = (m) => [
    m.width === width && m.height === height ? 0 : 1,
    round6(Math.abs(Math.log((m.width * height) / (m.height * width)))),
  ];
  const order = (a, b) => a[0] - b[0] || a[1] - b[1];
  const best = entries.map(misfit).reduce((a, b) => (order(b, a) < 0 ? b : a));
  const same = entries.filter((m) => order(misfit(m), best) === 0);
  if (same.length === 1) return { entry: same[0], ink: null };
  const ink = (inkWidth(rgb, width, height) * same[0].width) / width;
  const gap = (m) => Math.abs(ink - (m.char_width * (m.length_min + m.length_max)) / 2);
  return { entry: same.reduce((a, b) => (gap(b) < gap(a) ? b : a)), ink };
}

// solver.py's GENERAL_MIN, IMPLAUSIBLE, DOUBTFUL, DOUBTFUL_FOREIGN and DOUBTFUL_DROPPED (see prefer_general and
// general_doubts there).
const GENERAL_MIN = 0.5;
const IMPLAUSIBLE = 1e-4;
const DOUBTFUL = 1e-2;
const DOUBTFUL_FOREIGN = 5e-2;
const DOUBTFUL_DROPPED = 0.3;

/**
 * solver.py's prefer_general(): whether the general model's reading `second` (read()'s, of probs with `steps`
 * rows) replaces a preset model's answer `first` (a string): another string, likely enough, and `first`
 * implausible to the general model.
 */
export function preferGeneral(first, second, probs, steps, general) {
  if (second.text === first || second.score < GENERAL_MIN) return false;
  return plausibility(first, probs, steps, general) < IMPLAUSIBLE;
}

/**
 * solver.py's general_doubts(): whether the general model's reading `second` makes the sure answer `first` of the
 * preset model `entry` unsure: it reads another string and gives `first` less than DOUBTFUL; less than
 * DOUBTFUL_FOREIGN when its string holds a symbol `entry` does not know, or DOUBTFUL_DROPPED when that string less
 * those symbols is `first`.
 */
export function generalDoubts(first, second, probs, steps, general, entry) {
  if (second.text === first) return false;
  const known = [...second.text].filter((ch) => entry.classes.includes(ch)).join('');
  const limit = known === second.text ? DOUBTFUL : known === first ? DOUBTFUL_DROPPED : DOUBTFUL_FOREIGN;
  return plausibility(first, probs, steps, general) < limit;
}

/** solver.py's plausibility(): the general model's probability of `text` (0 for a symbol it does not know). */
function plausibility(text, probs, steps, general) {
  const k = general.classes.length + 1;
  const rows = Array.from({ length: steps }, (_, s) => probs.subarray(s * k, (s + 1) * k));
  const labels = [...text].map((ch) => general.classes.indexOf(ch));
  if (labels.includes(-1)) return 0;
  return stringScore(rows, labels, general.decoder, k - 1);
}

/** A general model reads any picture stretched to its input, which is no captcha's size (solver.py's ModelInfo.general). */
export const isGeneral = (entry) => entry.preset === 'any';

/** Columns from the first to the last with two or more dark pixels (darker than mid-range). */
export function inkWidth(rgb, width, height) {
  const gray = new Uint16Array(width * height); // the channels' sum, 3x the mean, in integers as in Python
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = 0; i < gray.length; i++) {
    const g = rgb[3 * i] + rgb[3 * i + 1] + rgb[3 * i + 2];
    gray[i] = g;
    if (g < lo) lo = g;
    if (g > hi) hi = g;
  }
  const twiceMid = lo + hi;
  let first = -1;
  let last = -1;
  for (let x = 0; x < width; x++) {
    let dark = 0;
    for (let y = 0; y < height; y++) if (2 * gray[y * width + x] < twiceMid) dark++;
    if (dark >= 2) {
      if (first < 0) first = x;
      last = x;
    }
  }
  return first < 0 ? 0 : last - first + 1;
}

// inputs.py's INK_LEVELS and INK_SHARE: the ink a picture read whole must hold to be a captcha (not the model's).
const INK_LEVELS = 96;
const INK_SHARE = 0.0025;

/**
 * Whether a picture (rgb, width x height x 3) has a captcha's ink, as inputs.py's inked(): of every other row and
 * column from the first, at least INK_SHARE of the pixels are more than INK_LEVELS (R + G + B) from their upper
 * median. A blank picture read whole is no captcha, not an empty or invented answer.
 */
export function inked(rgb, width, height) {
  const levels = new Int16Array(Math.ceil(height / 2) * Math.ceil(width / 2));
  for (let y = 0, n = 0; y < height; y += 2) {
    for (let x = 0; x < width; x += 2, n++) {
      const i = 3 * (y * width + x);
      levels[n] = rgb[i] + rgb[i + 1] + rgb[i + 2];
    }
  }
  levels.sort(); // numerically, in place: the count below does not depend on the order
  const median = levels[levels.length >> 1];
  let ink = 0;
  for (const v of levels) if (Math.abs(v - median) > INK_LEVELS) ink++;
  return ink >= INK_SHARE * levels.length;
}

/**
 * rgb (width x height x 3) resized to toWidth x toHeight by nearest neighbour, pixel for pixel as
 * inputs.py's fit() (Pillow's NEAREST): source column (row) i is the floor of a running sum that starts
 * at half the scale and adds the scale once per pixel. Done here rather than by drawImage, whose
 * choice between two source pixels at an exact boundary is the browser's own. shift ([x, y], source
 * pixels) starts the sums that much later: another phase of the grid (locate.js's PHASES), kept inside
 * the source, as inputs.py's nearest().
 */
export function fit(rgb, width, height, toWidth, toHeight, [dx, dy] = [0, 0]) {
  const cols = nearest(width, toWidth, dx);
  const rows = nearest(height, toHeight, dy);
  const out = new Int32Array(toWidth * toHeight * 3);
  for (let y = 0, o = 0; y < toHeight; y++) {
    for (let x = 0; x < toWidth; x++, o += 3) {
      const i = 3 * (rows[y] * width + cols[x]);
      out[o] = rgb[i];
      out[o + 1] = rgb[i + 1];
      out[o + 2] = rgb[i + 2];
    }
  }
  return out;
}

function nearest(from, to, shift) {
  const scale = from / to;
  const index = new Int32Array(to);
  for (let i = 0, at = scale * 0.5 + shift; i < to; i++, at += scale) index[i] = Math.min(Math.max(Math.floor(at), 0), from - 1);
  return index;
}
