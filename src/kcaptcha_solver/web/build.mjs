// `npm run build`: bundle the page script and its TF.js runtime into web/dist/ with esbuild, minify the
// mp3 reader (audio.js) and the captcha finder (locate.js) beside it, loaded by the page after its first
// answer, and copy the wasm binaries
// the backend fetches (served as application/wasm).
import { copyFile, mkdir, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { analyzeMetafile, build } from 'esbuild';

const here = dirname(fileURLToPath(import.meta.url));
const dist = join(here, 'dist');
const require = createRequire(import.meta.url);
const wasmDir = dirname(require.resolve('@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm.wasm'));

await rm(dist, { recursive: true, force: true });
await mkdir(dist, { recursive: true });
const result = await build({
  entryPoints: [join(here, 'app.js')],
  outfile: join(dist, 'app.js'),
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: 'es2020',
  minify: true,
  legalComments: 'linked',
  // The magic comment asks Chromium to compile every function while the file downloads (off the main
  // thread) instead of at first call; the mark splits download + compile from evaluation, for benchmarks.
  banner: { js: "//# allFunctionsCalledOnLoad\nperformance.mark('bundle-start');" },
  metafile: true,
  // Not on the way to the first answer of a bare captcha: app.js imports them later, from dist/.
  external: ['./audio.js', './locate.js'],
});
for (const name of ['audio.js', 'locate.js']) {
  await build({
    entryPoints: [join(here, name)],
    outfile: join(dist, name),
    format: 'esm',
    platform: 'browser',
    target: 'es2020',
    minify: true,
  });
}
for (const name of ['tfjs-backend-wasm.wasm', 'tfjs-backend-wasm-simd.wasm']) {
  await copyFile(join(wasmDir, name), join(dist, name));
}
if (process.env.KCAPTCHA_BUNDLE_REPORT) console.log(await analyzeMetafile(result.metafile));
console.log(`built ${dist}`);
