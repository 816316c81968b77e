// The page: take an image (file, drop, paste, example), pick a model, run it, show the answer.
// The same stages as solver.py: decode (the browser's image decoder), route and read (reading.js, the
// page's copy of solver.py's rules), with the model between. Everything model-specific (input size,
// alphabet, lengths, thresholds) comes from the catalogue site.py embeds in the page, so a new model
// needs no change here. A Gnuboard mp3 goes to audio.js instead, with the facts of voices.json: both
// are loaded after the first answer (build.mjs keeps audio.js out of the bundle, as dist/audio.js).
// A picture that is no model's size (a screenshot, a loose crop) goes to locate.js, the page's copy of
// locate.py, which finds the captcha in it: loaded after the first answer too, or at once for such a picture.
// The words come from strings.json, which site.py embeds in the page.
import {
  confident, fit, fitsLength, generalDoubts, inked, isGeneral, likeliest, preferGeneral, read, route,
} from './reading.js';
import { fetchModel, initBackend, loadModel, predict } from './runtime/index.js';

performance.mark('app-start');
const $ = (id) => document.getElementById(id);
const MAX_PIXELS = 3840 * 2160; // a 4K screenshot, and no more: no 200 MB arrays for a camera's photo
// The largest picture KCAPTCHA draws (solver.py's CAPTCHA_MAX): one no bigger in which no captcha is found may be a
// captcha of another configuration, and is read whole.
const CAPTCHA_MAX = [200, 112];
const CAPTCHA_MIN_WIDTH = 100; // solver.py's: nor narrower; a narrower picture is a shrunk view of one
const FILL_HEIGHT = 0.8; // solver.py's: a found captcha as wide as the picture and this share of its height fills it
const LANGUAGES = ['ko', 'en']; // strings.json's; the first the browser lists wins, else English

const state = {
  backend: null, // Promise, resolved once the wasm backend runs
  catalog: [], // site.py's catalogue entries (size, lengths, classes, thresholds), the first being Auto's first guess
  downloads: new Map(), // name -> Promise of model artifacts (fetched while the backend starts)
  models: new Map(), // name -> Promise of {model, meta}
  queue: Promise.resolve(), // images are solved one after another, in the order given
  strings: {}, // strings.json: language -> key -> text
  lang: 'en',
  audio: null, // Promise of {reader: audio.js, facts: voices.json}, loaded after the first answer or with an mp3
  locator: null, // Promise of locate.js, loaded after the first answer or with a picture that is no model's size
  said: ['loading', {}], // the status line's key and values in strings.json, to say again in another language
  found: null, // where the answer's captcha was found in its picture: {x, y, w, h, W, H, n}, or null
  shown: null, // the answer's {chars, entry, used: () => which model and why, verdict}, for its words in another language
  waiting: 0, // images given and not yet answered
};

/** A performance mark for the benchmark's phases, once per page load. */
function markOnce(name) {
  if (performance.getEntriesByName(name).length === 0) performance.mark(name);
}

/** The status line: strings.json's `key` with `vars`. */
function say(key, vars = {}) {
  state.said = [key, vars];
  $('status').textContent = t(key, vars);
}

function setState(name, key, vars) {
  document.body.dataset.state = name;
  if (key) say(key, vars);
}

/** An error the page words itself: strings.json's `key` with `vars`. */
class PageError extends Error {
  constructor(key, vars = {}) {
    super(t(key, vars));
    this.key = key;
    this.vars = vars;
  }
}

/** After an error, the last answer is gone from the answer box (it stays in the history). */
function fail(error) {
  console.error(error);
  clearAnswer();
  if (error instanceof PageError) setState('error', error.key, error.vars);
  else setState('error', 'unexpected', { message: error.message || String(error) });
}

function clearAnswer() {
  $('result').replaceChildren();
  delete $('result').dataset.text;
  state.shown = null;
  showDetails();
  $('copy').disabled = true;
  $('preview').hidden = true;
  hideCrop();
}

// -- language ---------------------------------------------------------------------------------------

/** strings.json's text for `key` in the page's language, with each {name} replaced by vars[name]. */
function t(key, vars = {}) {
  const text = state.strings[state.lang]?.[key] ?? state.strings.en?.[key] ?? vars.message ?? key;
  return text.replace(/\{(\w+)\}/g, (whole, name) => (name in vars ? String(vars[name]) : whole));
}

/** The visitor's saved choice, else the first of the browser's languages the page has, else English. */
function chooseLanguage() {
  const saved = localStorage.getItem('kcaptcha-language');
  if (LANGUAGES.includes(saved)) return saved;
  for (const tag of navigator.languages || [navigator.language]) {
    const lang = tag.toLowerCase().split('-')[0];
    if (LANGUAGES.includes(lang)) return lang;
  }
  return 'en';
}

/** Every element marked in index.html (and site.py's parts) into `lang`; the status line as it stands. */
function translate(lang) {
  state.lang = lang;
  document.documentElement.lang = lang;
  for (const el of document.querySelectorAll('[data-i18n]')) el.textContent = t(el.dataset.i18n);
  for (const el of document.querySelectorAll('[data-i18n-html]')) el.innerHTML = t(el.dataset.i18nHtml);
  for (const el of document.querySelectorAll('[data-i18n-label]')) {
    el.setAttribute('aria-label', t(el.dataset.i18nLabel, el.dataset));
  }
  for (const el of document.querySelectorAll('[data-i18n-content]')) el.content = t(el.dataset.i18nContent);
  for (const el of document.querySelectorAll('[data-lang]')) el.hidden = el.dataset.lang !== lang;
  showDetails();
  showFound();
  const other = LANGUAGES.find((l) => l !== lang);
  const button = $('language');
  button.lang = other;
  button.textContent = state.strings[other].language_name;
  say(...state.said);
}

// -- models -----------------------------------------------------------------------------------------

function download(name) {
  if (!state.downloads.has(name)) state.downloads.set(name, fetchModel(`models/${name}/model.json`));
  return state.downloads.get(name);
}

function getModel(name) {
  if (!state.models.has(name)) {
    const ready = Promise.all([download(name), state.backend]).then(async ([artifacts]) => {
      const loaded = loadModel(artifacts);
      markOnce(`model-ready:${name}`);
      // A model's first run sets up its kernels (~3x a later run): do that now unless an image waits.
      if (state.waiting === 0) {
        const { height, width } = loaded.meta;
        await predict(loaded.model, new Int32Array(height * width * 3), 1, height, width);
      }
      return loaded;
    });
    ready.catch(() => state.models.delete(name)); // let a later image try again
    state.models.set(name, ready);
  }
  return state.models.get(name);
}

/**
 * The catalogue entry for a picture: the one selected, or in Auto what reading.js's route() picks; and
 * `fits`, what route() picks with the selected model winning a tie (solver.py's _misfit()): when that
 * is another model, the picture is not the selected one's to read, and its answer is never sure.
 */
function chooseModel(width, height, rgb) {
  const chosen = $('model-select').value;
  if (chosen !== 'auto') {
    const entry = state.catalog.find((m) => m.name === chosen);
    // A general model was trained on every configuration at any size: no picture is another model's for it.
    const fits = isGeneral(entry) ? entry : route([entry, ...state.catalog.filter((m) => m !== entry)], width, height, rgb).entry;
    return { entry, fits, why: () => t('chosen') };
  }
  const { entry, ink } = route(state.catalog, width, height, rgb);
  const size = () => t('auto_size_used', { w: width, h: height });
  return { entry, fits: entry, why: ink === null ? size : () => size() + t('ink_used', { ink: ink.toFixed(0) }) };
}

// -- images -----------------------------------------------------------------------------------------

/** The browser's decode of an image file; rejects what is not an image, or is too large for a captcha. */
async function decodeImage(blob) {
  let bitmap;
  try {
    bitmap = await createImageBitmap(blob, { colorSpaceConversion: 'none', premultiplyAlpha: 'none' });
  } catch {
    throw new PageError('not_image', { name: blob.name || t('this_file') });
  }
  const { width, height } = bitmap; // (a closed bitmap is 0x0)
  if (width * height > MAX_PIXELS) {
    bitmap.close();
    throw new PageError('too_large', { w: width, h: height });
  }
  return bitmap;
}

/**
 * RGB integers of the `box` of a decoded image: drawImage's source rectangle, drawn at its own size (no
 * resampling: a resize to the model's size is reading.js's fit(), pixel for pixel as in Python).
 */
function pixels(bitmap, box) {
  const { width, height } = box;
  const canvas = new OffscreenCanvas(width, height);
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  ctx.drawImage(bitmap, box.x, box.y, width, height, 0, 0, width, height);
  const rgba = ctx.getImageData(0, 0, width, height).data;
  const rgb = new Int32Array(width * height * 3);
  for (let i = 0, j = 0; i < rgba.length; i += 4, j += 3) {
    rgb[j] = rgba[i];
    rgb[j + 1] = rgba[i + 1];
    rgb[j + 2] = rgba[i + 2];
  }
  return { rgb, width, height };
}

// -- solving ----------------------------------------------------------------------------------------

function solve(blob, label) {
  markOnce('image-given');
  const name = label || blob.name || t('pasted');
  if (document.body.dataset.state === 'loading') say('queued');
  state.waiting++;
  state.queue = state.queue
    .then(async () => ((await isAudio(blob)) ? runAudio(blob, name) : run(blob, name)))
    .catch(fail)
    .finally(() => state.waiting--);
  return state.queue;
}

async function run(blob, name) {
  const started = performance.now();
  const bitmap = await decodeImage(blob); // no runtime needed: overlaps with its loading
  // As solver.py: a model's size, or for a chosen general model any captcha-sized picture, is read whole.
  const chosen = state.catalog.find((m) => m.name === $('model-select').value);
  const captchaSized = bitmap.width <= CAPTCHA_MAX[0] && bitmap.height <= CAPTCHA_MAX[1];
  const bare =
    specialists().some((m) => m.width === bitmap.width && m.height === bitmap.height) ||
    (chosen !== undefined && isGeneral(chosen) && captchaSized);
  // A bare captcha is read whole; in any other picture, the captcha that locate.js finds (its box).
  let picture, found;
  try {
    ({ picture, found } = bare ? { picture: pixels(bitmap, entire(bitmap)), found: null } : await search(bitmap));
  } finally {
    bitmap.close();
  }
  // As solver.py: a picture read whole with no ink in it is no captcha (a blank one), not an invented answer.
  if (!found && !inked(picture.rgb, picture.width, picture.height)) {
    throw new PageError('no_captcha', { w: picture.width, h: picture.height });
  }
  await state.backend;
  setState('busy', 'reading', { name });
  // A found captcha is routed at the size it fits, as Python reads locate's crop at that size.
  const [w, h] = found ? found.size : [picture.width, picture.height];
  const shaped = found ? fit(picture.rgb, picture.width, picture.height, w, h) : picture.rgb;
  const { entry, fits, why } = chooseModel(w, h, shaped);
  let reading = await readWith(entry, fits, picture, found, [w, h, shaped], found ? found.shifts : [[[0, 0]]]);
  // As solver.py's _read: in Auto, the general model (loaded now, the first time) reads again what a specialist
  // read of a captcha found filling a captcha-sized picture (found.entire: another configuration's?), reading
  // that whole picture as it was trained to, or of a bare picture, unless its reading is confident() and made only
  // of symbols the model trusts (entry.trusted: gnuboard5's digits). Its answer stands when the specialist's best
  // path has a length the specialist never reads (surely wrong, mended or not), or else when preferGeneral() says
  // so (for a confident reading of a bare picture, only when the general model's holds a symbol the specialist does
  // not know); else the specialist's answer stands, unsure when generalDoubts() it.
  const general = state.catalog.find(isGeneral);
  const own = !found && confident(reading.verdict.score, reading.text, entry);
  const checked = !own || ![...reading.text].every((ch) => entry.trusted.includes(ch));
  const whole = found ? found.entire : checked && picture;
  if ($('model-select').value === 'auto' && general && entry !== general && whole) {
    const second = await readWith(general, general, whole, null, [whole.width, whole.height, whole.rgb], [[[0, 0]]]);
    const foreign = ![...second.text].every((ch) => entry.classes.includes(ch));
    const stands = preferGeneral(reading.text, second, second.data, second.steps, general) && (!own || foreign);
    if (!fitsLength(reading.unmended, entry) || stands) {
      [reading, found, picture] = [second, null, whole]; // read whole, as Python's Result.box None
    } else if (reading.verdict.sure && generalDoubts(reading.text, second, second.data, second.steps, general, entry)) {
      reading = { ...reading, verdict: { ...reading.verdict, sure: false, doubt: ['unsure_general', { text: second.text }] } };
    }
  }
  markOnce('first-answer');
  const { chars, verdict, meta, resized, modelMs } = reading;
  const scaled = () => (resized ? t('scaled_used', { w: picture.width, h: picture.height }) : '');
  const used = () => `${meta.name} (${reading.entry === entry ? why() : t('general_used')}${scaled()})`;
  const info = { blob, name, model: meta.name, used, modelMs, totalMs: performance.now() - started };
  render(chars, reading.entry, verdict, found ? { ...info, box: found.box, locateMs: found.ms } : info);
}

/**
 * One model's reading of a picture (fits: what route() picks with that model winning a tie). As solver.py's _run,
 * a captcha found at another size (stages of grid shifts after its own: locate.js's PHASES, then GRID) whose
 * reading scores below the model's sure_min is read at PHASES too, in one more run, and where those readings
 * disagree at GRID, in one more; then likeliest() picks among all its readings.
 * The verdict follows solver.py: the calibration saw only a model's own images at its own size (a general
 * model's: whole captchas of any size, stretched), so an answer is sure only there; the first reason that
 * applies is the one the page gives.
 */
async function readWith(entry, fits, picture, found, [w, h, shaped], shifts) {
  const { model, meta } = await getModel(entry.name);
  const resized = picture.width !== meta.width || picture.height !== meta.height;
  const toModel = (rgb) => (meta.width === w && meta.height === h ? rgb : fit(rgb, w, h, meta.width, meta.height));
  const readings = async (views) => {
    const batch = new Int32Array(views.length * meta.width * meta.height * 3);
    views.forEach((rgb, k) => batch.set(rgb, k * rgb.length));
    const { data, shape } = await predict(model, batch, views.length, meta.height, meta.width);
    const size = data.length / views.length;
    return views.map((_, k) => {
      const probs = data.subarray(k * size, (k + 1) * size);
      return { probs, steps: shape[1], answer: read(probs, shape[1], entry) };
    });
  };
  markOnce('inference-start');
  const t0 = performance.now();
  const all = await readings([toModel(shaped)]);
  const [, phases, grid] = shifts;
  const at = async (stage) => {
    const views = stage.map((shift) => toModel(fit(picture.rgb, picture.width, picture.height, w, h, shift)));
    all.push(...(await readings(views)));
  };
  if (phases && all[0].answer.score < entry.sure_min) {
    await at(phases);
    if (new Set(all.map((r) => r.answer.text)).size > 1) await at(grid);
  }
  const best = likeliest(all, entry);
  const modelMs = performance.now() - t0;
  const { probs: data, steps, answer: { text, chars, score, sure, unmended } } = best;
  const covered = isGeneral(entry) ? !found : !resized;
  const doubt =
    (fits !== entry && ['unsure_other', { model: fits.name }]) ||
    (!covered && ['unsure_resized']) ||
    (!sure && ['unsure_low', { min: exact(entry.sure_min) }]);
  const verdict = { score, sure: !doubt, doubt };
  return { entry, text, unmended, score, chars, meta, resized, modelMs, data, steps, verdict };
}

/** The catalogue's models of a captcha's own size: the shapes locate.js searches for (a general model's input is none). */
function specialists() {
  return state.catalog.filter((m) => !isGeneral(m));
}

/** The whole of a decoded picture, as a box. */
function entire(bitmap) {
  return { x: 0, y: 0, width: bitmap.width, height: bitmap.height };
}

/** locate.js, loaded once: after the first answer, or now for a picture that is no model's size. */
function locator() {
  if (!state.locator) {
    state.locator = import('./locate.js');
    state.locator.catch(() => (state.locator = null)); // a later picture tries again
  }
  return state.locator;
}

/**
 * The first captcha (top to bottom) that locate.js finds in a picture with the catalogue's sizes: its
 * pixels at their own size (picture), and found: {box, the size it fits, ms locating, entire: the whole picture
 * when it is captcha-sized and the captcha fills it (else null), the grid shifts to read it at}. The
 * preview shows it in the picture; a picture with none is an error, never an invented answer.
 */
async function search(bitmap) {
  const { width, height } = bitmap;
  const canvas = new OffscreenCanvas(width, height);
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  ctx.drawImage(bitmap, 0, 0);
  const image = ctx.getImageData(0, 0, width, height);
  const { locate, cut, shifts } = await locator();
  const t0 = performance.now();
  const all = locate(image.data, width, height, specialists().map((m) => [m.width, m.height]), 4);
  const ms = performance.now() - t0;
  if (all.length === 0) {
    // As solver.py: a picture no bigger than KCAPTCHA draws may be another configuration's captcha: read whole.
    if (width <= CAPTCHA_MAX[0] && height <= CAPTCHA_MAX[1]) return { picture: pixels(bitmap, entire(bitmap)), found: null };
    throw new PageError('no_captcha', { w: width, h: height });
  }
  const [{ box, size }] = all;
  showCrop(image, box, all.length);
  const picture = { rgb: cut(image.data, width, box, 4), width: box[2], height: box[3] };
  const captchaSized = width <= CAPTCHA_MAX[0] && height <= CAPTCHA_MAX[1];
  // As solver.py's Picture.entire: the captcha-sized picture that the captcha fills, which the general model may
  // read again whole (a loose crop's margins are no captcha's; a picture narrower than KCAPTCHA draws is a screen's
  // shrunk view of a captcha, not another configuration's).
  const fills = captchaSized && width >= CAPTCHA_MIN_WIDTH && box[2] >= width - 2 && box[3] >= FILL_HEIGHT * height;
  const whole = fills ? { rgb: cut(image.data, width, [0, 0, width, height], 4), width, height } : null;
  return { picture, found: { box, size, ms, entire: whole, shifts: shifts(box, size) } };
}

/** The crop that is read, with some of the picture round it and its box drawn, and where it was found. */
function showCrop(image, [x, y, w, h], count) {
  const margin = Math.round(h / 2);
  const x0 = Math.max(x - margin, 0);
  const y0 = Math.max(y - margin, 0);
  const x1 = Math.min(x + w + margin, image.width);
  const y1 = Math.min(y + h + margin, image.height);
  const canvas = $('crop');
  canvas.width = x1 - x0;
  canvas.height = y1 - y0;
  const ctx = canvas.getContext('2d');
  ctx.putImageData(image, -x0, -y0, x0, y0, x1 - x0, y1 - y0);
  ctx.strokeStyle = '#e11d48';
  ctx.lineWidth = Math.max(1, Math.round(h / 40));
  ctx.strokeRect(x - x0 - ctx.lineWidth / 2, y - y0 - ctx.lineWidth / 2, w + ctx.lineWidth, h + ctx.lineWidth);
  canvas.dataset.box = [x, y, w, h].join(',');
  canvas.hidden = false;
  state.found = { x, y, w, h, W: image.width, H: image.height, n: count };
  showFound();
}

function hideCrop() {
  $('crop').hidden = true;
  $('found').hidden = true;
  state.found = null;
}

/** Where the captcha was found, in the page's language (translate() calls it again). */
function showFound() {
  const el = $('found');
  if (!state.found) return;
  const { n } = state.found;
  el.textContent = t('found_box', state.found) + (n > 1 ? t('found_more', { n }) : '');
  el.hidden = false;
}

function render(chars, entry, verdict, info) {
  const text = chars.map((c) => c.ch).join('');
  const result = $('result');
  result.replaceChildren(
    ...chars.map((c) => {
      const span = document.createElement('span');
      span.textContent = c.ch;
      span.style.setProperty('--conf', c.prob.toFixed(3));
      if (c.prob < entry.low_confidence) span.className = 'unsure';
      return span;
    }),
  );
  result.dataset.text = text;
  state.shown = { chars, entry, used: info.used, verdict };
  showDetails();
  $('copy').disabled = text.length === 0;
  addHistory(info.name, text, info.model, verdict.sure);
  if (info.box) $('preview').hidden = true;
  else showPreview(info.blob);
  setState('done', text ? 'done' : 'done_empty', { text, model: info.modelMs.toFixed(1), total: info.totalMs.toFixed(0) });
  answered(text, verdict, info);
}

/** The answer's words: sure or not and why, each character's certainty, the unsure ones' alternatives, which model and why. */
function showDetails() {
  const { chars, entry, used, verdict } = state.shown || { chars: [], entry: null, used: () => '', verdict: null };
  const { sure, score, doubt } = verdict || {};
  $('verdict').textContent = verdict ? t(sure ? 'answer_sure' : 'answer_unsure', { score: exact(score), why: doubt && t(...doubt) }) : '';
  for (const el of [$('verdict'), $('result')]) el.dataset.sure = verdict ? sure : '';
  [...$('result').children].forEach((span, i) => (span.title = chars[i] ? t('sure', { p: percent(chars[i].prob) }) : ''));
  $('alternatives').replaceChildren(
    ...chars
      .map((c, i) => ({ ...c, i }))
      .filter((c) => c.prob < entry.low_confidence)
      .map((c) => {
        const li = document.createElement('li');
        const alts = c.alternatives.map((a) => `${a.ch || '∅'} ${percent(a.prob)}`).join(' · ');
        li.textContent = t('unsure_item', { i: c.i + 1, ch: c.ch, p: percent(c.prob) }) + (alts ? t('or_item', { alts }) : '');
        return li;
      }),
  );
  $('model-used').textContent = used();
}

/** For scripts driving the page (tests, benchmarks/web_load.py): one event per answer, with its score and sure. */
function answered(text, verdict, info) {
  const { score, sure } = verdict;
  document.dispatchEvent(new CustomEvent('kcaptcha-answer', { detail: { text, score, sure, ...info } }));
}

// -- spoken captchas (Gnuboard's mp3) ---------------------------------------------------------------

/** An mp3 by its type or name; a file of no known type (some drops and pastes) by its first bytes. */
async function isAudio(blob) {
  if (blob.type === 'audio/mpeg' || /\.mp3$/i.test(blob.name || '')) return true;
  if (blob.type) return false;
  const [{ reader }, head] = await Promise.all([audio(), blob.slice(0, 4).arrayBuffer()]);
  return reader.looksLikeMp3(new Uint8Array(head));
}

/** audio.js and voices.json (the clips' sizes and hashes), loaded once: after the first answer, or now. */
function audio() {
  if (!state.audio) {
    const facts = fetch('voices.json').then((response) => {
      if (!response.ok) throw new PageError('voices_failed', { status: response.status });
      return response.json();
    });
    state.audio = Promise.all([import('./audio.js'), facts]).then(([reader, voices]) => ({ reader, facts: voices }));
    state.audio.catch(() => (state.audio = null)); // a later mp3 tries again
  }
  return state.audio;
}

async function runAudio(blob, name) {
  const started = performance.now();
  const [bytes, { reader, facts }] = await Promise.all([blob.arrayBuffer().then((b) => new Uint8Array(b)), audio()]);
  let heard;
  try {
    heard = reader.readAudio(bytes, facts);
  } catch (error) {
    if (error instanceof reader.AudioError) throw new PageError(...audioMessage(error, bytes, name, facts, reader));
    throw error;
  }
  const { text, voice } = heard;
  const totalMs = performance.now() - started;
  const result = $('result');
  result.replaceChildren(...[...text].map((ch) => Object.assign(document.createElement('span'), { textContent: ch })));
  result.dataset.text = text;
  const verdict = { score: 1, sure: true }; // the clips match exactly, as in solver.py
  state.shown = { chars: [], entry: null, used: () => t('voice_used', { voice }), verdict };
  showDetails();
  $('copy').disabled = text.length === 0;
  $('preview').hidden = true;
  hideCrop();
  addHistory(name, text, voice, true);
  setState('done', 'done_audio', { text, voice, total: totalMs.toFixed(1) });
  answered(text, verdict, { name, model: voice, totalMs });
}

/** audio.js's message (English), or in another language the same finding from the error's fields: [key, vars]. */
function audioMessage(error, bytes, name, facts, reader) {
  const vars = { name, message: error.message, voice: error.voice, digits: error.digits, offset: error.offset,
    sets: Object.keys(facts.voices).join(', ') };
  if (bytes.length === 0) return ['audio_empty', vars];
  if (error.digits) return ['audio_partial', vars];
  return [reader.looksLikeMp3(bytes) ? 'audio_unknown' : 'audio_not_mp3', vars];
}

const percent = (p) => `${Math.round(p * 100)}%`;
/** A score (4 places) as a percentage with every place it has: 0.9739 is 97.39%, never rounded across sure_min. */
const exact = (p) => `${+(p * 100).toFixed(2)}%`;

function addHistory(name, text, model, sure) {
  const li = document.createElement('li');
  li.dataset.name = name;
  li.dataset.text = text;
  li.dataset.model = model;
  li.dataset.sure = sure;
  const code = document.createElement('code');
  code.textContent = text || '∅';
  li.append(code, ` ${name} · ${model}`);
  if (!sure) {
    const mark = document.createElement('mark'); // in words, not colour alone; translate() rewords it
    mark.textContent = t((mark.dataset.i18n = 'unsure_mark'));
    li.append(' ', mark);
  }
  $('history').prepend(li);
  $('history-section').hidden = false;
}

let previewUrl = null;
function showPreview(blob) {
  hideCrop();
  if (previewUrl) URL.revokeObjectURL(previewUrl);
  previewUrl = URL.createObjectURL(blob);
  const img = $('preview');
  img.src = previewUrl;
  img.hidden = false;
  img.onerror = () => {
    img.hidden = true;
  };
}

// -- inputs -----------------------------------------------------------------------------------------

function solveFiles(files) {
  const list = [...files];
  if (list.length === 0) return;
  for (const file of list) solve(file);
}

function imageFromClipboard(data) {
  for (const item of data ? data.items : []) {
    if (item.kind === 'file') return item.getAsFile();
  }
  return null;
}

function wireInputs() {
  const input = $('file-input');
  const take = () => {
    const files = [...input.files];
    input.value = ''; // so that picking the same file again is a change too
    solveFiles(files);
  };
  input.addEventListener('change', take);
  if (input.files.length) take(); // picked while this script was loading
  const zone = $('drop-zone');
  document.addEventListener('dragover', (e) => {
    e.preventDefault();
    zone.classList.add('over');
  });
  document.addEventListener('dragleave', () => zone.classList.remove('over'));
  document.addEventListener('drop', (e) => {
    e.preventDefault();
    zone.classList.remove('over');
    if (e.dataTransfer.files.length) solveFiles(e.dataTransfer.files);
    else fail(new PageError('nothing_dropped'));
  });
  document.addEventListener('paste', (e) => {
    const file = imageFromClipboard(e.clipboardData);
    if (!file) return fail(new PageError('no_clipboard_image'));
    e.preventDefault();
    solve(file, t('pasted'));
  });
  for (const button of $('examples').querySelectorAll('button')) {
    button.addEventListener('click', async () => {
      try {
        const response = await fetch(button.dataset.src);
        if (!response.ok) throw new PageError('example_failed', { src: button.dataset.src, status: response.status });
        solve(await response.blob(), button.dataset.src.split('/').pop());
      } catch (error) {
        fail(error);
      }
    });
  }
  $('copy').addEventListener('click', async () => {
    const text = $('result').dataset.text || '';
    try {
      await navigator.clipboard.writeText(text);
      $('copy').textContent = t('copied');
    } catch {
      const range = document.createRange(); // clipboard API refused: select it for Ctrl+C instead
      range.selectNodeContents($('result'));
      getSelection().removeAllRanges();
      getSelection().addRange(range);
      $('copy').textContent = t('press_copy');
    }
    setTimeout(() => ($('copy').textContent = t('copy')), 1500);
  });
  $('model-select').addEventListener('change', () => {
    const chosen = $('model-select').value;
    localStorage.setItem('kcaptcha-model', chosen);
    if (chosen !== 'auto') getModel(chosen).catch(fail);
  });
  $('language').addEventListener('click', () => {
    const lang = LANGUAGES.find((l) => l !== state.lang);
    localStorage.setItem('kcaptcha-language', lang);
    translate(lang);
  });
}

/** The model list that site.py embeds in the page: [{name, width, height, ...}], Auto's first guess first. */
function readCatalog() {
  const listing = $('models');
  if (!listing) throw new Error('this page has no model list: serve it with kcaptcha web or kcaptcha site build');
  const models = JSON.parse(listing.textContent).models;
  if (models.length === 0) throw new Error('no models are installed');
  return models;
}

/** The models into the selector, with the visitor's last choice; starts that model's loading. */
function fillSelector() {
  const select = $('model-select');
  for (const m of state.catalog) select.add(new Option(`${m.name} (${m.width}×${m.height})`, m.name));
  const saved = localStorage.getItem('kcaptcha-model');
  if (saved && [...select.options].some((o) => o.value === saved)) select.value = saved;
  getModel(select.value === 'auto' ? state.catalog[0].name : select.value).catch(() => {});
}

/** strings.json as site.py embeds it; the page is translated before anything else. */
function readStrings() {
  const listing = $('strings');
  if (!listing) throw new Error('this page has no strings: serve it with kcaptcha web or kcaptcha site build');
  state.strings = JSON.parse(listing.textContent);
  const lang = chooseLanguage();
  if (lang !== 'en') translate(lang); // index.html is in English already
}

async function start() {
  readStrings();
  state.catalog = readCatalog();
  // Auto's first model downloads first, so that its requests are not queued behind the runtime's start.
  download(state.catalog[0].name);
  const backend = initBackend(new URL('dist/', location.href).href, window.kcaptchaWasm);
  state.backend = backend.then(() => markOnce('runtime-ready'));
  wireInputs(); // solves a file picked before this script ran
  fillSelector();
  await state.backend;
  if (document.body.dataset.state === 'loading') setState('ready', 'ready');
}

/**
 * What is not on the way to the first answer, once it is in (or failed): the examples' pictures, and for
 * a dropped mp3 audio.js, the voice facts and a compile of audio.js's sha256 (warmUp), when the page is idle.
 */
function afterFirstAnswer() {
  for (const button of $('examples').querySelectorAll('button')) button.querySelector('img').src = button.dataset.src;
  const idle = window.requestIdleCallback || ((f) => setTimeout(f, 50));
  const warm = ({ reader }) => idle(() => {
    reader.warmUp();
    markOnce('audio-ready');
  });
  idle(() => audio().then(warm, () => {})); // an mp3 given later says what failed
  idle(() => locator().then(() => markOnce('locate-ready'), () => {})); // so is a screenshot's
}

start()
  .catch(fail)
  .finally(() => state.queue.finally(() => setTimeout(afterFirstAnswer)));
