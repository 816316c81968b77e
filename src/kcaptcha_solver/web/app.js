// The page: take an image (file, drop, paste, example), pick a model, run it, show the answer.
// Everything model-specific (input size, alphabet, lengths) comes from the model list in the page and each
// model.json's metadata, so a new model needs no change here.
import { fetchModel, initBackend, loadModel, predict } from './runtime/index.js';

performance.mark('app-start');
const $ = (id) => document.getElementById(id);
const UNSURE = 0.9; // below this a character is shaded and its alternatives listed
const CHAR_WIDTH = 18; // px a KCAPTCHA glyph advances (solver.py's CHAR_WIDTH): ink width -> length
const MAX_PIXELS = 1_000_000; // as solver.py: room for a screenshot, no 100 MB arrays for a photo

const state = {
  backend: null, // Promise, resolved once the wasm backend runs
  catalog: [], // [{name, width, height, length_min, length_max}], the first being Auto's first guess
  downloads: new Map(), // name -> Promise of model artifacts (fetched while the backend starts)
  models: new Map(), // name -> Promise of {model, meta}
  queue: Promise.resolve(), // images are solved one after another, in the order given
  waiting: 0, // images given and not yet answered
};

/** A performance mark for the benchmark's phases, once per page load. */
function markOnce(name) {
  if (performance.getEntriesByName(name).length === 0) performance.mark(name);
}

function setState(name, message) {
  document.body.dataset.state = name;
  if (message !== undefined) $('status').textContent = message;
}

function fail(error) {
  console.error(error);
  setState('error', error.message || String(error));
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
 * The model for an image: the one selected, or in Auto the one trained on this size (else the closest
 * aspect ratio, scaled), told apart by text width when two share a size. Same rule as solver.py.
 */
function chooseModel(width, height, rgb) {
  const chosen = $('model-select').value;
  if (chosen !== 'auto') return { entry: state.catalog.find((m) => m.name === chosen), why: 'chosen' };
  let fits = state.catalog.filter((m) => m.width === width && m.height === height);
  if (fits.length === 0) {
    const off = (m) => Math.abs(Math.log(m.width / m.height / (width / height)));
    const best = Math.min(...state.catalog.map(off));
    fits = state.catalog.filter((m) => off(m) === best);
  }
  const size = `auto: ${width}×${height}`;
  if (fits.length === 1) return { entry: fits[0], why: size };
  const ink = (inkWidth(rgb, width, height) * fits[0].width) / width;
  const gap = (m) => Math.abs(ink - (CHAR_WIDTH * (m.length_min + m.length_max)) / 2);
  const entry = fits.reduce((a, b) => (gap(b) < gap(a) ? b : a));
  return { entry, why: `${size}, text ${ink.toFixed(0)} px wide` };
}

/** Columns from the first to the last with two or more dark pixels (darker than mid-range). */
function inkWidth(rgb, width, height) {
  const gray = new Float32Array(width * height);
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = 0; i < gray.length; i++) {
    const g = (rgb[3 * i] + rgb[3 * i + 1] + rgb[3 * i + 2]) / 3;
    gray[i] = g;
    if (g < lo) lo = g;
    if (g > hi) hi = g;
  }
  const mid = (lo + hi) / 2;
  let first = -1;
  let last = -1;
  for (let x = 0; x < width; x++) {
    let dark = 0;
    for (let y = 0; y < height; y++) if (gray[y * width + x] < mid) dark++;
    if (dark >= 2) {
      if (first < 0) first = x;
      last = x;
    }
  }
  return first < 0 ? 0 : last - first + 1;
}

// -- images -----------------------------------------------------------------------------------------

/** RGB integers of an image file, at its own size or scaled to `size`; rejects what is not an image. */
async function readPixels(blob, size) {
  let bitmap;
  try {
    bitmap = await createImageBitmap(blob, { colorSpaceConversion: 'none', premultiplyAlpha: 'none' });
  } catch {
    throw new Error(`${blob.name || 'This file'} is not an image this browser can read.`);
  }
  if (bitmap.width * bitmap.height > MAX_PIXELS) {
    bitmap.close();
    throw new Error(`The image is ${bitmap.width}×${bitmap.height}: too large for a captcha.`);
  }
  const width = size ? size.width : bitmap.width;
  const height = size ? size.height : bitmap.height;
  const canvas = new OffscreenCanvas(width, height);
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  ctx.drawImage(bitmap, 0, 0, width, height);
  const natural = { width: bitmap.width, height: bitmap.height };
  bitmap.close();
  const rgba = ctx.getImageData(0, 0, width, height).data;
  const rgb = new Int32Array(width * height * 3);
  for (let i = 0, j = 0; i < rgba.length; i += 4, j += 3) {
    rgb[j] = rgba[i];
    rgb[j + 1] = rgba[i + 1];
    rgb[j + 2] = rgba[i + 2];
  }
  return { rgb, width, height, natural };
}

/**
 * probs [steps, K+1] -> characters, as solver.py reads them. decoder "positions": step k is character
 * k, up to the first "none". "ctc": runs of one symbol collapse, "none" is the blank, and each
 * character is read at the most confident step of its run. Alternatives: the next best classes.
 */
function decode(data, steps, classes, decoder) {
  const k = classes.length + 1;
  const none = k - 1;
  const rows = [];
  const best = [];
  for (let s = 0; s < steps; s++) {
    const row = data.subarray(s * k, (s + 1) * k);
    let b = 0;
    for (let c = 1; c < k; c++) if (row[c] > row[b]) b = c;
    rows.push(row);
    best.push(b);
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
  return picked.map((s) => ({
    ch: classes[best[s]],
    prob: rows[s][best[s]],
    alternatives: Array.from(rows[s], (prob, c) => ({ ch: c === none ? '∅' : classes[c], prob, c }))
      .filter((a) => a.c !== best[s] && a.prob >= 0.02)
      .sort((a, b) => b.prob - a.prob)
      .slice(0, 3),
  }));
}

// -- solving ----------------------------------------------------------------------------------------

function solve(blob, label) {
  markOnce('image-given');
  const name = label || blob.name || 'pasted image';
  if (document.body.dataset.state === 'loading') {
    $('status').textContent = 'Got it: solving as soon as the solver has loaded…';
  }
  state.waiting++;
  state.queue = state.queue
    .then(() => run(blob, name))
    .catch(fail)
    .finally(() => state.waiting--);
  return state.queue;
}

async function run(blob, name) {
  const started = performance.now();
  let image = await readPixels(blob); // no runtime needed: overlaps with its loading
  await state.backend;
  setState('busy', `Reading ${name}…`);
  const { entry, why } = chooseModel(image.width, image.height, image.rgb);
  const { model, meta } = await getModel(entry.name);
  let scaled = '';
  if (image.width !== meta.width || image.height !== meta.height) {
    scaled = `, scaled from ${image.width}×${image.height}`;
    image = await readPixels(blob, meta);
  }
  markOnce('inference-start');
  const t0 = performance.now();
  const { data, shape } = await predict(model, image.rgb, 1, meta.height, meta.width);
  const modelMs = performance.now() - t0;
  const chars = decode(data, shape[1], meta.classes, meta.decoder || 'positions');
  markOnce('first-answer');
  render(chars, { blob, name, model: meta.name, why: why + scaled, modelMs, totalMs: performance.now() - started });
}

function render(chars, info) {
  const text = chars.map((c) => c.ch).join('');
  const result = $('result');
  result.replaceChildren(
    ...chars.map((c) => {
      const span = document.createElement('span');
      span.textContent = c.ch;
      span.style.setProperty('--conf', c.prob.toFixed(3));
      span.title = `${percent(c.prob)} sure`;
      if (c.prob < UNSURE) span.className = 'unsure';
      return span;
    }),
  );
  result.dataset.text = text;
  $('alternatives').replaceChildren(
    ...chars
      .map((c, i) => ({ ...c, i }))
      .filter((c) => c.prob < UNSURE)
      .map((c) => {
        const li = document.createElement('li');
        const alts = c.alternatives.map((a) => `${a.ch} ${percent(a.prob)}`).join(' · ');
        li.textContent = `#${c.i + 1}: ${c.ch} ${percent(c.prob)}${alts ? ` · or ${alts}` : ''}`;
        return li;
      }),
  );
  $('copy').disabled = text.length === 0;
  $('model-used').textContent = `${info.model} (${info.why})`;
  addHistory(info.name, text, info.model);
  showPreview(info.blob);
  const answer = text ? `“${text}”` : 'no characters';
  setState('done', `${answer}: model ${info.modelMs.toFixed(1)} ms, ${info.totalMs.toFixed(0)} ms in all.`);
  // For scripts driving the page (tests, benchmarks/web_load.py): one event per answer.
  document.dispatchEvent(new CustomEvent('kcaptcha-answer', { detail: { text, ...info } }));
}

const percent = (p) => `${Math.round(p * 100)}%`;

function addHistory(name, text, model) {
  const li = document.createElement('li');
  li.dataset.name = name;
  li.dataset.text = text;
  li.dataset.model = model;
  const code = document.createElement('code');
  code.textContent = text || '∅';
  li.append(code, ` ${name} · ${model}`);
  $('history').prepend(li);
  $('history-section').hidden = false;
}

let previewUrl = null;
function showPreview(blob) {
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
    else fail(new Error('Nothing to read: drop an image file.'));
  });
  document.addEventListener('paste', (e) => {
    const file = imageFromClipboard(e.clipboardData);
    if (!file) return fail(new Error('The clipboard holds no image. Copy the captcha image, then paste.'));
    e.preventDefault();
    solve(file, 'pasted image');
  });
  for (const button of $('examples').querySelectorAll('button')) {
    button.addEventListener('click', async () => {
      try {
        const response = await fetch(button.dataset.src);
        if (!response.ok) throw new Error(`could not load ${button.dataset.src} (${response.status})`);
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
      $('copy').textContent = 'Copied';
    } catch {
      const range = document.createRange(); // clipboard API refused: select it for Ctrl+C instead
      range.selectNodeContents($('result'));
      getSelection().removeAllRanges();
      getSelection().addRange(range);
      $('copy').textContent = 'Press Ctrl+C';
    }
    setTimeout(() => ($('copy').textContent = 'Copy'), 1500);
  });
  $('model-select').addEventListener('change', () => {
    const chosen = $('model-select').value;
    localStorage.setItem('kcaptcha-model', chosen);
    if (chosen !== 'auto') getModel(chosen).catch(fail);
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

async function start() {
  state.catalog = readCatalog();
  // Auto's first model downloads first, so that its requests are not queued behind the runtime's start.
  download(state.catalog[0].name);
  const backend = initBackend(new URL('dist/', location.href).href, window.kcaptchaWasm);
  state.backend = backend.then(() => markOnce('runtime-ready'));
  wireInputs(); // solves a file picked before this script ran
  fillSelector();
  await state.backend;
  if (document.body.dataset.state === 'loading') setState('ready', 'Ready: give me a captcha image.');
}

/** The examples' pictures are fetched after the first answer (or failure): they are not on the way to it. */
function showThumbnails() {
  for (const button of $('examples').querySelectorAll('button')) button.querySelector('img').src = button.dataset.src;
}

start()
  .catch(fail)
  .finally(() => state.queue.finally(() => setTimeout(showThumbnails)));
