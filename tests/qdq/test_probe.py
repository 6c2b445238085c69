"""Partly quantized views of a Q/DQ model and the probe model, checked against independent computations."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.accuracy_models import image_batches, outlier_classifier
from tests.qdq.helpers import activation_amax, run
from trtq.accuracy.evaluation import run_batches
from trtq.accuracy.metrics import ErrorSums
from trtq.accuracy.probe import SqnrSums, only_layers, probe_model, quantized_layers
from trtq.config import QuantizeConfig
from trtq.qdq import quantize_model


@pytest.fixture(scope="module")
def setup():
    model = outlier_classifier()
    feeds = image_batches(0, (3, 8, 8), 8, 2)
    amax = activation_amax(model, feeds)
    return model, feeds, amax, quantize_model(model, amax).model


def _ops(model: onnx.ModelProto) -> list[str]:
    return [n.op_type for n in model.graph.node]


def test_quantized_layers_are_the_nodes_reading_dq_outputs(setup):
    _, _, _, qdq = setup
    assert quantized_layers(qdq) == [("conv1", "Conv"), ("conv2", "Conv"), ("conv3", "Conv"),
                                     ("gap", "GlobalAveragePool"), ("fc", "Gemm")]


def test_no_layer_kept_is_the_fp32_model(setup):
    model, feeds, _, qdq = setup
    plain = only_layers(qdq, [])
    assert "QuantizeLinear" not in _ops(plain) and "DequantizeLinear" not in _ops(plain)
    assert len(plain.graph.initializer) == len(model.graph.initializer)  # scales and zero points dropped
    np.testing.assert_allclose(run(plain, feeds[0])[0], run(model, feeds[0])[0], rtol=1e-5, atol=1e-5)


def test_one_layer_kept_equals_quantizing_it_alone_by_exclusion(setup):
    # conv2's placement depends on no neighbour, so excluding every other layer gives the same model.
    model, feeds, amax, qdq = setup
    alone = only_layers(qdq, ["conv2"])
    assert [name for name, _ in quantized_layers(alone)] == ["conv2"]
    excluded = quantize_model(model, amax, QuantizeConfig(exclude_nodes=["conv1", "conv3", "gap", "fc"])).model
    np.testing.assert_allclose(run(alone, feeds[1])[0], run(excluded, feeds[1])[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(run(only_layers(qdq, [n for n, _ in quantized_layers(qdq)]), feeds[1])[0],
                               run(qdq, feeds[1])[0], rtol=1e-6, atol=1e-6)


def _fake_quant(x: np.ndarray, scale: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x / scale), -128, 127) * scale


def test_probe_output_is_the_layer_on_quantized_fp32_inputs():
    # y = x @ W: the probe of the MatMul computes fq(x) @ fq(W) with x from the FP32 path, where
    # fq(x) uses amax/127 per tensor and fq(W) max|W[:, j]|/127 per output column (axis 1).
    rng = np.random.default_rng(3)
    w = rng.standard_normal((16, 8)).astype(np.float32)
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["h"], name="relu"),
                               helper.make_node("MatMul", ["h", "w"], ["y"], name="mm")], "mm",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 8])],
                              [numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    x = rng.standard_normal((4, 16)).astype(np.float32)
    h = np.maximum(x, 0)
    qdq = quantize_model(model, {"h": float(h.max())}).model
    probe, pairs = probe_model(qdq)
    assert list(pairs) == ["mm"]
    _, values = next(run_batches(probe, [{"x": x}], list(pairs["mm"])))
    expected = _fake_quant(h, np.float32(h.max() / 127)) @ _fake_quant(w, (np.abs(w).max(axis=0) / 127)
                                                                        .astype(np.float32))
    np.testing.assert_allclose(values[pairs["mm"][0]], h @ w, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(values[pairs["mm"][1]], expected, rtol=1e-4, atol=1e-4)


def test_pre_quantized_weights_keep_their_dq(setup):
    model, _, amax, _ = setup
    int8 = quantize_model(model, amax, QuantizeConfig(weights="int8")).model
    plain = only_layers(int8, [])
    assert _ops(plain).count("DequantizeLinear") == 4  # the four weights; no activation Q/DQ left
    assert "QuantizeLinear" not in _ops(plain)
    _, pairs = probe_model(int8)
    assert set(pairs) == {"conv1", "conv2", "conv3", "gap", "fc"}


def test_sqnr_sums_match_error_sums_and_skip_nonfinite():
    rng = np.random.default_rng(4)
    ref = rng.standard_normal((3, 50)).astype(np.float32)
    test = ref + rng.normal(0, 0.01, ref.shape).astype(np.float32)
    lean, full = SqnrSums(), ErrorSums()
    for r, t in zip(ref, test, strict=True):
        lean.update(r, t)
        full.update(r, t)
    assert lean.sqnr_db == pytest.approx(full.sqnr_db, abs=1e-3)
    bad = test.copy()
    bad[0, 0] = np.nan
    skipping = SqnrSums()
    skipping.update(ref, bad)
    kept = np.ones(ref.shape, bool)
    kept[0, 0] = False
    expected = 10 * np.log10(np.sum(ref[kept] ** 2.0) / np.sum((ref[kept] - test[kept]) ** 2.0))
    assert skipping.sqnr_db == pytest.approx(expected, abs=1e-3)
    assert SqnrSums().sqnr_db == float("inf")
