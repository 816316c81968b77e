// The only ops the converter may call for our graphs (see kcaptcha_solver/tfjs.py), standing in for
// tfjs-core's ops_for_converter, which would pull every op into the bundle.
import { conv2d } from '@tensorflow/tfjs-core/dist/ops/fused/conv2d';
import { matMul } from '@tensorflow/tfjs-core/dist/ops/fused/mat_mul';

export { cast } from '@tensorflow/tfjs-core/dist/ops/cast';
export { clone } from '@tensorflow/tfjs-core/dist/ops/clone';
export { maxPool } from '@tensorflow/tfjs-core/dist/ops/max_pool';
export { reshape } from '@tensorflow/tfjs-core/dist/ops/reshape';
export { scalar } from '@tensorflow/tfjs-core/dist/ops/scalar';
export { softmax } from '@tensorflow/tfjs-core/dist/ops/softmax';
export { tensor1d } from '@tensorflow/tfjs-core/dist/ops/tensor1d';
export const fused = { conv2d, matMul };
