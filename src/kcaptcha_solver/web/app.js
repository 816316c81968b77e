// The page: take an image (file, drop, paste, example), pick a model, run it, show the answer.
// The same stages as solver.py: decode (the browser's image decoder), route and read (reading.js, the
// page's copy of solver.py's rules), with the model between. Everything model-specific (input size,
// alphabet, lengths, thresholds) comes from the catalogue site.py embeds in the page, so a new model
// needs no change here.
import { fit, read, route } from './reading.js';
import { fetchModel, initBackend, loadModel, predict } from './runtime/index.js';

performance.mark('app-start');
const $ = (id) => document.getElementById(id);
const MAX_PIXELS = 1_000_000; // as inputs.py: room for a screenshot, no 100 MB arrays for a photo

const state = {
  backend: null, // Promise, resolved once the wasm backend runs
  catalog: [], // site.py's catalogue entries (size, lengths, classes, thresholds), the first being Auto's first guess
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

/** The catalogue entry for a picture: the one selected, or in Auto what reading.js's route() picks. */
function chooseModel(width, height, rgb) {
  const chosen = $('model-select').value;
  if (chosen !== 'auto') return { entry: state.catalog.find((m) => m.name === chosen), why: 'chosen' };
  const { entry, ink } = route(state.catalog, width, height, rgb);
  const size = `auto: ${width}×${height}`;
  return { entry, why: ink === null ? size : `${size}, text ${ink.toFixed(0)} px wide` };
}

// -- images -----------------------------------------------------------------------------------------

/** The browser's decode of an image file; rejects what is not an image, or is too large for a captcha. */
async function decodeImage(blob) {
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
  const bitmap = await decodeImage(blob); // no runtime needed: overlaps with its loading
  const picture = pixels(bitmap, { x: 0, y: 0, width: bitmap.width, height: bitmap.height }); // the whole input
  bitmap.close();
  await state.backend;
  setState('busy', `Reading ${name}…`);
  const { entry, why } = chooseModel(picture.width, picture.height, picture.rgb);
  const { model, meta } = await getModel(entry.name);
  const resized = picture.width !== meta.width || picture.height !== meta.height;
  const rgb = resized ? fit(picture.rgb, picture.width, picture.height, meta.width, meta.height) : picture.rgb;
  markOnce('inference-start');
  const t0 = performance.now();
  const { data, shape } = await predict(model, rgb, 1, meta.height, meta.width);
  const modelMs = performance.now() - t0;
  const { chars } = read(data, shape[1], entry);
  markOnce('first-answer');
  const scaled = resized ? `, scaled from ${picture.width}×${picture.height}` : '';
  render(chars, entry, { blob, name, model: meta.name, why: why + scaled, modelMs, totalMs: performance.now() - started });
}

function render(chars, entry, info) {
  const text = chars.map((c) => c.ch).join('');
  const result = $('result');
  result.replaceChildren(
    ...chars.map((c) => {
      const span = document.createElement('span');
      span.textContent = c.ch;
      span.style.setProperty('--conf', c.prob.toFixed(3));
      span.title = `${percent(c.prob)} sure`;
      if (c.prob < entry.low_confidence) span.className = 'unsure';
      return span;
    }),
  );
  result.dataset.text = text;
  $('alternatives').replaceChildren(
    ...chars
      .map((c, i) => ({ ...c, i }))
      .filter((c) => c.prob < entry.low_confidence)
      .map((c) => {
        const li = document.createElement('li');
        const alts = c.alternatives.map((a) => `${a.ch || '∅'} ${percent(a.prob)}`).join(' · ');
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
