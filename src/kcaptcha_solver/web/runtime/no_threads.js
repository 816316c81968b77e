// Stands in for the threaded wasm build's glue code: threads need cross-origin isolation, which a
// static host rarely gives, and they made the first answer slower, so the page never uses them.
export default function threadedWasmUnavailable() {
  throw new Error('the threaded wasm backend is not bundled');
}
export const wasmWorkerContents = '';
