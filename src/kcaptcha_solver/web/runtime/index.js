// The page's whole runtime: tfjs-core, the graph-model loader and the wasm backend with only the
// kernels our exported graphs use (kcaptcha_solver/tfjs.py), so the bundle stays small.
import { env, io, registerKernel, setBackend, tensor, tidy } from '@tensorflow/tfjs-core';
import { loadGraphModel } from '@tensorflow/tfjs-converter';
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

/** Download a model's files; needs no backend, so it can run while the wasm starts. */
export function fetchModel(url) {
  return io.http(url).load();
}

/** Build a downloaded model (after initBackend); returns it with its kcaptcha metadata. */
export async function loadModel(artifacts) {
  const meta = artifacts.userDefinedMetadata && artifacts.userDefinedMetadata.kcaptcha;
  if (!meta) throw new Error('not a kcaptcha model (model.json has no kcaptcha metadata)');
  const model = await loadGraphModel(io.fromMemory(artifacts));
  return { model, meta };
}

/** Softmax probabilities [n, positions, classes + 1] for RGB pixels (Int32Array of n*h*w*3). */
export async function predict(model, rgb, n, h, w) {
  const probs = tidy(() => model.execute(tensor(rgb, [n, h, w, 3], 'int32')));
  const data = await probs.data();
  const shape = probs.shape;
  probs.dispose();
  return { data, shape };
}
