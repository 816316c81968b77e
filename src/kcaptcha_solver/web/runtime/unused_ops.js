// Stands in for the converter's op tables and executors of op families our graphs never use
// (see UNUSED in build.mjs): a graph with such an op fails to load with "unsupported op".
export const json = [];
export function executeOp(node) {
  throw new Error(`op ${node.op} is not in this runtime (see src/kcaptcha_solver/web/build.mjs)`);
}
