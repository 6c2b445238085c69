"""Cross-layer equalization (trtq.qdq.equalization): exact in FP32, narrower channel ranges."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from tests.qdq.helpers import run
from trtq.qdq.equalization import equalize

C = 8


def _conv(name: str, x: str, y: str, w: np.ndarray, b: np.ndarray | None = None, **attrs) -> tuple:
    inputs = [x, f"{name}_w"] + ([f"{name}_b"] if b is not None else [])
    inits = [numpy_helper.from_array(w, f"{name}_w")] + ([numpy_helper.from_array(b, f"{name}_b")] if b is not None
                                                         else [])
    return helper.make_node("Conv", inputs, [y], name=name, **attrs), inits


def depthwise_pointwise(activation: str, seed: int = 0) -> onnx.ModelProto:
    """x -> depthwise 3x3 (channel ranges spread over 3 decades) -> activation -> pointwise 1x1 -> 3x3 conv."""
    rng = np.random.default_rng(seed)
    w1 = (rng.standard_normal((C, 1, 3, 3)) * np.exp(rng.standard_normal((C, 1, 1, 1)) * 1.5)).astype(np.float32)
    n1, i1 = _conv("dw", "x", "a", w1, rng.standard_normal(C).astype(np.float32), group=C, pads=[1, 1, 1, 1])
    n2, i2 = _conv("pw", "r", "c", rng.standard_normal((6, C, 1, 1)).astype(np.float32),
                   rng.standard_normal(6).astype(np.float32))
    n3, i3 = _conv("c3", "c", "y", rng.standard_normal((4, 6, 3, 3)).astype(np.float32), pads=[1, 1, 1, 1])
    inits = i1 + i2 + i3
    if activation == "Clip":
        inits += [numpy_helper.from_array(np.array(0, np.float32), "lo"),
                  numpy_helper.from_array(np.array(6, np.float32), "hi")]
        act = helper.make_node("Clip", ["a", "lo", "hi"], ["r"], name="relu6")
    else:
        act = helper.make_node(activation, ["a"], ["r"], name="act")
    graph = helper.make_graph([n1, act, n2, n3], "g", [helper.make_tensor_value_info("x", 1, ["N", C, 7, 7])],
                              [helper.make_tensor_value_info("y", 1, ["N", 4, 7, 7])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model


def _relative(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / np.abs(a).max())


@pytest.mark.parametrize("activation", ["Relu", "Clip", "Identity"])
def test_equalization_is_exact_and_narrows_the_depthwise_ranges(activation):
    model = depthwise_pointwise(activation)
    equalized, report = equalize(model)
    onnx.checker.check_model(equalized)
    x = (np.random.default_rng(1).standard_normal((4, C, 7, 7)) * 3).astype(np.float32)
    assert _relative(run(model, {"x": x})[0], run(equalized, {"x": x})[0]) < 1e-5
    pairs = {(p.first, p.second): p for p in report.pairs}
    assert ("dw", "pw") in pairs and ("pw", "c3") in pairs  # pw ends one pair and starts the next
    assert pairs[("dw", "pw")].range_ratio_after < pairs[("dw", "pw")].range_ratio_before / 5
    if activation == "Clip":  # ReLU6 became Relu + per-channel Min
        ops = [n.op_type for n in equalized.graph.node]
        assert "Clip" not in ops and ops.count("Min") == 1
    assert equalize(model)[0].SerializeToString() == equalized.SerializeToString()


def test_non_homogeneous_activations_end_a_chain():
    model = depthwise_pointwise("Sigmoid")
    _, report = equalize(model)
    assert [(p.first, p.second) for p in report.pairs] == [("pw", "c3")]


@pytest.mark.network
def test_equalized_detector_computes_the_same_outputs(ocr_detector):
    """PP-OCRv4's detector (14 pairs, Relu and identity) on real photos, compared at the logits (the input
    of the final Sigmoid: the probability map is ~0 almost everywhere, so relative errors there are
    float noise over nothing)."""
    from tests.qdq.test_real_models import _image, _with_output

    model = onnx.load(str(ocr_detector))
    equalized, report = equalize(model)
    assert len(report.pairs) >= 10
    logit = [n for n in model.graph.node if n.op_type == "Sigmoid"][-1].input[0]
    x = np.concatenate([_image(n, 64, 64) for n in ("coffee.png", "astronaut.png")])
    before, after = run(_with_output(model, logit), {"x": x}), run(_with_output(equalized, logit), {"x": x})
    assert _relative(before[1], after[1]) < 1e-5
    assert float(np.abs(before[0] - after[0]).max()) < 1e-5
