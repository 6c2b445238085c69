"""quantize_model end to end: ONNX checker, opset, ONNX Runtime CPU execution and closeness to FP32."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.qdq import models
from tests.qdq.helpers import activation_amax, qdq_nodes, random_feeds, run, session, sqnr_db
from trtq.config import QuantizeConfig
from trtq.errors import CacheError
from trtq.onnx_model.model import opset_version, save_model
from trtq.qdq.quantizer import quantize_model
from trtq.runtime.qdq_options import ort_optimization_level

BUILDERS = {
    "conv_bn_relu": models.conv_bn_relu,
    "residual_block": models.residual_block,
    "depthwise": models.depthwise,
    "mlp": models.mlp,
    "attention": models.attention,
    "concat_branches": models.concat_branches,
    "conv_transpose": models.conv_transpose,
}
# INT8 with exact max|x| ranges keeps ~30-40 dB on these nets; FP8 E4M3 has 3 mantissa bits (~25 dB).
MIN_SQNR_DB = {"int8": 30.0, "fp8": 20.0}


def _calibrated(name: str):
    model = BUILDERS[name]()
    amax = activation_amax(model, random_feeds(model, seed=0, count=4))
    return model, amax


def _sqnr(model: onnx.ModelProto, quantized: onnx.ModelProto) -> float:
    feeds = random_feeds(model, seed=1, count=2)
    ref, test = session(model), session(quantized)
    return min(sqnr_db(ref.run(None, f)[0], test.run(None, f)[0]) for f in feeds)


@pytest.mark.parametrize("name", BUILDERS)
@pytest.mark.parametrize("precision", ["int8", "fp8"])
def test_quantized_model_is_valid_and_close_to_fp32(name, precision):
    model, amax = _calibrated(name)
    result = quantize_model(model, amax, QuantizeConfig(precision=precision))
    onnx.checker.check_model(result.model, full_check=True)
    assert opset_version(result.model) == (13 if precision == "int8" else 19)
    assert _sqnr(model, result.model) > MIN_SQNR_DB[precision]
    assert result.report.precision == precision and result.report.quantized


def test_fp8_types_scales_and_ort_level():
    model, amax = _calibrated("conv_bn_relu")
    result = quantize_model(model, amax, QuantizeConfig(precision="fp8"))
    q = qdq_nodes(result.model)["r2"][0]
    inits = {t.name: t for t in result.model.graph.initializer}
    assert inits[q.input[2]].data_type == TensorProto.FLOAT8E4M3FN
    assert float(numpy_helper.to_array(inits[q.input[1]])) == pytest.approx(amax["r2"] / 448, rel=1e-6)
    assert result.model.ir_version >= 9  # FP8 types need IR 9
    assert ort_optimization_level(result.model) == "basic"
    assert ort_optimization_level(quantize_model(model, amax).model) == "all"


def test_int8_weights_mode_stores_int8_and_matches_qdq_mode():
    model, amax = _calibrated("conv_bn_relu")
    qdq = quantize_model(model, amax).model
    int8 = quantize_model(model, amax, QuantizeConfig(weights="int8")).model
    inits = {t.name: t for t in int8.graph.initializer}
    assert "w1" not in inits and "fc_w" not in inits  # the float weights are gone
    dq = next(n for n in int8.graph.node if n.op_type == "DequantizeLinear" and n.input[0].startswith("w1"))
    values = numpy_helper.to_array(inits[dq.input[0]])
    scale = numpy_helper.to_array(inits[dq.input[1]])
    w1 = numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == "w1"))
    assert values.dtype == np.int8 and np.abs(values).max(axis=(1, 2, 3)).tolist() == [127] * 8
    np.testing.assert_array_equal(values, np.rint(w1 / scale[:, None, None, None]).astype(np.int8))
    assert not [n for n in int8.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == "w1"]
    feeds = random_feeds(model, seed=3)[0]
    np.testing.assert_allclose(run(int8, feeds)[0], run(qdq, feeds)[0], rtol=1e-5, atol=1e-6)


def test_input_model_is_not_modified():
    model, amax = _calibrated("residual_block")
    before = model.SerializeToString()
    quantize_model(model, amax, QuantizeConfig(weights="int8", fp16=True))
    assert model.SerializeToString() == before


def test_saved_model_runs_from_file(tmp_path):
    model, amax = _calibrated("mlp")
    result = quantize_model(model, amax)
    path = tmp_path / "mlp.qdq.onnx"
    save_model(result.model, path)
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = random_feeds(model, seed=1)[0]
    assert sqnr_db(run(model, feeds)[0], sess.run(None, feeds)[0]) > MIN_SQNR_DB["int8"]


@pytest.mark.parametrize("bad", [float("nan"), -1.0, float("inf"), "big"])
def test_bad_amax_is_a_cache_error(bad):
    model, amax = _calibrated("mlp")
    amax["a1"] = bad
    with pytest.raises(CacheError, match="'a1'"):
        quantize_model(model, amax)


def test_per_tensor_only_model_keeps_its_opset():
    # Only activation x activation MatMul: no per-channel axis, so opset 10 Q/DQ suffice.
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["y"], name="mm")], "g",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, [2, 3]),
         helper.make_tensor_value_info("b", TensorProto.FLOAT, [3, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 10)])
    model.ir_version = 5
    result = quantize_model(model, {"a": 2.0, "b": 3.0})
    assert opset_version(result.model) == 10 and result.report.opset == (10, 10)
    onnx.checker.check_model(result.model)
    feeds = {"a": np.array([[1.0, -2.0, 0.5], [2.0, 0.0, -1.0]], np.float32),
             "b": np.array([[3.0, 0, 0, 1.5], [0, -3.0, 0, 0], [0, 0, 3.0, 0]], np.float32)}
    # Every input value lies on the INT8 grid (scales 2/127, 3/127 would not be exact), so compare loosely.
    np.testing.assert_allclose(run(result.model, feeds)[0], feeds["a"] @ feeds["b"], atol=0.1)


def _opset11_model() -> onnx.ModelProto:
    """Conv -> Split(split attr) -> ReduceSum(axes attr) / Squeeze+Unsqueeze(axes attrs) -> Concat -> Conv."""
    rng = np.random.default_rng(11)
    inits = [numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32) * 0.3, "w1"),
             numpy_helper.from_array(rng.standard_normal((2, 3, 1, 1)).astype(np.float32) * 0.5, "w2")]
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Split", ["c"], ["a", "b"], name="split", axis=1, split=[2, 2]),
        helper.make_node("ReduceSum", ["a"], ["r"], name="rsum", axes=[1], keepdims=1),
        helper.make_node("Squeeze", ["b"], ["bs"], name="squeeze", axes=[0]),
        helper.make_node("Unsqueeze", ["bs"], ["bu"], name="unsqueeze", axes=[0]),
        helper.make_node("Concat", ["r", "bu"], ["cat"], name="concat", axis=1),
        helper.make_node("Conv", ["cat", "w2"], ["y"], name="conv2"),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 6, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 6, 6])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])
    model.ir_version = 6
    return model


def test_opset_11_model_is_converted_with_changed_ops():
    model = _opset11_model()
    amax = activation_amax(model, random_feeds(model, seed=0, count=2))
    result = quantize_model(model, amax)
    assert result.report.opset == (11, 13)
    onnx.checker.check_model(result.model, full_check=True)
    ops = {n.op_type: n for n in result.model.graph.node}
    for op in ("Split", "ReduceSum", "Squeeze", "Unsqueeze"):  # axes/split moved from attributes to inputs at 13
        assert len(ops[op].input) == 2
        assert not {a.name for a in ops[op].attribute} & {"axes", "split"}
    assert "opset raised from 11 to 13" in result.report.summary()
    # The Concat shares one scale between the ReduceSum branch and a branch with about half its range,
    # which costs the smaller branch a bit of resolution: ~25 dB here.
    assert _sqnr(model, result.model) > 20.0


def test_all_zero_weight_channel_gets_a_positive_scale():
    model = models.depthwise()
    w = next(t for t in model.graph.initializer if t.name == "dw")
    values = numpy_helper.to_array(w).copy()
    values[3] = 0.0  # a dead channel, as pruning leaves them
    w.CopyFrom(numpy_helper.from_array(values, "dw"))
    amax = activation_amax(model, random_feeds(model, seed=0, count=2))
    result = quantize_model(model, amax, QuantizeConfig(weights="int8"))
    dq = next(n for n in result.model.graph.node if n.op_type == "DequantizeLinear" and n.input[0].startswith("dw"))
    inits = {t.name: numpy_helper.to_array(t) for t in result.model.graph.initializer}
    scale, q = inits[dq.input[1]], inits[dq.input[0]]
    assert np.all(scale > 0) and np.isfinite(scale).all() and scale[3] < 1e-9
    assert not q[3].any() and np.abs(q[[0, 1, 2, 4]]).max() == 127
    assert _sqnr(model, result.model) > MIN_SQNR_DB["int8"]
