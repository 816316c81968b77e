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

A float16 file (gnuboard5) gives its rounded weights, which fine-tuning then adjusts.
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

from kcaptcha_solver.model import ModelSpec, build
from kcaptcha_solver.train import drawer
from kcaptcha_solver.trainconfig import TrainConfig


def convert(path: Path, fonts: str | None, seed: int, count: int) -> tuple[nn.Module, ModelSpec, str]:
    proto = onnx.load(path)
    meta = {p.key.removeprefix("kcaptcha."): p.value for p in proto.metadata_props}
    spec = ModelSpec(arch=meta["arch"], height=int(meta["height"]), width=int(meta["width"]),
                     positions=int(meta["length_max"]), classes=meta["classes"])
    weights = {t.name: numpy_helper.to_array(t).astype(np.float32) for t in proto.graph.initializer}
    for node in proto.graph.node:  # float16 files cast each weight to float32 in the graph
        if node.op_type == "Cast" and node.input[0] in weights:
            weights[node.output[0]] = weights[node.input[0]]
    model = build(spec).eval()
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    norms = [m for m in model.features if isinstance(m, nn.BatchNorm2d)]
    # Per convolution its weight and folded bias; then the head: MatMul by W.T and Add (CTC models) or
    # Gemm with W (per-position models). Shapes are checked by copy_ below.
    nodes = proto.graph.node
    ordered = [weights[n.input[1]] for n in nodes if n.op_type == "Conv"]
    biases = [weights[n.input[2]] for n in nodes if n.op_type == "Conv"]
    gemm = [n for n in nodes if n.op_type == "Gemm"]
    if gemm:
        head_w, head_b = weights[gemm[0].input[1]], weights[gemm[0].input[2]]
    else:
        head_w = next(weights[n.input[1]] for n in nodes if n.op_type == "MatMul").T
        head_b = next(weights[i] for n in nodes if n.op_type == "Add" for i in n.input if i in weights)
    with torch.no_grad():
        for conv, w in zip(convs, ordered, strict=True):
            conv.weight.copy_(torch.from_numpy(w))
        model.head.weight.copy_(torch.from_numpy(np.ascontiguousarray(head_w)))
        model.head.bias.copy_(torch.from_numpy(head_b))
        for bn, b in zip(norms, biases, strict=True):  # identity + folded bias: exact in eval mode
            bn.running_mean.zero_(), bn.running_var.fill_(1 - bn.eps), bn.weight.fill_(1)
            bn.bias.copy_(torch.from_numpy(b))

    draw = drawer(TrainConfig(preset=meta["preset"], fonts_dir=fonts))  # a preset's images, or the general model's
    images = torch.from_numpy(np.stack([draw(seed + i)[0] for i in range(count)]))
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
    # 93M: clear of training, validation (90M), calibration (94M-96M) and tools/eval_any.py (96M+)
    ap.add_argument("--seed", type=int, default=93_000_000, help="first seed of the images for BatchNorm statistics")
    ap.add_argument("--count", type=int, default=512)
    args = ap.parse_args()
    model, spec, preset = convert(args.onnx, args.fonts, args.seed, args.count)
    cfg = TrainConfig(preset=preset, arch=spec.arch)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    card = args.onnx.with_suffix(".md")  # its history, for the card of the model fine-tuned from it
    torch.save({"spec": spec.to_dict(), "model": model.state_dict(), "preset": preset, "train_config": asdict(cfg),
                "source": str(args.onnx), "card": card.read_text() if card.is_file() else ""}, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
