"""Learned weight rounding (trtq.accuracy.weight_rounding), measured on ONNX Runtime."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper, numpy_helper

from tests.accuracy_models import conv_chain, image_batches
from tests.qdq.helpers import activation_amax
from trtq.accuracy.evaluation import run_batches
from trtq.accuracy.probe import float_sources
from trtq.accuracy.weight_rounding import round_weights
from trtq.qdq import quantize_model
from trtq.qdq.layer_rows import layer_shape
from trtq.qdq.rounding_solvers import adaround, gptq_round, nearest, row_errors, target_errors

SHAPE = (3, 12, 12)


@pytest.mark.parametrize(("op", "x_shape", "w_shape", "attrs"), [
    ("Conv", (2, 6, 9, 11), (4, 3, 3, 3), {"group": 2, "strides": [2, 1], "pads": [1, 0, 2, 1], "dilations": [1, 2]}),
    ("Conv", (2, 8, 7, 7), (8, 1, 5, 5), {"group": 8, "pads": [2, 2, 2, 2]}),
    ("Conv", (2, 8, 7), (5, 8, 3), {"pads": [1, 1], "strides": [2]}),
    ("ConvTranspose", (2, 4, 5, 6), (4, 3, 3, 3), {"strides": [2, 2], "pads": [1, 1, 1, 1], "output_padding": [1, 0]}),
    ("ConvTranspose", (2, 4, 5, 6), (4, 3, 2, 2), {"strides": [2, 2]}),
    ("Gemm", (7, 5), (7, 3), {"transA": 1}),
    ("MatMul", (2, 5, 7), (7, 3), {}),
])
def test_rows_times_weight_matrix_is_the_layer_output(op, x_shape, w_shape, attrs):
    rng = np.random.default_rng(0)
    w = rng.standard_normal(w_shape).astype(np.float32)
    x = rng.standard_normal(x_shape).astype(np.float32)
    node = helper.make_node(op, ["x", "w"], ["y"], **attrs)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", 1, None)],
                              [helper.make_tensor_value_info("y", 1, None)], [numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    y = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    shape = layer_shape(node, w.shape)
    matrix = shape.matrix(w)
    predicted = np.einsum("grk,gok->rgo", shape.rows(x, None, rng), matrix).reshape(-1, y.shape[1 if "Conv" in op
                                                                                              else -1])
    expected = np.moveaxis(y.reshape(*y.shape[:2], -1), 1, 2).reshape(-1, y.shape[1]) if "Conv" in op \
        else y.reshape(-1, y.shape[-1])
    np.testing.assert_allclose(predicted, expected, atol=1e-4)
    np.testing.assert_array_equal(shape.weight(matrix), w)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_learned_rounding_never_loses_to_nearest_on_a_constructed_layer(seed):
    """Correlated inputs with an offset (like post-ReLU activations): the errors of nearest rounding add up."""
    rng = np.random.default_rng(seed)
    k = 48
    x = (rng.standard_normal((2000, k)) @ (np.eye(k) + 0.3 * rng.standard_normal((k, k))) + 0.5)[None]
    w = rng.standard_normal((1, 24, k))
    s = np.abs(w).max(-1) / 127
    h = np.einsum("grk,grl->gkl", x, x)
    plain = row_errors(w, s, nearest(w, s), h)
    for q in (gptq_round(w, s, h), adaround(w, s, h, iterations=300)):
        errors = row_errors(w, s, q, h)
        assert np.all(errors <= plain + 1e-9)
        assert errors.sum() < 0.8 * plain.sum()
        assert q.min() >= -127 and q.max() <= 127 and np.array_equal(q, np.rint(q))


def test_asymmetric_adaround_stays_within_one_step_and_beats_nearest_on_its_objective():
    """Inputs carrying an upstream error (X~ = X + E): the target is the FP32 output X W^T."""
    rng = np.random.default_rng(4)
    k = 32
    x = (rng.standard_normal((3000, k)) @ (np.eye(k) + 0.3 * rng.standard_normal((k, k))) + 0.5)[None]
    xq = x + 0.05 * rng.standard_normal(x.shape)
    w = rng.standard_normal((1, 16, k))
    s = np.abs(w).max(-1) / 127
    h, cross = np.einsum("grk,grl->gkl", xq, xq), np.einsum("grk,grl->gkl", xq, x)
    b = np.matmul(w, np.swapaxes(cross, 1, 2))
    q = adaround(w, s, h, iterations=300, b=b)
    floor = np.floor(w / s[..., None])
    assert np.all(q >= floor) and np.all(q <= floor + 1)  # never more than one step from W
    learned, plain = target_errors(b, s, q, h), target_errors(b, s, nearest(w, s), h)
    assert np.all(learned <= plain + 1e-9) and learned.sum() < plain.sum()


@pytest.fixture(scope="module")
def chain():
    model = conv_chain()
    calib = image_batches(0, SHAPE, 8, 2, offset=0.5)
    return model, calib, quantize_model(model, activation_amax(model, calib)).model


def _weights(qdq: onnx.ModelProto) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Layer -> (integers its weight DQ reads, per-channel scale), computed as the Q node does."""
    inits = {t.name: numpy_helper.to_array(t) for t in qdq.graph.initializer}
    producers = {o: n for n in qdq.graph.node for o in n.output}
    out = {}
    for node in qdq.graph.node:
        if node.op_type == "Conv":
            dq = producers[node.input[1]]
            q = producers[dq.input[0]]
            scale = inits[dq.input[1]]
            w = inits[q.input[0]]
            ints = np.clip(np.rint(w / scale.reshape(-1, 1, 1, 1)), -128, 127)
            out[node.name] = ints, scale
    return out


def _layer_error(fp32: onnx.ModelProto, qdq: onnx.ModelProto, layer_output: str, feeds) -> float:
    ref = np.concatenate([v[layer_output] for _, v in run_batches(fp32, feeds, [layer_output])])
    out = np.concatenate([v[layer_output] for _, v in run_batches(qdq, feeds, [layer_output])])
    return float(np.sum((ref.astype(np.float64) - out) ** 2))


@pytest.mark.parametrize("target", ["fp32", "self"])
def test_rounded_model_keeps_scales_and_int8_range_and_lowers_layer_errors(chain, target):
    model, calib, qdq = chain
    rounded, report = round_weights(model, qdq, calib, target=target)
    assert [r.node for r in report.layers] == ["conv1", "conv2", "conv3"]
    assert [r.level for r in report.layers] == [0, 1, 2]
    before, after = _weights(qdq), _weights(rounded)
    changed = 0
    for name, (ints, scale) in after.items():
        np.testing.assert_array_equal(scale, before[name][1])  # same scales
        assert ints.min() >= -127 and ints.max() <= 127
        changed += int(np.count_nonzero(ints != before[name][0]))
    assert changed > 0
    for r in report.layers:
        assert r.sqnr_learned >= r.sqnr_nearest
    # measured on ONNX Runtime: conv1 reads the same quantized input in both models, so its output
    # error on the calibration data can only fall
    assert _layer_error(model, rounded, "c1", calib) < _layer_error(model, qdq, "c1", calib)
    assert _layer_error(model, rounded, "y", calib) < _layer_error(model, qdq, "y", calib)


def test_rounding_is_deterministic(chain):
    model, calib, qdq = chain
    first = round_weights(model, qdq, calib, rows_per_sample=16)[0].SerializeToString()
    assert round_weights(model, qdq, calib, rows_per_sample=16)[0].SerializeToString() == first


def test_pre_quantized_int8_weights_are_rounded_in_place(chain):
    model, calib, _ = chain
    from trtq.config import QuantizeConfig

    qdq = quantize_model(model, activation_amax(model, calib), QuantizeConfig(weights="int8")).model
    rounded, report = round_weights(model, qdq, calib)
    assert len(report.layers) == 3 and not float_sources(rounded).keys() & {"w1", "w2", "w3"}
    ints = [numpy_helper.to_array(t) for t in rounded.graph.initializer if t.data_type == onnx.TensorProto.INT8
            and t.dims and len(t.dims) == 4]
    assert len(ints) == 3 and all(a.min() >= -127 for a in ints)
    assert _layer_error(model, rounded, "y", calib) < _layer_error(model, qdq, "y", calib)


@pytest.mark.network
def test_learned_rounding_lowers_the_error_of_real_detector_layers(ocr_detector):
    """PP-OCRv4's detector on real photos (64x64, 4 samples), its first 8 layers: every layer's output error
    on the calibration rows is at most nearest's, and lower on average; measured on ONNX Runtime, the output
    error of the first layer (same quantized input in both models) falls."""
    from tests.qdq.test_real_models import _image

    model = onnx.load(str(ocr_detector))
    calib = [{"x": np.concatenate([_image(n, 64, 64) for n in ("coffee.png", "astronaut.png")])},
             {"x": np.concatenate([_image(n, 64, 64) for n in ("chelsea.png", "rocket.jpg")])}]
    qdq = quantize_model(model, activation_amax(model, calib)).model
    first = [n.name for n in model.graph.node if n.op_type == "Conv"][:8]
    rounded, report = round_weights(model, qdq, calib, rows_per_sample=64, layers=first)
    assert [r.node for r in report.layers] == first
    gains = [r.sqnr_learned - r.sqnr_nearest for r in report.layers]
    assert min(gains) >= 0 and np.mean(gains) > 0.5
    conv0 = next(n for n in model.graph.node if n.name == first[0]).output[0]
    assert _layer_error(model, rounded, conv0, calib) < _layer_error(model, qdq, conv0, calib)
