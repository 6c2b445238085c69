"""Activation ranges re-chosen by layer output error (trtq.accuracy.input_ranges), measured on ONNX Runtime."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from tests.accuracy_models import conv_chain, image_batches
from tests.qdq.helpers import activation_amax, session
from trtq.accuracy.evaluation import run_batches
from trtq.accuracy.input_ranges import FACTORS, choose_scale, fake_quant, input_scale
from trtq.accuracy.weight_rounding import round_weights
from trtq.qdq import quantize_model
from trtq.qdq.graph import GraphIndex

SHAPE = (3, 12, 12)


def test_fake_quant_is_what_onnx_runtime_computes():
    x = np.random.default_rng(0).standard_normal((4, 1000)).astype(np.float32) * 3
    scale = np.float32(0.0123)
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", 1, None)],
                              [helper.make_tensor_value_info("y", 1, None)],
                              [numpy_helper.from_array(np.asarray(scale), "s"),
                               numpy_helper.from_array(np.asarray(0, np.int8), "z")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    np.testing.assert_array_equal(fake_quant(x, float(scale)), session(model).run(None, {"x": x})[0])


def test_a_heavy_tailed_input_gets_a_smaller_scale_and_a_smaller_error():
    """Student-t inputs with a max-based scale: clipping the rare tail costs less than the coarse steps."""
    rng = np.random.default_rng(1)
    x = rng.standard_t(3, size=(1, 4000, 16)).astype(np.float32)
    w = rng.standard_normal((1, 8, 16)).astype(np.float32)
    s0 = float(np.abs(x).max()) / 127
    best, ratio = choose_scale(s0, [(x, x, w, w)])
    assert best < s0 and ratio < 0.8
    error = lambda s: float(np.square(np.einsum("grk,gok->gro", fake_quant(x, s), w) - x @ w[0].T).sum())  # noqa: E731
    assert error(best) == pytest.approx(ratio * error(s0), rel=1e-3)
    assert np.isclose(FACTORS, best / s0, rtol=1e-9).any()


def test_the_histogram_scale_is_kept_when_nothing_on_the_grid_beats_it():
    x = np.linspace(-1, 1, 4001, dtype=np.float32).reshape(1, -1, 1)  # uniform: max-based is best
    w = np.ones((1, 1, 1), np.float32)
    s0 = 1 / 127
    best, ratio = choose_scale(s0, [(x, x, w, w)])
    assert best == s0 and ratio == 1.0


@pytest.fixture(scope="module")
def chain():
    model = conv_chain()
    calib = image_batches(0, SHAPE, 8, 2, offset=0.5)
    return model, calib, quantize_model(model, activation_amax(model, calib)).model


def _activation_scales(qdq: onnx.ModelProto) -> dict[str, float]:
    index = GraphIndex.build(qdq, infer=False)
    weighted = frozenset(n.name for n in qdq.graph.node if n.op_type == "Conv")
    found = {}
    for node in qdq.graph.node:
        if node.op_type == "Conv":
            scale = input_scale(index, node.input[0], weighted)
            if scale is not None and scale.refinable:
                found[scale.tensor] = scale.scale
    return found


def _output_error(fp32: onnx.ModelProto, qdq: onnx.ModelProto, feeds) -> float:
    ref = np.concatenate([v["y"] for _, v in run_batches(fp32, feeds, ["y"])])
    out = np.concatenate([v["y"] for _, v in run_batches(qdq, feeds, ["y"])])
    return float(np.sum((ref.astype(np.float64) - out) ** 2))


def test_ranges_are_rechosen_in_the_model_and_lower_the_output_error(chain):
    model, calib, qdq = chain
    before = _activation_scales(qdq)
    assert set(before) == {"x", "r1", "r2"}
    rounded, report = round_weights(model, qdq, calib, ranges=True)
    plain, _ = round_weights(model, qdq, calib)
    after = _activation_scales(rounded)
    chosen = {r.tensor: r for r in report.ranges}
    assert set(chosen) == set(before)
    for name, r in chosen.items():
        assert after[name] * 127 == pytest.approx(r.amax_after, rel=1e-6)
        assert r.amax_before == pytest.approx(before[name] * 127, rel=1e-6)
        assert r.error_ratio <= 1.0
    assert any(r.amax_after != r.amax_before for r in chosen.values())
    # measured end to end on ONNX Runtime, on the calibration data the choice was made on
    assert _output_error(model, rounded, calib) < _output_error(model, plain, calib)
    assert round_weights(model, qdq, calib, ranges=True)[0].SerializeToString() == rounded.SerializeToString()


def test_a_scale_shared_with_another_reader_is_left_alone(chain):
    """conv2's input also feeds a graph output through its float tensor: not refinable."""
    model, calib, _ = chain
    shared = onnx.ModelProto()
    shared.CopyFrom(model)
    shared.graph.output.append(helper.make_tensor_value_info("r1", 1, None))
    qdq = quantize_model(shared, activation_amax(shared, calib)).model
    _, report = round_weights(shared, qdq, calib, ranges=True)
    assert "r1" not in {r.tensor for r in report.ranges}
