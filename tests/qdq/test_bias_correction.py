"""Bias correction lowers the mean output error of coarsely quantized models, measured on ONNX Runtime."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.accuracy_models import conv_chain, image_batches
from tests.qdq.helpers import activation_amax
from trtq.accuracy.bias_correction import apply_bias_correction, correct_biases
from trtq.accuracy.evaluation import run_batches
from trtq.config import QuantizeConfig
from trtq.errors import ConfigError
from trtq.qdq import quantize_model

SHAPE = (3, 12, 12)


@pytest.fixture(scope="module")
def chain():
    """The conv chain, its calibration and held-out data, and a Q/DQ model with 4x too coarse activation ranges."""
    model = conv_chain()
    calib = image_batches(0, SHAPE, 8, 4, offset=0.5)
    held_out = image_batches(1, SHAPE, 8, 4, offset=0.5)
    amax = {name: 4.0 * value for name, value in activation_amax(model, calib).items()}
    return model, calib, held_out, quantize_model(model, amax).model


def _errors(fp32: onnx.ModelProto, candidate: onnx.ModelProto, feeds, output: str = "y") -> tuple[float, float]:
    """(mean over channels of |mean over N,H,W of (FP32 - candidate)|, mean squared error) of `output`."""
    ref = np.concatenate([v[output] for _, v in run_batches(fp32, feeds, [output])]).astype(np.float64)
    out = np.concatenate([v[output] for _, v in run_batches(candidate, feeds, [output])]).astype(np.float64)
    diff = ref - out
    axes = tuple(d for d in range(diff.ndim) if d != 1)
    return float(np.abs(diff.mean(axis=axes)).mean()), float(np.mean(diff**2))


def test_sequential_correction_removes_the_mean_error(chain):
    model, calib, held_out, qdq = chain
    corrected, report = correct_biases(model, qdq, calib)
    assert [(s.node, s.level) for s in report.layers] == [("conv1", 0), ("conv2", 1), ("conv3", 2)]
    assert report.passes == 4 and report.samples == 32 and report.method == "sequential"
    calib_before, calib_after = _errors(model, qdq, calib), _errors(model, corrected, calib)
    # The last layer is corrected with everything before it final and nothing after it: on the calibration
    # data its per-channel means match FP32 up to float32 rounding.
    assert calib_after[0] < 1e-3 * calib_before[0]
    before, after = _errors(model, qdq, held_out), _errors(model, corrected, held_out)
    assert after[0] < 0.5 * before[0]
    assert after[1] < before[1]


def test_fast_correction_helps_in_one_pass_but_less_than_sequential(chain):
    model, calib, held_out, qdq = chain
    corrected, report = correct_biases(model, qdq, calib, method="fast")
    assert report.passes == 1 and len(report.layers) == 3
    before, after = _errors(model, qdq, held_out), _errors(model, corrected, held_out)
    assert after[0] < 0.75 * before[0]
    sequential = _errors(model, correct_biases(model, qdq, calib)[0], held_out)
    assert sequential[0] < after[0]  # fast leaves the shifts passed on through the Relus uncorrected


def test_biases_are_shifted_in_place_or_created(chain):
    model, calib, _, qdq = chain
    corrected, report = correct_biases(model, qdq, calib)
    created = {s.node: s.created for s in report.layers}
    assert created == {"conv1": False, "conv2": True, "conv3": True}
    nodes = {n.name: n for n in corrected.graph.node}
    inits = {t.name: numpy_helper.to_array(t) for t in corrected.graph.initializer}
    assert nodes["conv1"].input[2] == "b1"
    old_b1 = numpy_helper.to_array(next(t for t in qdq.graph.initializer if t.name == "b1"))
    shift = inits["b1"] - old_b1
    assert np.abs(shift).mean() == pytest.approx(report.layers[0].mean_abs_shift, rel=1e-4)
    assert inits[nodes["conv2"].input[2]].shape == (8,) and inits[nodes["conv3"].input[2]].shape == (4,)
    assert len(qdq.graph.node[0].input) == len(next(n for n in qdq.graph.node if n.name == "conv1").input)
    assert all(len(n.input) == 2 for n in qdq.graph.node if n.name in ("conv2", "conv3"))  # input untouched


def _gemm(beta: float, bias: np.ndarray | None) -> onnx.ModelProto:
    rng = np.random.default_rng(5)
    inits = [numpy_helper.from_array(rng.standard_normal((6, 16)).astype(np.float32), "w")]
    inputs = ["x", "w"]
    if bias is not None:
        inits.append(numpy_helper.from_array(bias, "c"))
        inputs.append("c")
    graph = helper.make_graph([helper.make_node("Gemm", inputs, ["y"], name="fc", transB=1, beta=beta)], "gemm",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 6])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model


@pytest.mark.parametrize(("beta", "bias"), [(2.0, np.full(6, 0.3, np.float32)), (0.5, np.float32(0.1)),
                                             (1.0, np.zeros((1, 6), np.float32)), (3.0, None)])
def test_gemm_bias_is_scaled_by_beta(beta, bias):
    # One layer, nothing after it: on the calibration data the corrected means equal FP32's, whatever
    # the shape of C and however beta scales it.
    model = _gemm(beta, bias)
    rng = np.random.default_rng(6)
    feeds = [{"x": (rng.standard_normal((32, 16)) + 1.0).astype(np.float32)} for _ in range(2)]
    qdq = quantize_model(model, {"x": 2.0 * max(float(np.abs(f["x"]).max()) for f in feeds)}).model
    corrected, report = correct_biases(model, qdq, feeds)
    before, after = _errors(model, qdq, feeds), _errors(model, corrected, feeds)
    assert before[0] > 1e-3
    assert after[0] < 1e-3 * before[0]
    assert report.layers[0].created is (bias is None)


def test_max_samples_limits_the_data_per_pass(chain):
    model, calib, _, qdq = chain
    _, report = correct_biases(model, qdq, calib, max_samples=12)
    assert report.samples == 12
    with pytest.raises(ConfigError, match="method 'exact'"):
        correct_biases(model, qdq, calib, method="exact")


def test_apply_modes(chain):
    model, calib, held_out, qdq = chain
    same, none_report = apply_bias_correction(model, qdq, calib, "none")
    assert same is qdq and none_report is None
    corrected, report = apply_bias_correction(model, qdq, calib, "auto", eval_batches=held_out)
    assert report is not None and report.sqnr_before is not None and report.sqnr_after is not None
    assert report.applied == (report.sqnr_after > report.sqnr_before)
    assert (corrected is not qdq) == report.applied
    assert "held-out SQNR" in report.summary() and report.to_dict()["applied"] == report.applied
    with pytest.raises(ConfigError, match="bias correction 'on'"):
        apply_bias_correction(model, qdq, calib, "on")


def test_layers_without_a_quantized_weight_are_left_alone(chain):
    model, calib, _, _ = chain
    amax = activation_amax(model, calib)
    partial = quantize_model(model, amax, QuantizeConfig(exclude_nodes=["conv2"])).model
    _, report = correct_biases(model, partial, calib)
    assert [s.node for s in report.layers] == ["conv1", "conv3"]
    assert [s.level for s in report.layers] == [0, 1]
