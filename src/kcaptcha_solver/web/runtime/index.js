// The page's whole runtime: tfjs-core with the wasm backend and only the kernels our graphs use, and a
// small executor for the TF.js graph models that kcaptcha_solver/tfjs.py writes. The executor knows
// ops, not architectures: any graph made of the ops in OPS runs, and a new model is only a new file.
import {
  cast, env, fused, maxPool, registerKernel, reshape, setBackend, softmax, tensor, tidy,
} from '@tensorflow/tfjs-core';
import { setWasmPaths } from '@tensorflow/tfjs-backend-wasm/dist/base';
import { castConfig } from '@tensorflow/tfjs-backend-wasm/dist/kernels/Cast';
import { fusedConv2DConfig } from '@tensorflow/tfjs-backend-wasm/dist/kernels/FusedConv2D';
import { _fusedMatMulConfig } from '@tensorflow/tfjs-backend-wasm/dist/kernels/_FusedMatMul';
import { identityConfig } from '@tensorflow/tfjs-backend-wasm/dist/kernels/Identity';
import { maxPoolConfig } from '@tensorflow/tfjs-backend-wasm/dist/kernels/MaxPool';
import { reshapeConfig } from '@tensorflow/tfjs-backend-wasm/dist/kernels/Reshape';
import { softmaxConfig } from '@tensorflow/tfjs-backend-wasm/dist/kernels/Softmax';

for (const config of [
  castConfig, fusedConv2DConfig, _fusedMatMulConfig, identityConfig,
  maxPoolConfig, reshapeConfig, softmaxConfig,
]) {
  registerKernel(config);
}

/** Start the wasm backend; `wasmDir` is the URL folder holding the .wasm files (ends with '/'). */
export async function initBackend(wasmDir) {
  // Threads need cross-origin isolation, and they made the first answer slower, not faster.
  env().set('WASM_HAS_MULTITHREAD_SUPPORT', false);
  setWasmPaths(wasmDir);
  if (!(await setBackend('wasm'))) throw new Error('WebAssembly is not available in this browser');
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

// -- weights ----------------------------------------------------------------------------------------

/** float32 values of IEEE half-precision numbers: the sign, exponent and fraction bits moved over. */
function halfToFloat(buffer) {
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
    const size = spec.shape.reduce((a, b) => a * b, 1) * BYTES[stored];
    const values = READ[stored](all.slice(offset, offset + size).buffer);
    offset += size;
    weights.set(spec.name, { values, shape: spec.shape, dtype: spec.dtype });
  }
  return weights;
}

// -- the graph --------------------------------------------------------------------------------------

const DTYPES = { DT_FLOAT: 'float32', DT_INT32: 'int32' };
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
  return ops[1] ? 'relu' : 'linear';
}

/** Every op the exporter writes: node -> function of the node's input tensors (and constants). */
const OPS = {
  Cast: (node) => {
    const dtype = DTYPES[node.attr.DstT.type];
    if (!dtype) throw new Error(`${node.name}: cast to ${node.attr.DstT.type} is not supported`);
    return ([x]) => cast(x, dtype);
  },
  _FusedConv2D: (node) => {
    nhwc(node);
    const args = {
      strides: pair(node.attr.strides),
      pad: padding(node),
      dilations: node.attr.dilations ? pair(node.attr.dilations) : [1, 1],
      activation: activation(node),
    };
    return ([x, filter, bias]) => fused.conv2d({ x, filter, bias, ...args });
  },
  MaxPool: (node) => {
    nhwc(node);
    const size = pair(node.attr.ksize);
    const strides = pair(node.attr.strides);
    const pad = padding(node);
    return ([x]) => maxPool(x, size, strides, pad);
  },
  _FusedMatMul: (node) => {
    const args = {
      transposeA: Boolean(node.attr.transpose_a?.b),
      transposeB: Boolean(node.attr.transpose_b?.b),
      activation: activation(node),
    };
    return ([a, b, bias]) => fused.matMul({ a, b, bias, ...args });
  },
  Reshape: (node, constants) => {
    const shape = constants.get(node.input[1]);
    if (!shape) throw new Error(`${node.name}: the target shape must be a constant`);
    const dims = Array.from(shape.values);
    return ([x]) => reshape(x, dims);
  },
  Softmax: () => ([x]) => softmax(x),
};

/**
 * A runnable graph from a downloaded model: constants become tensors once, every other node a step
 * in dependency order. Fails on an op outside OPS, naming it.
 */
export function loadModel({ doc, buffers }) {
  const meta = doc.userDefinedMetadata && doc.userDefinedMetadata.kcaptcha;
  if (!meta) throw new Error('not a kcaptcha model (model.json has no kcaptcha metadata)');
  const nodes = new Map(doc.modelTopology.node.map((node) => [node.name, { input: [], attr: {}, ...node }]));
  const weights = readWeights(doc.weightsManifest, buffers);
  const constants = new Map();
  const inputs = [];
  for (const node of nodes.values()) {
    if (node.op === 'Const') {
      const w = weights.get(node.name);
      if (!w) throw new Error(`constant ${node.name} has no weights in model.json's manifest`);
      constants.set(node.name, { ...w, tensor: tensor(w.values, w.shape, w.dtype) });
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
  const probs = tidy(() => {
    const values = new Map([[model.input, tensor(rgb, [n, h, w, 3], 'int32')]]);
    for (const [name, { tensor: t }] of model.constants) values.set(name, t);
    for (const [name, run, input] of model.steps) values.set(name, run(input.map((i) => values.get(i))));
    return values.get(model.output);
  });
  const data = await probs.data();
  const shape = probs.shape;
  probs.dispose();
  return { data, shape };
}
