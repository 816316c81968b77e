"""Export one trained checkpoint to the formats the solvers run: a table of writers.

Every format carries the preprocessing inside the graph (input: decoded RGB
image) and the metadata a runtime needs (classes, lengths, input size), so a
model file is all a runtime needs. Each export is checked against PyTorch on
freshly generated captchas and fails loudly when the answers differ.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import general
from .errors import ConfigError, ModelError
from .generator import CaptchaConfig, Generator
from .model import ModelSpec, load_checkpoint
from .modelfile import FORMAT_VERSION, Reading
from .trainconfig import TrainConfig

ONNX_TOLERANCE = 2e-3  # max |p_onnx - p_torch| with float32 weights
# With float16 storage: the rounding moved the per-position models' probabilities by ~1e-4, the CTC models' by 2-3e-3
# (kcaptcha-default, kcaptcha-any); a broken graph moves them by 0.1-1. Calibration measures the file itself.
FLOAT16_TOLERANCE = 5e-3
CHECK_SEED = 95_000_000  # images for the export check: outside training, validation and evaluation seeds
CHECK_COUNT = 64


class WithSoftmax(nn.Module):
    """The network plus a softmax: what runtimes see."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.model(image), dim=-1)


def metadata(spec: ModelSpec, name: str, preset: str, config: CaptchaConfig | general.Task, decoder: str
             ) -> dict[str, str]:
    """What every runtime reads from the model file, as strings (modelfile.py says what each reader does
    with a file that predates a key). ``config`` gives the string lengths."""
    return {
        "kcaptcha.decoder": decoder,  # "positions" or "ctc": how to read the steps (see model.py)
        "kcaptcha.format": FORMAT_VERSION,
        "kcaptcha.name": name,
        "kcaptcha.preset": preset,
        "kcaptcha.arch": spec.arch,
        "kcaptcha.classes": spec.classes,
        "kcaptcha.length_min": str(config.length[0]),
        "kcaptcha.length_max": str(config.length[1]),
        "kcaptcha.width": str(spec.width),
        "kcaptcha.height": str(spec.height),
        **Reading().to_meta(),  # how to read the answers: the same thresholds in Python and on the page
    }


def _fp16_initializers(model_proto) -> None:
    """Store float weights as float16 and cast them back at load: half the file, fp32 arithmetic."""
    import onnx
    from onnx import helper, numpy_helper

    graph = model_proto.graph
    casts = []
    for init in list(graph.initializer):
        if init.data_type != onnx.TensorProto.FLOAT or np.prod(init.dims) < 16:
            continue
        arr = numpy_helper.to_array(init).astype(np.float16)
        half = numpy_helper.from_array(arr, init.name + "__fp16")
        graph.initializer.remove(init)
        graph.initializer.append(half)
        casts.append(helper.make_node("Cast", [half.name], [init.name], to=onnx.TensorProto.FLOAT))
    for node in reversed(casts):
        graph.node.insert(0, node)


def export_onnx(model: nn.Module, meta: dict[str, str], path: Path, float16: bool = True) -> Path:
    """Write ``path`` (input ``image`` uint8 [N,H,W,3], output ``probs`` [N,P,K+1])."""
    import onnx

    spec: ModelSpec = model.spec
    dummy = torch.zeros((1, spec.height, spec.width, 3), dtype=torch.uint8)
    buf = io.BytesIO()
    torch.onnx.export(
        WithSoftmax(model).eval(), (dummy,), buf, input_names=["image"], output_names=["probs"],
        dynamic_axes={"image": {0: "batch"}, "probs": {0: "batch"}}, opset_version=17, dynamo=False,
    )
    proto = onnx.load_from_string(buf.getvalue())
    if float16:
        _fp16_initializers(proto)
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(proto.SerializeToString())
    os.replace(tmp, path)
    return path


def _check_onnx(model: nn.Module, path: Path, images: np.ndarray, tolerance: float = ONNX_TOLERANCE) -> float:
    """Max probability difference onnxruntime vs torch; raises when it is above ``tolerance``."""
    import onnxruntime as ort

    with torch.no_grad():
        ref = WithSoftmax(model).eval()(torch.from_numpy(images)).numpy()
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(["probs"], {"image": images})[0]
    diff = float(np.abs(got - ref).max())
    # Within the tolerance an answer can flip only where torch's top two are closer than twice it (a
    # near tie, e.g. in a barely trained model), so the tolerance alone decides; flips where torch's
    # answer is clear are reported, as they tell a broken export from a slightly imprecise one.
    top2 = np.sort(ref, axis=-1)[..., -2:]
    clear = top2[..., 1] - top2[..., 0] > 2 * tolerance
    answers_differ = bool(((got.argmax(-1) != ref.argmax(-1)) & clear).any())
    if diff > tolerance:
        raise ModelError(
            f"ONNX export check failed: onnxruntime differs from torch (max |dp| = {diff:.2e}, "
            f"tolerance {tolerance:.0e}, answers {'differ' if answers_differ else 'agree'})"
        )
    return diff


def _export_tfjs(model: nn.Module, meta: dict[str, str], path: Path, float16: bool = True) -> Path:
    from .tfjs import write_graph_model

    write_graph_model(model, path, meta, float16=float16)
    return path


# name -> (writer, default file name suffix)
FORMATS: dict[str, tuple[Callable[..., Path], str]] = {
    "onnx": (export_onnx, ".onnx"),
    "tfjs": (_export_tfjs, ""),
}


def check_images(config: CaptchaConfig | None, fonts_dir: str | None = None) -> np.ndarray:
    """Freshly generated captchas, decoded as a reader would get them, for export checks; ``None``:
    the general model's (a random configuration each, brought to its input size)."""
    if config is None:
        return np.stack([general.draw(CHECK_SEED + i, fonts_dir)[0] for i in range(CHECK_COUNT)])
    gen = Generator(config, fonts_dir=fonts_dir)
    return np.stack([gen.draw(CHECK_SEED + i, boxes=False).pixels() for i in range(CHECK_COUNT)])


def export(
    checkpoint: str | os.PathLike[str],
    out: str | os.PathLike[str],
    formats: tuple[str, ...] = ("onnx",),
    name: str | None = None,
    float16: bool = True,
    fonts_dir: str | None = None,
) -> dict[str, Path]:
    """Write each format of ``checkpoint`` under ``out``; returns format -> path.

    ``out`` ending in ``.onnx`` names the ONNX file itself (single format);
    otherwise it is a folder that gets ``NAME.onnx`` and ``tfjs/NAME/``.
    """
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ConfigError(f"unknown export format {', '.join(unknown)} (known: {', '.join(FORMATS)})")
    model, ckpt = load_checkpoint(checkpoint)
    preset = ckpt.get("preset", "custom")
    tcfg = TrainConfig.from_dict(ckpt.get("train_config") or {"preset": preset})
    config = None if tcfg.general else tcfg.captcha_config()
    if not tcfg.reads_preset():  # trained on another site's configuration, not the preset
        preset = "custom"
    name = name or (general.MODEL_NAME if tcfg.general else preset)
    meta = metadata(model.spec, name, preset, tcfg.task(), model.decoder)
    out = Path(out)
    images = check_images(config, fonts_dir)
    written: dict[str, Path] = {}
    for fmt in formats:
        writer, suffix = FORMATS[fmt]
        if out.suffix == ".onnx" and fmt == "onnx":
            target = out
        elif fmt == "tfjs":
            target = (out.parent if out.suffix == ".onnx" else out) / "tfjs" / name
        else:
            target = out / f"{name}{suffix}"
        # Write into a temp sibling first so a failed check leaves nothing behind.
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".export-", dir=target.parent))
        try:
            tmp_target = staging / target.name
            writer(model, meta, tmp_target, float16=float16)
            if fmt == "onnx":
                _check_onnx(model, tmp_target, images, FLOAT16_TOLERANCE if float16 else ONNX_TOLERANCE)
            if target.is_dir():
                shutil.rmtree(target)
            os.replace(tmp_target, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        written[fmt] = target
    return written
