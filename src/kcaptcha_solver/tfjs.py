"""Write a trained :class:`~kcaptcha_solver.model.CaptchaCNN` as a TensorFlow.js graph model.

The format (``model.json`` + one ``.bin`` of weights) is what ``tf.loadGraphModel``
reads: a TensorFlow GraphDef written as JSON nodes, and a manifest saying where
each constant's bytes lie. We write it ourselves from the PyTorch weights, so
the project never needs TensorFlow. The graph holds the preprocessing too, and
the page reads alphabet, lengths and input size from ``userDefinedMetadata``:
the page has no architecture code, and a new model is only a new folder.

The graph, in NHWC (TensorFlow's layout; ``tf.browser.fromPixels`` gives int32)::

    image int32 [N,H,W,3] -> Cast -> 1x1 _FusedConv2D (mean of RGB, x/127.5 - 1)
      -> (_FusedConv2D 3x3 with BatchNorm folded in, Relu -> MaxPool) * blocks
      -> positions head: [_FusedConv2D 1x1 squeeze, Relu] -> Reshape [N, h*w*C] -> _FusedMatMul
         ctc head: _FusedConv2D with an (h, 1) VALID kernel = the linear layer on every column
      -> Reshape [N, steps, classes+1] -> Softmax = probs

The metadata's ``decoder`` says how to read the steps (see model.py).
"""

from __future__ import annotations

import base64
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .errors import ModelError
from .modelfile import Reading

MODEL_JSON = "model.json"
WEIGHTS_BIN = "weights.bin"
FORMAT_VERSION = 1  # bump when the graph's inputs, outputs or metadata change meaning
METADATA_KEYS = ("name", "preset", "classes", "length_min", "length_max", "width", "height")


def _s(text: str) -> str:
    """GraphDef JSON stores string attributes as base64 bytes."""
    return base64.b64encode(text.encode()).decode()


def _ints(values) -> dict:
    return {"list": {"i": [str(int(v)) for v in values]}}


class _Graph:
    """Nodes and constants of a GraphDef, collected in order."""

    def __init__(self, float16: bool) -> None:
        self.float16 = float16
        self.nodes: list[dict] = []
        self.weights: list[tuple[str, np.ndarray]] = []

    def const(self, name: str, value: np.ndarray) -> str:
        dtype = "DT_INT32" if value.dtype == np.int32 else "DT_FLOAT"
        shape = {"dim": [{"size": str(d)} for d in value.shape]}
        self.nodes.append(
            {
                "name": name,
                "op": "Const",
                "attr": {
                    "value": {"tensor": {"dtype": dtype, "tensorShape": shape}},
                    "dtype": {"type": dtype},
                },
            }
        )
        self.weights.append((name, value))
        return name

    def op(self, name: str, op: str, inputs: list[str], **attr: dict) -> str:
        self.nodes.append({"name": name, "op": op, "input": inputs, "attr": attr})
        return name

    def conv(self, name: str, x: str, kernel: np.ndarray, bias: np.ndarray, relu: bool, padding: str = "SAME") -> str:
        """A stride-1 convolution with bias (and Relu) in one kernel; ``kernel`` is HWIO."""
        k = self.const(f"{name}/kernel", kernel.astype(np.float32))
        b = self.const(f"{name}/bias", bias.astype(np.float32))
        fused = [_s("BiasAdd")] + ([_s("Relu")] if relu else [])
        return self.op(
            name,
            "_FusedConv2D",
            [x, k, b],
            T={"type": "DT_FLOAT"},
            strides=_ints([1, 1, 1, 1]),
            padding={"s": _s(padding)},
            data_format={"s": _s("NHWC")},
            dilations=_ints([1, 1, 1, 1]),
            use_cudnn_on_gpu={"b": True},
            fused_ops={"list": {"s": fused}},
            num_args={"i": "1"},
            epsilon={"f": 0.0},
        )

    def manifest_and_bytes(self) -> tuple[list[dict], bytes]:
        specs, chunks = [], []
        for name, value in self.weights:
            spec: dict = {"name": name, "shape": list(value.shape)}
            if value.dtype == np.int32:
                spec["dtype"] = "int32"
                chunks.append(value.astype("<i4").tobytes())
            elif self.float16:
                spec["dtype"] = "float32"
                spec["quantization"] = {"dtype": "float16", "original_dtype": "float32"}
                chunks.append(value.astype("<f2").tobytes())
            else:
                spec["dtype"] = "float32"
                chunks.append(value.astype("<f4").tobytes())
            specs.append(spec)
        return specs, b"".join(chunks)


def _fold_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[np.ndarray, np.ndarray]:
    """Conv (no bias) then eval-mode BatchNorm as one conv: HWIO kernel and bias."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    kernel = conv.weight * scale[:, None, None, None]  # (O, I, kh, kw)
    bias = bn.bias - bn.running_mean * scale
    if conv.bias is not None:
        bias = bias + conv.bias * scale
    return kernel.permute(2, 3, 1, 0).numpy(), bias.numpy()


def _check_conv(conv: nn.Conv2d) -> None:
    k = conv.kernel_size[0]
    same = conv.padding in ((k // 2, k // 2), "same")
    if conv.stride != (1, 1) or conv.dilation != (1, 1) or conv.groups != 1 or not same or k % 2 == 0:
        raise ModelError(f"the TF.js exporter only writes stride-1 'same' convolutions, not {conv}")


def _pool_size(pool: nn.MaxPool2d) -> tuple[int, int] | None:
    """(kh, kw) of a torch max pool that TF's VALID MaxPool matches (both round odd sizes down)."""

    def pair(v: int | tuple[int, ...]) -> tuple[int, ...]:
        return (v, v) if isinstance(v, int) else tuple(v)

    size = pair(pool.kernel_size)
    plain = pair(pool.stride) == size and pair(pool.padding) == (0, 0) and pair(pool.dilation) == (1, 1)
    return size if plain and not pool.ceil_mode else None


def build_graph(model: nn.Module, float16: bool = True) -> tuple[list[dict], list[dict], bytes]:
    """GraphDef nodes, weight specs and weight bytes for a CaptchaCNN or CaptchaCTC (put in eval mode)."""
    spec = getattr(model, "spec", None)
    if spec is None or not hasattr(model, "features") or not isinstance(getattr(model, "head", None), nn.Linear):
        raise ModelError("the TF.js exporter needs a model from kcaptcha_solver.model (features, head, spec)")
    model = model.eval()
    g = _Graph(float16)
    g.op(
        "image",
        "Placeholder",
        [],
        dtype={"type": "DT_INT32"},
        shape={"shape": {"dim": [{"size": str(d)} for d in (-1, spec.height, spec.width, 3)]}},
    )
    x = g.op("cast", "Cast", ["image"], SrcT={"type": "DT_INT32"}, DstT={"type": "DT_FLOAT"}, Truncate={"b": False})
    # gray = mean(R, G, B) / 127.5 - 1 as a 1x1 convolution: one kernel the page needs anyway.
    x = g.conv("gray", x, np.full((1, 1, 3, 1), 1 / (3 * 127.5), np.float32), np.array([-1.0]), relu=False)
    h, w, c = spec.height, spec.width, 1
    layers = list(model.features)
    i = 0
    with torch.no_grad():
        while i < len(layers):
            layer = layers[i]
            name = f"block{i}"
            if isinstance(layer, nn.Conv2d) and i + 1 < len(layers) and isinstance(layers[i + 1], nn.BatchNorm2d):
                _check_conv(layer)
                kernel, bias = _fold_bn(layer, layers[i + 1])
                relu = i + 2 < len(layers) and isinstance(layers[i + 2], nn.ReLU)
                x = g.conv(f"{name}/conv", x, kernel, bias, relu)
                c = layer.out_channels
                i += 3 if relu else 2
            elif isinstance(layer, nn.MaxPool2d) and _pool_size(layer):
                kh, kw = _pool_size(layer)
                x = g.op(
                    f"{name}/pool",
                    "MaxPool",
                    [x],
                    T={"type": "DT_FLOAT"},
                    ksize=_ints([1, kh, kw, 1]),
                    strides=_ints([1, kh, kw, 1]),
                    padding={"s": _s("VALID")},
                    data_format={"s": _s("NHWC")},
                )
                h, w = h // kh, w // kw
                i += 1
            else:
                raise ModelError(f"the TF.js exporter cannot write layer {i}: {layer}")
        head: nn.Linear = model.head
        k = len(spec.classes) + 1
        if getattr(model, "decoder", "positions") == "ctc":
            x, steps = _ctc_head(g, x, head, c, h, w)
        else:
            x, steps = _positions_head(g, x, head, c, h, w), spec.positions
    shape = g.const("logits/shape", np.array([-1, steps, k], np.int32))
    x = g.op("logits", "Reshape", [x, shape], T={"type": "DT_FLOAT"}, Tshape={"type": "DT_INT32"})
    g.op("probs", "Softmax", [x], T={"type": "DT_FLOAT"})
    specs, data = g.manifest_and_bytes()
    return g.nodes, specs, data


def _positions_head(g: _Graph, x: str, head: nn.Linear, c: int, h: int, w: int) -> str:
    """One linear layer over the whole feature map: [N, h, w, C] -> [N, positions * (K+1)]."""
    if head.in_features != c * h * w:
        raise ModelError(f"head expects {head.in_features} features, the conv stack gives {c}x{h}x{w}")
    # torch flattens (C, h, w); NHWC flattens (h, w, C): reorder the weight's input columns.
    weight = head.weight.reshape(head.out_features, c, h, w).permute(2, 3, 1, 0).reshape(h * w * c, -1)
    flat = g.const("flatten/shape", np.array([-1, h * w * c], np.int32))
    x = g.op("flatten", "Reshape", [x, flat], T={"type": "DT_FLOAT"}, Tshape={"type": "DT_INT32"})
    wt = g.const("head/weight", weight.numpy())
    bt = g.const("head/bias", head.bias.numpy())
    return g.op(
        "head",
        "_FusedMatMul",
        [x, wt, bt],
        T={"type": "DT_FLOAT"},
        transpose_a={"b": False},
        transpose_b={"b": False},
        fused_ops={"list": {"s": [_s("BiasAdd")]}},
        num_args={"i": "1"},
        epsilon={"f": 0.0},
    )


def _ctc_head(g: _Graph, x: str, head: nn.Linear, c: int, h: int, w: int) -> tuple[str, int]:
    """The same linear layer on every column: a VALID conv with an (h, 1) kernel -> [N, 1, w, K+1].

    torch reads column features rows-major, (h, C), which is the HWIO kernel's order: no
    Transpose op, and no kernel beyond the convolutions the page has anyway.
    """
    if head.in_features != h * c:
        raise ModelError(f"column head expects {head.in_features} features, the conv stack gives {h}x{c}")
    kernel = head.weight.reshape(head.out_features, h, c).permute(1, 2, 0).reshape(h, 1, c, -1)
    return g.conv("head", x, kernel.numpy(), head.bias.numpy(), relu=False, padding="VALID"), w


def _normalise(metadata: dict) -> dict:
    """Bare keys and real integers, whether given as ONNX-style ``kcaptcha.*`` strings or not."""
    meta = {key.removeprefix("kcaptcha."): value for key, value in metadata.items()}
    missing = [key for key in METADATA_KEYS if key not in meta]
    if missing:
        raise ModelError(f"TF.js metadata lacks {', '.join(missing)}")
    for key in ("length_min", "length_max", "width", "height"):
        meta[key] = int(meta[key])
    meta.update(asdict(Reading.from_meta(meta)))  # numbers, and the defaults where a caller gave none
    meta.pop("format", None)  # the ONNX format number; model.json carries its own format_version
    return meta


def write_graph_model(model: nn.Module, out_dir: str | Path, metadata: dict, float16: bool = True) -> Path:
    """Write ``model.json`` and ``weights.bin`` into ``out_dir``; returns the model.json path.

    ``metadata`` holds the keys in :data:`METADATA_KEYS`, bare or as the ONNX file's ``kcaptcha.*``
    strings; it goes into ``userDefinedMetadata.kcaptcha`` (``GraphModel.metadata`` in the browser)
    with numbers as numbers.
    """
    meta = _normalise(metadata)
    spec = model.spec
    if meta["classes"] != spec.classes:
        raise ModelError(f"metadata classes {meta['classes']!r} differ from the model's {spec.classes!r}")
    nodes, specs, data = build_graph(model, float16)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / WEIGHTS_BIN).write_bytes(data)
    decoder = getattr(model, "decoder", "positions")
    if meta.setdefault("decoder", decoder) != decoder:
        raise ModelError(f"metadata decoder {meta['decoder']!r} differs from the model's {decoder!r}")
    info = dict(meta, positions=spec.positions, format_version=FORMAT_VERSION, input="image", output="probs")
    doc = {
        "format": "graph-model",
        "generatedBy": "kcaptcha-solver",
        "convertedBy": "kcaptcha_solver.tfjs",
        "modelTopology": {"node": nodes, "library": {}, "versions": {"producer": 1}},
        "weightsManifest": [{"paths": [WEIGHTS_BIN], "weights": specs}],
        "userDefinedMetadata": {"kcaptcha": info},
    }
    path = out / MODEL_JSON
    path.write_text(json.dumps(doc, separators=(",", ":")))
    return path
