// tfjs-core cut down to the names that runtime/index.js and the wasm backend with the kernels it
// registers import: no training, no ops beyond ours. build.mjs points '@tensorflow/tfjs-core' here; a
// name missing here fails the build.
import '@tensorflow/tfjs-core/dist/base_side_effects';
import { env } from '@tensorflow/tfjs-core/dist/environment';
import { assertAndGetBroadcastShape } from '@tensorflow/tfjs-core/dist/ops/broadcast_util';
import { computeConv2DInfo, computePool2DInfo } from '@tensorflow/tfjs-core/dist/ops/conv_util';
import { conv2d } from '@tensorflow/tfjs-core/dist/ops/fused/conv2d';
import { matMul } from '@tensorflow/tfjs-core/dist/ops/fused/mat_mul';
import { assert, bytesPerElement, inferFromImplicitShape, sizeFromShape } from '@tensorflow/tfjs-core/dist/util_base';

export { DataStorage, KernelBackend } from '@tensorflow/tfjs-core/dist/backends/backend';
export { deprecationWarn, engine, registerBackend, setBackend, tidy } from '@tensorflow/tfjs-core/dist/globals';
export { registerKernel } from '@tensorflow/tfjs-core/dist/kernel_registry';
export { Cast, FusedConv2D, Identity, MaxPool, Reshape, Softmax, _FusedMatMul } from '@tensorflow/tfjs-core/dist/kernel_names';
export { cast } from '@tensorflow/tfjs-core/dist/ops/cast';
export { maxPool } from '@tensorflow/tfjs-core/dist/ops/max_pool';
export { reshape } from '@tensorflow/tfjs-core/dist/ops/reshape';
export { softmax } from '@tensorflow/tfjs-core/dist/ops/softmax';
export { tensor } from '@tensorflow/tfjs-core/dist/ops/tensor';
export { env };

export const fused = { conv2d, matMul };
export const backend_util = { computeConv2DInfo, computePool2DInfo };
export const broadcast_util = { assertAndGetBroadcastShape };
export const util = {
  assert,
  bytesPerElement,
  inferFromImplicitShape,
  sizeFromShape,
  fetch: (path, init) => env().platform.fetch(path, init),
  now: () => env().platform.now(),
};
