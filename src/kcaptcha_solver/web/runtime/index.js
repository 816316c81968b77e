// The page's whole runtime: the WebAssembly kernels of @tensorflow/tfjs-backend-wasm (XNNPACK), called
// directly, and a small executor for the TF.js graph models that kcaptcha_solver/tfjs.py writes. The
// executor knows ops, not architectures: any graph made of the ops in OPS runs, and a new model is only a
// new file. tfjs-core's engine (tensor bookkeeping, kernel registry, flags) and the Emscripten glue
// script are left out: six ops need none of the first, and the kernels import only seven small
// functions from the second (SYSTEM below), so the script is a fraction of the size and starts sooner.
// The kernels' C entry points are internal to tfjs-backend-wasm: its version is pinned, and
// tests/test_tfjs.py runs this file against PyTorch.

// The smallest module that uses a SIMD instruction (a function returning v128.const 0): the browser
// validates it only if it runs WebAssembly SIMD, and then gets the faster build of the kernels.
const SIMD_PROBE = new Uint8Array([
  0, 97, 115, 109, 1, 0, 0, 0, // magic, version
  1, 5, 1, 96, 0, 1, 123, // types: () -> v128
  3, 2, 1, 0, // one function of type 0
  10, 22, 1, 20, 0, 253, 12, ...new Array(16).fill(0), 11, // its body: v128.const 0, end
]);

// Must match FusableActivation in tfjs-backend-wasm (cc/fusable_activations.h).
const ACTIVATIONS = { linear: 0, relu: 1 };

let wasm = null; // the kernels' exports, once started
let memory = null; // their memory (it may grow: make typed-array views at the time of use)
let nextId = 1; // tensor ids the kernels know the buffers by

const bytes = () => new Uint8Array(memory.buffer);
const MAX_MEMORY = 2 ** 31; // bytes the kernels may grow their memory to

/**
 * What the kernels import from their C library: memory growth and copies, abort, and stdout/stderr,
 * which only XNNPACK's error messages use (shown as warnings). Files cannot be closed or sought.
 */
const SYSTEM = {
  env: {
    abort: () => {
      throw new Error('the WebAssembly kernels aborted');
    },
    emscripten_memcpy_big: (to, from, count) => bytes().copyWithin(to, from, from + count),
    emscripten_get_heap_max: () => MAX_MEMORY,
    emscripten_resize_heap: (wanted) => {
      const size = memory.buffer.byteLength;
      const target = Math.min(MAX_MEMORY, Math.max(wanted >>> 0, size * 2)); // fewer, larger steps
      try {
        memory.grow(Math.ceil((target - size) / 65536));
        return 1;
      } catch {
        return 0;
      }
    },
  },
  wasi_snapshot_preview1: {
    fd_write: (fd, iov, count, written) => {
      const words = new Uint32Array(memory.buffer);
      let text = '';
      let total = 0;
      for (let i = 0; i < count; i++) {
        const [start, length] = [words[(iov >> 2) + 2 * i], words[(iov >> 2) + 2 * i + 1]];
        text += new TextDecoder().decode(bytes().slice(start, start + length));
        total += length;
      }
      if (text.trim()) console.warn(`tfjs-backend-wasm (fd ${fd}): ${text.trim()}`);
      words[written >> 2] = total;
      return 0;
    },
    fd_close: () => 52, // WASI ENOSYS
    fd_seek: () => 70, // WASI ESPIPE
  },
};

/**
 * Start the wasm kernels; `wasmDir` is the URL folder holding the .wasm files (ends with '/').
 * `compiled` may promise the SIMD build as a compiled WebAssembly.Module (index.html starts that while
 * the page parses, before this script runs); without it, or when it gives null, the right build is
 * fetched here.
 */
export async function initBackend(wasmDir, compiled = null) {
  if (wasm) return;
  if (typeof WebAssembly !== 'object') throw new Error('WebAssembly is not available in this browser');
  let module = await Promise.resolve(compiled).catch(() => null);
  if (!module) {
    const file = WebAssembly.validate(SIMD_PROBE) ? 'tfjs-backend-wasm-simd.wasm' : 'tfjs-backend-wasm.wasm';
    module = await compileWasm(wasmDir + file);
  }
  const instance = await WebAssembly.instantiate(module, SYSTEM);
  memory = instance.exports.memory;
  instance.exports.__wasm_call_ctors(); // the C++ static constructors, as the Emscripten glue runs them
  instance.exports.init();
  wasm = instance.exports;
}

/** Compile while downloading where the server says application/wasm; after downloading otherwise. */
async function compileWasm(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`could not start the WebAssembly kernels (${url}: HTTP ${response.status})`);
  const streams = response.headers.get('content-type') === 'application/wasm' && WebAssembly.compileStreaming;
  return streams ? WebAssembly.compileStreaming(response) : WebAssembly.compile(await response.arrayBuffer());
}

async function fetchOk(url, as) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`could not load ${url} (HTTP ${response.status})`);
  return response[as]();
}

/** Download a model: its model.json and weight files. Needs no backend, so it can run while the wasm starts. */
export async function fetchModel(url) {
  const base = new URL(url, location.href);
  const doc = await fetchOk(base, 'json');
  const paths = doc.weightsManifest.flatMap((group) => group.paths);
  const buffers = await Promise.all(paths.map((path) => fetchOk(new URL(path, base), 'arrayBuffer')));
  return { doc, buffers };
}

// -- tensors: float32 buffers in the module's memory, known to the kernels by id -----------------------

const sizeOf = (shape) => shape.reduce((a, b) => a * b, 1);

/** A float32 tensor of `shape` in wasm memory, filled with `values` when given. */
function allocate(shape, values) {
  const size = sizeOf(shape);
  const ptr = wasm.malloc(size * 4);
  const id = nextId++;
  wasm.register_tensor(id, size, ptr);
  if (values) new Float32Array(memory.buffer, ptr, size).set(values); // after malloc: memory may have grown
  return { id, ptr, size, shape, owner: true };
}

function release(t) {
  if (!t.owner) return;
  wasm.free(t.ptr);
  wasm.dispose_data(t.id);
}

// -- weights ----------------------------------------------------------------------------------------

/** float32 values of IEEE half-precision numbers: natively where the browser has Float16Array. */
function halfToFloat(buffer) {
  return typeof Float16Array === 'function' ? new Float32Array(new Float16Array(buffer)) : halfBitsToFloat(buffer);
}

/** The same for browsers without Float16Array: the sign, exponent and fraction bits moved over. */
function halfBitsToFloat(buffer) {
  const halves = new Uint16Array(buffer);
  const bits = new Uint32Array(halves.length);
  for (let i = 0; i < halves.length; i++) {
    const h = halves[i];
    const sign = (h & 0x8000) << 16;
    const exponent = h & 0x7c00;
    const fraction = h & 0x03ff;
    if (exponent === 0x7c00) bits[i] = sign | 0x7f800000 | (fraction << 13); // inf, NaN
    else if (exponent !== 0) bits[i] = sign | ((exponent + 0x1c000) << 13) | (fraction << 13);
    else if (fraction === 0) bits[i] = sign; // +-0
    else bits[i] = sign | subnormal(fraction);
  }
  return new Float32Array(bits.buffer);
}

/** float32 bits (no sign) of a half subnormal: fraction * 2^-24. */
function subnormal(fraction) {
  let shift = 0;
  while ((fraction & 0x400) === 0) {
    fraction <<= 1;
    shift++;
  }
  return ((113 - shift) << 23) | ((fraction & 0x3ff) << 13);
}

const BYTES = { float32: 4, int32: 4, float16: 2 };
const READ = {
  float32: (buffer) => new Float32Array(buffer),
  int32: (buffer) => new Int32Array(buffer),
  float16: halfToFloat,
};

/** name -> {values, shape, dtype} from the manifest: weights lie back to back over the groups' files. */
function readWeights(manifest, buffers) {
  const all = new Uint8Array(buffers.reduce((n, b) => n + b.byteLength, 0));
  buffers.reduce((offset, b) => (all.set(new Uint8Array(b), offset), offset + b.byteLength), 0);
  const weights = new Map();
  let offset = 0;
  for (const spec of manifest.flatMap((group) => group.weights)) {
    const stored = spec.quantization ? spec.quantization.dtype : spec.dtype;
    if (!['float32', 'int32'].includes(spec.dtype) || (spec.quantization && stored !== 'float16')) {
      throw new Error(`weight ${spec.name}: ${stored} weights are not supported by this page`);
    }
    const size = sizeOf(spec.shape) * BYTES[stored];
    const values = READ[stored](all.slice(offset, offset + size).buffer);
    offset += size;
    weights.set(spec.name, { values, shape: spec.shape, dtype: spec.dtype });
  }
  return weights;
}

// -- the graph --------------------------------------------------------------------------------------

const text = (attr) => atob(attr.s); // GraphDef JSON writes strings as base64
const pair = (attr) => [Number(attr.list.i[1]), Number(attr.list.i[2])]; // [1, h, w, 1] -> [h, w]

/** 'same' or 'valid' (explicit padding is not supported). */
function padding(node) {
  const pad = text(node.attr.padding).toLowerCase();
  if (pad !== 'same' && pad !== 'valid') throw new Error(`${node.name}: padding ${pad} is not supported`);
  return pad;
}

function nhwc(node) {
  const format = node.attr.data_format ? text(node.attr.data_format) : 'NHWC';
  if (format !== 'NHWC') throw new Error(`${node.name}: data format ${format} is not supported`);
}

/** BiasAdd, then Relu or nothing: what `fused_ops` may say. */
function activation(node) {
  const ops = (node.attr.fused_ops?.list?.s || []).map(atob);
  if (ops[0] !== 'BiasAdd' || ops.length > 2 || (ops[1] && ops[1] !== 'Relu')) {
    throw new Error(`${node.name}: fused ops ${ops.join(', ')} are not supported`);
  }
  return ACTIVATIONS[ops[1] ? 'relu' : 'linear'];
}

/**
 * Output size and padding of one spatial axis, as TensorFlow computes them: 'valid' keeps only whole
 * windows, 'same' gives ceil(size / stride) outputs and pads the rest, the odd pixel after.
 */
function axis(size, window, stride, dilation, pad) {
  const span = (window - 1) * dilation + 1;
  if (pad === 'valid') return { out: Math.ceil((size - span + 1) / stride), before: 0, after: 0 };
  const out = Math.ceil(size / stride);
  const total = Math.max(0, (out - 1) * stride + span - size);
  return { out, before: Math.floor(total / 2), after: total - Math.floor(total / 2) };
}

/** Arguments shared by the convolution and pooling kernels for an NHWC input and a [kh, kw] window. */
function windowArgs(shape, [kh, kw], [sh, sw], [dh, dw], pad) {
  const [n, h, w] = shape;
  const y = axis(h, kh, sh, dh, pad);
  const x = axis(w, kw, sw, dw, pad);
  return { n, h, w, y, x, kh, kw, sh, sw, dh, dw };
}

/** Every op the exporter writes: node -> function of the node's inputs (wasm tensors, or the image). */
const OPS = {
  Cast: (node) => {
    if (node.attr.DstT.type !== 'DT_FLOAT') throw new Error(`${node.name}: cast to ${node.attr.DstT.type} is not supported`);
    // The image comes as integers from JavaScript; everything in wasm memory is float32 already.
    return ([x]) => (x.values ? allocate(x.shape, x.values) : { ...x, owner: false });
  },
  _FusedConv2D: (node) => {
    nhwc(node);
    const strides = pair(node.attr.strides);
    const dilations = node.attr.dilations ? pair(node.attr.dilations) : [1, 1];
    const pad = padding(node);
    const fused = activation(node);
    return ([x, filter, bias]) => {
      const [kh, kw, inChannels, outChannels] = filter.shape;
      const a = windowArgs(x.shape, [kh, kw], strides, dilations, pad);
      const out = allocate([a.n, a.y.out, a.x.out, outChannels]);
      wasm.FusedConv2D(
        x.id, a.n, a.h, a.w, filter.id, kh, kw, bias.id,
        a.y.before, a.x.after, a.y.after, a.x.before, pad === 'same' ? 1 : 0,
        a.dh, a.dw, a.sh, a.sw, inChannels, outChannels, fused, 0, 0, out.id,
      );
      return out;
    };
  },
  MaxPool: (node) => {
    nhwc(node);
    const size = pair(node.attr.ksize);
    const strides = pair(node.attr.strides);
    const pad = padding(node);
    return ([x]) => {
      const channels = x.shape[3];
      const a = windowArgs(x.shape, size, strides, [1, 1], pad);
      const out = allocate([a.n, a.y.out, a.x.out, channels]);
      wasm.MaxPool(
        x.id, a.n, a.h, a.w, a.kh, a.kw, a.y.before, a.x.after, a.y.after, a.x.before,
        1, 1, a.sh, a.sw, channels, channels, out.id,
      );
      return out;
    };
  },
  _FusedMatMul: (node) => {
    const transposeA = Boolean(node.attr.transpose_a?.b);
    const transposeB = Boolean(node.attr.transpose_b?.b);
    const fused = activation(node);
    return ([a, b, bias]) => {
      if (a.shape.length !== 2 || b.shape.length !== 2) throw new Error(`${node.name}: only 2-D matrices are supported`);
      const rows = transposeA ? a.shape[1] : a.shape[0];
      const cols = transposeB ? b.shape[0] : b.shape[1];
      const out = allocate([rows, cols]);
      // The kernel takes batched shapes [1, r, c] as int32 arrays in wasm memory.
      const shapes = wasm.malloc(24);
      new Int32Array(memory.buffer, shapes, 6).set([1, ...a.shape, 1, ...b.shape]);
      wasm._FusedMatMul(a.id, shapes, 3, b.id, shapes + 12, 3, transposeA, transposeB, fused, bias.id, 0, 0, out.id);
      wasm.free(shapes);
      return out;
    };
  },
  Reshape: (node, constants) => {
    const shape = constants.get(node.input[1]);
    if (!shape) throw new Error(`${node.name}: the target shape must be a constant`);
    const dims = Array.from(shape.values);
    return ([x]) => {
      const known = dims.reduce((a, d) => (d === -1 ? a : a * d), 1);
      const target = dims.map((d) => (d === -1 ? x.size / known : d));
      if (sizeOf(target) !== x.size) throw new Error(`${node.name}: cannot reshape ${x.shape} to ${dims}`);
      return { ...x, shape: target, owner: false }; // the same buffer, seen with another shape
    };
  },
  Softmax: () => ([x]) => {
    const out = allocate(x.shape);
    const classes = x.shape[x.shape.length - 1];
    wasm.Softmax(x.id, out.id, classes, x.size / classes);
    return out;
  },
};

/**
 * A runnable graph from a downloaded model: float32 constants go into wasm memory once, every other node
 * becomes a step in dependency order. Fails on an op outside OPS, naming it. Needs initBackend first.
 */
export function loadModel({ doc, buffers }) {
  const meta = doc.userDefinedMetadata && doc.userDefinedMetadata.kcaptcha;
  if (!meta) throw new Error('not a kcaptcha model (model.json has no kcaptcha metadata)');
  const nodes = new Map(doc.modelTopology.node.map((node) => [node.name, { input: [], attr: {}, ...node }]));
  const weights = readWeights(doc.weightsManifest, buffers);
  const constants = new Map(); // name -> {values, shape, dtype}, and `tensor` in wasm memory for float32
  const inputs = [];
  for (const node of nodes.values()) {
    if (node.op === 'Const') {
      const w = weights.get(node.name);
      if (!w) throw new Error(`constant ${node.name} has no weights in model.json's manifest`);
      constants.set(node.name, w.dtype === 'float32' ? { ...w, tensor: allocate(w.shape, w.values) } : w);
    } else if (node.op === 'Placeholder') {
      inputs.push(node.name);
    } else if (!(node.op in OPS)) {
      throw new Error(`op ${node.op} (${node.name}) is not supported by this page's runtime`);
    }
  }
  const used = new Set([...nodes.values()].flatMap((node) => node.input));
  const outputs = [...nodes.keys()].filter((name) => !used.has(name));
  if (inputs.length !== 1 || outputs.length !== 1) {
    throw new Error(`the graph must have one input and one output, not ${inputs.length} and ${outputs.length}`);
  }
  const steps = []; // [name, run, input names], each after its inputs
  const placed = new Set([...constants.keys(), ...inputs]);
  const place = (name) => {
    if (placed.has(name)) return;
    const node = nodes.get(name);
    if (!node) throw new Error(`the graph has no node ${name}`);
    placed.add(name);
    node.input.forEach(place);
    steps.push([name, OPS[node.op](node, constants), node.input]);
  };
  place(outputs[0]);
  const model = { input: inputs[0], output: outputs[0], constants, steps };
  return { model, meta };
}

/** Softmax probabilities [n, positions, classes + 1] for RGB pixels (Int32Array of n*h*w*3). */
export async function predict(model, rgb, n, h, w) {
  const values = new Map([[model.input, { values: rgb, shape: [n, h, w, 3] }]]);
  for (const [name, c] of model.constants) if (c.tensor) values.set(name, c.tensor);
  const made = [];
  try {
    for (const [name, run, input] of model.steps) {
      const out = run(input.map((i) => values.get(i)));
      values.set(name, out);
      made.push(out);
    }
    const probs = values.get(model.output);
    return { data: new Float32Array(memory.buffer, probs.ptr, probs.size).slice(), shape: probs.shape };
  } finally {
    made.forEach(release); // intermediate buffers; the constants stay for the next image
  }
}
