"""Turn a shipped float32 ONNX model back into a checkpoint that ``kcaptcha train --init`` fine-tunes.

Why: the shipped kcaptcha-default was trained on a lent GPU whose ``runs/`` did not survive; to teach it
screenshots on this CPU we start from the weights we ship. The export folds each BatchNorm into its
convolution (``conv(x) * g + b``), while the network trains ``conv`` (no bias) then BatchNorm. So each
convolution takes the folded weights, and its BatchNorm is set from the statistics of that convolution's
output over generated images: mean ``m``, variance ``v``, ``running_* = m, v``, ``weight = sqrt(v + eps)``,
``bias = m + b``. In eval mode that is exactly the exported function (checked below, on fresh images); in
train mode, batch statistics are close to ``m, v``, so fine-tuning starts where the model is.

    python tools/onnx_checkpoint.py src/kcaptcha_solver/models/kcaptcha-default.onnx runs/kd-onnx.pt \\
        --fonts ~/.cache/kcaptcha-solver/fonts

Only float32 models (a float16 file would start from rounded weights): kcaptcha-default and seed-l2.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import numpy_helper
from torch import nn

from kcaptcha_solver.generator import Generator
from kcaptcha_solver.model import ModelSpec, build
from kcaptcha_solver.trainconfig import TrainConfig


def convert(path: Path, fonts: str | None, seed: int, count: int) -> tuple[nn.Module, ModelSpec, str]:
    proto = onnx.load(path)
    meta = {p.key.removeprefix("kcaptcha."): p.value for p in proto.metadata_props}
    spec = ModelSpec(arch=meta["arch"], height=int(meta["height"]), width=int(meta["width"]),
                     positions=int(meta["length_max"]), classes=meta["classes"])
    weights = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    if any(w.dtype != np.float32 for w in weights.values()):
        raise SystemExit(f"{path}: not float32 weights")
    model = build(spec).eval()
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    norms = [m for m in model.features if isinstance(m, nn.BatchNorm2d)]
    # Initializers in graph order: per conv its weight and folded bias, then the head's matrix; the head's
    # bias is named. Shapes are checked by copy_ below.
    ordered = [weights[n.input[1]] for n in proto.graph.node if n.op_type == "Conv"]
    biases = [weights[n.input[2]] for n in proto.graph.node if n.op_type == "Conv"]
    matmul = next(weights[n.input[1]] for n in proto.graph.node if n.op_type == "MatMul")
    with torch.no_grad():
        for conv, w in zip(convs, ordered, strict=True):
            conv.weight.copy_(torch.from_numpy(w.copy()))
        model.head.weight.copy_(torch.from_numpy(matmul.T))
        model.head.bias.copy_(torch.from_numpy(weights["model.head.bias"]))
        for bn, b in zip(norms, biases, strict=True):  # identity + folded bias: exact in eval mode
            bn.running_mean.zero_(), bn.running_var.fill_(1 - bn.eps), bn.weight.fill_(1)
            bn.bias.copy_(torch.from_numpy(b))

    gen = Generator(meta["preset"], fonts_dir=fonts)
    images = torch.from_numpy(np.stack([gen.draw(seed + i, boxes=False).pixels() for i in range(count)]))
    outputs: list[torch.Tensor] = []
    hooks = [c.register_forward_hook(lambda _m, _i, out: outputs.append(out)) for c in convs]
    with torch.no_grad():
        before = torch.softmax(model(images), -1)
        for hook in hooks:
            hook.remove()
        for bn, out in zip(norms, outputs, strict=True):
            m, v = out.mean((0, 2, 3)), out.var((0, 2, 3), unbiased=False)
            bn.running_mean.copy_(m), bn.running_var.copy_(v)
            bn.bias.add_(m), bn.weight.copy_((v + bn.eps).sqrt())
        after = torch.softmax(model(images), -1)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    exported = session.run(None, {session.get_inputs()[0].name: images.numpy()})[0]
    gap = max(float((before - after).abs().max()), float(np.abs(after.numpy() - exported).max()))
    print(f"{count} images from seed {seed}: largest probability gap to the ONNX model {gap:.2e}")
    if gap > 1e-4:
        raise SystemExit("the checkpoint does not reproduce the ONNX model")
    return model, spec, meta["preset"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("onnx", type=Path)
    ap.add_argument("out", type=Path, help="checkpoint to write (for kcaptcha train --init)")
    ap.add_argument("--fonts", help="folder with the KCAPTCHA font atlases")
    ap.add_argument("--seed", type=int, default=95_000_000, help="first seed of the images for BatchNorm statistics")
    ap.add_argument("--count", type=int, default=512)
    args = ap.parse_args()
    model, spec, preset = convert(args.onnx, args.fonts, args.seed, args.count)
    cfg = TrainConfig(preset=preset, arch=spec.arch)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"spec": spec.to_dict(), "model": model.state_dict(), "preset": preset,
                "train_config": asdict(cfg), "source": str(args.onnx)}, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
