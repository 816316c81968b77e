"""The TF.js graph model writer: the browser's numbers must be PyTorch's numbers.

Each test model runs in Node twice, and both are compared with the PyTorch model on the
same pixels: through tfjs-core and tfjs-backend-wasm with tfjs-converter's loadGraphModel,
so the files follow the standard format; and through the page's own executor
(web/runtime/index.js, the same wasm kernels without tfjs-core). In Node there is no
Float16Array, so the page's fallback float16 decoder is the one checked here. The page
itself is checked against the Python solver in test_web.py.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SHIPPED
from PIL import Image

from kcaptcha_solver.errors import ModelError
from kcaptcha_solver.model import ARCHS, ModelSpec, build
from kcaptcha_solver.tfjs import MODEL_JSON, WEIGHTS_BIN, write_graph_model

ROOT = Path(__file__).resolve().parents[1]

# Loads DIR/model.json with a file IOHandler, runs it on N int32 images read from IN, writes the
# float32 probabilities to OUT and prints the model's metadata.
RUN_JS = """
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { loadGraphModel } from '@tensorflow/tfjs-converter';
import '@tensorflow/tfjs-backend-wasm';
const [dir, inFile, outFile, n, h, w] = process.argv.slice(1);
await tf.setBackend('wasm');
const doc = JSON.parse(fs.readFileSync(path.join(dir, 'model.json'), 'utf8'));
const group = doc.weightsManifest[0];
const bin = fs.readFileSync(path.join(dir, group.paths[0]));
const model = await loadGraphModel({ load: async () => ({
  modelTopology: doc.modelTopology, format: doc.format, weightSpecs: group.weights,
  weightData: bin.buffer.slice(bin.byteOffset, bin.byteOffset + bin.length),
  userDefinedMetadata: doc.userDefinedMetadata }) });
const x = tf.tensor(Int32Array.from(fs.readFileSync(inFile)), [+n, +h, +w, 3], 'int32');
const y = model.execute(x);
fs.writeFileSync(outFile, Buffer.from((await y.data()).buffer));
console.log(JSON.stringify({ shape: y.shape, metadata: model.metadata }));
"""

# The same through the page's runtime: the executor and kernels the browser runs.
RUN_PAGE_JS = """
import * as fs from 'node:fs';
import * as path from 'node:path';
import { initBackend, loadModel, predict } from './src/kcaptcha_solver/web/runtime/index.js';
const [dir, inFile, outFile, n, h, w] = process.argv.slice(1);
const wasmFile = path.resolve('node_modules/@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm-simd.wasm');
await initBackend('unused/', WebAssembly.compile(fs.readFileSync(wasmFile)));
const doc = JSON.parse(fs.readFileSync(path.join(dir, 'model.json'), 'utf8'));
const buffers = doc.weightsManifest.flatMap((group) => group.paths).map((name) => {
  const bin = fs.readFileSync(path.join(dir, name));
  return bin.buffer.slice(bin.byteOffset, bin.byteOffset + bin.length);
});
const { model } = loadModel({ doc, buffers });
const { data, shape } = await predict(model, Int32Array.from(fs.readFileSync(inFile)), +n, +h, +w);
fs.writeFileSync(outFile, Buffer.from(data.buffer));
console.log(JSON.stringify({ shape, metadata: doc.userDefinedMetadata }));
"""
RUNTIMES = {"tfjs": RUN_JS, "page": RUN_PAGE_JS}

SPECS = {m.name: ModelSpec("cnn-tiny", m.height, m.width, m.length_max, m.classes)  # their shapes, with real images
         for m in SHIPPED if not m.general}


@pytest.fixture(scope="session")
def node_modules() -> Path:
    """The npm packages (npm ci from the lockfile when missing): tests run the page's own runtime."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail("node and npm are needed (Node 20+): the TF.js runtime is tested in Node")
    modules = ROOT / "node_modules" / "@tensorflow" / "tfjs-backend-wasm"
    if not modules.is_dir():
        done = subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund"], cwd=ROOT, capture_output=True, text=True
        )
        if done.returncode != 0:
            pytest.fail(f"npm ci failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return modules


def decisive_model(spec: ModelSpec, seed: int = 0) -> torch.nn.Module:
    """A random model with trained-looking BatchNorm statistics and confident (peaked) outputs."""
    torch.manual_seed(seed)
    model = build(spec)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.3, 0.3)
                m.running_var.uniform_(0.3, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
        model.head.weight *= 30
    return model.eval()


def metadata(name: str, spec: ModelSpec, lengths: tuple[int, int]) -> dict:
    return dict(
        name=name,
        preset=name,
        classes=spec.classes,
        length_min=lengths[0],
        length_max=lengths[1],
        width=spec.width,
        height=spec.height,
    )


def run_in_node(model_dir: Path, images: np.ndarray, tmp: Path, runtime: str) -> tuple[np.ndarray, dict]:
    n, h, w, _ = images.shape
    images.astype(np.uint8).tofile(tmp / "in.raw")
    done = subprocess.run(
        [
            "node",
            "--input-type=module",
            "-e",
            RUNTIMES[runtime],
            str(model_dir),
            str(tmp / "in.raw"),
            str(tmp / "out.raw"),
            str(n),
            str(h),
            str(w),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    info = json.loads(done.stdout.strip().splitlines()[-1])
    return np.fromfile(tmp / "out.raw", np.float32).reshape(info["shape"]), info["metadata"]


def sample_images(spec: ModelSpec, shared_dir: Path, count: int = 12) -> np.ndarray:
    """Real captchas of this size where the sample has them, plus random pixels (all 0..255 values)."""
    preset = next(m.preset for m in SHIPPED if (m.width, m.height) == (spec.width, spec.height))
    real = [np.asarray(Image.open(p).convert("RGB")) for p in sorted((shared_dir / preset).iterdir())[:count]]
    noise = np.random.default_rng(1).integers(0, 256, (4, spec.height, spec.width, 3), dtype=np.uint8)
    return np.concatenate([np.stack(real), noise])


@pytest.mark.parametrize("arch", sorted(ARCHS))
@pytest.mark.parametrize("name", sorted(SPECS))
@pytest.mark.parametrize("float16", [True, False], ids=["float16", "float32"])
@pytest.mark.parametrize("runtime", sorted(RUNTIMES))
def test_browser_runtime_matches_pytorch(node_modules, shared_dir, tmp_path, runtime, name, arch, float16) -> None:
    spec = replace(SPECS[name], arch=arch)
    model = decisive_model(spec)
    out = tmp_path / "model"
    write_graph_model(model, out, metadata(name, spec, (spec.positions, spec.positions)), float16=float16)
    images = sample_images(spec, shared_dir)
    probs, meta = run_in_node(out, images, tmp_path, runtime)
    with torch.no_grad():
        expected = torch.softmax(model(torch.from_numpy(images)), -1).numpy()
    assert probs.shape == expected.shape
    assert probs.shape[::2] == (len(images), len(spec.classes) + 1)
    # float32 weights: only summation order differs; float16 storage rounds each weight by <= 2**-11.
    tolerance = 2e-3 if float16 else 1e-4
    assert np.abs(probs - expected).max() < tolerance
    assert (probs.argmax(-1) == expected.argmax(-1)).all()
    assert meta["kcaptcha"]["classes"] == spec.classes
    assert meta["kcaptcha"]["decoder"] == model.decoder


def test_float16_halves_the_weights(tmp_path) -> None:
    spec = SPECS["gnuboard5"]
    model = decisive_model(spec)
    meta = metadata("gnuboard5", spec, (6, 6))
    write_graph_model(model, tmp_path / "f16", meta, float16=True)
    write_graph_model(model, tmp_path / "f32", meta, float16=False)
    f16, f32 = ((tmp_path / d / WEIGHTS_BIN).stat().st_size for d in ("f16", "f32"))
    assert f16 < 0.51 * f32
    doc = json.loads((tmp_path / "f16" / MODEL_JSON).read_text())
    assert doc["format"] == "graph-model"
    quantized = [w for w in doc["weightsManifest"][0]["weights"] if "quantization" in w]
    assert quantized and all(w["quantization"]["dtype"] == "float16" for w in quantized)
    ops = {node["op"] for node in doc["modelTopology"]["node"]}
    assert ops == {
        "Placeholder",
        "Const",
        "Cast",
        "_FusedConv2D",
        "MaxPool",
        "Reshape",
        "_FusedMatMul",
        "Softmax",
    }


def test_metadata_from_onnx_style_keys(tmp_path) -> None:
    """export.py hands over the ONNX file's ``kcaptcha.*`` strings; model.json gets plain values."""
    spec = SPECS["seed-l2"]
    meta = {f"kcaptcha.{k}": str(v) for k, v in metadata("seed-l2", spec, (2, 2)).items()}
    write_graph_model(decisive_model(spec), tmp_path, dict(meta, **{"kcaptcha.format": "1"}))
    info = json.loads((tmp_path / MODEL_JSON).read_text())["userDefinedMetadata"]["kcaptcha"]
    assert info["name"] == "seed-l2" and info["height"] == 60 and info["length_max"] == 2


def test_missing_metadata_is_an_error(tmp_path) -> None:
    spec = SPECS["gnuboard5"]
    with pytest.raises(ModelError, match="length_min"):
        write_graph_model(decisive_model(spec), tmp_path, {"name": "x", "classes": spec.classes})


def test_unsupported_layer_is_an_error(tmp_path) -> None:
    spec = SPECS["gnuboard5"]
    model = decisive_model(spec)
    model.features[3] = torch.nn.AvgPool2d(2)  # the first block's MaxPool
    with pytest.raises(ModelError, match="cannot write layer"):
        write_graph_model(model, tmp_path, metadata("gnuboard5", spec, (6, 6)))
