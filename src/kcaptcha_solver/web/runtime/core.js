// tfjs-core without its optimizers and gradients (the page only runs inference).
import '@tensorflow/tfjs-core/dist/base_side_effects';

export * from '@tensorflow/tfjs-core/dist/base';
