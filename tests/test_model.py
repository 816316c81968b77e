"""The architectures: step counts, weights shared between CTC variants, a fast exported graph."""

from __future__ import annotations

import onnx
import pytest
import torch

from kcaptcha_solver.export import export_onnx, metadata
from kcaptcha_solver.generator import get_preset
from kcaptcha_solver.model import ModelSpec, build

KCAPTCHA_DEFAULT = ModelSpec("ctc-small", 92, 160, 7, "23456789abcdegikpqsvxyz")


@pytest.mark.parametrize(("arch", "steps"), [("ctc-small", 20), ("ctc-fine", 40), ("ctc-tiny", 20),
                                             ("ctc-any", 40)])
def test_ctc_steps_follow_the_step_width(arch, steps):
    spec = ModelSpec(arch, 92, 160, 7, KCAPTCHA_DEFAULT.classes)
    logits = build(spec)(torch.zeros(2, 92, 160, 3, dtype=torch.uint8))
    assert logits.shape == (2, steps, 24)


def test_ctc_fine_takes_ctc_small_weights():
    """What lets `train --init` turn a ctc-small run into a ctc-fine one."""
    small = build(KCAPTCHA_DEFAULT)
    fine = build(ModelSpec("ctc-fine", 92, 160, 7, KCAPTCHA_DEFAULT.classes))
    fine.load_state_dict(small.state_dict())
    assert torch.equal(fine.head.weight, small.head.weight)


def test_exported_preprocessing_has_no_elementwise_op_on_a_size_1_axis(tmp_path):
    """onnxruntime runs a scalar Mul on [N, H, W, 1] some 20x slower than on [N, H, W]."""
    spec = ModelSpec("cnn-tiny", 60, 160, 6, "0123456789")
    meta = metadata(spec, "t", "gnuboard5", get_preset("gnuboard5"), "positions")
    path = export_onnx(build(spec).eval(), meta, tmp_path / "t.onnx")
    graph = onnx.shape_inference.infer_shapes(onnx.load(str(path))).graph
    shapes = {v.name: [d.dim_value or d.dim_param for d in v.type.tensor_type.shape.dim] for v in graph.value_info}
    elementwise = [n for n in graph.node if n.op_type in ("Mul", "Sub", "Add", "Div")]
    assert elementwise, "the preprocessing's arithmetic is in the graph"
    for node in elementwise:
        assert shapes[node.output[0]][-1] != 1, f"{node.name} works on {shapes[node.output[0]]}"
