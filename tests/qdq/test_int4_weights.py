"""INT4 weight-only quantization: valid ONNX that ONNX Runtime runs, values within half a step, GPTQ beats RTN."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from trtq.config import QuantizeConfig
from trtq.errors import ConfigError, ModelError
from trtq.pipeline.weight_only import quantize_weight_only
from trtq.qdq import lint_model
from trtq.qdq.int4_weights import pack_int4, packed_tensor
from trtq.runtime.qdq_options import QDQ_SESSION_ENTRIES

INT4 = QuantizeConfig(precision="int4-weights")


def three_layers(k: int = 200, seed: int = 0) -> onnx.ModelProto:
    """MatMul B[K, 96] -> Relu, Gemm transB=1 B[48, K], Gemm transB=0 B[K, 32] (+ bias); K=200 is not a
    multiple of the block, so the last block is partial."""
    rng = np.random.default_rng(seed)
    weights = {"w_mm": rng.standard_normal((k, 96)), "w_t": rng.standard_normal((48, k)) * 0.1,
               "w_n": rng.standard_normal((k, 32)) * np.linspace(0.1, 3, k)[:, None], "bias": rng.standard_normal(32)}
    nodes = [helper.make_node("MatMul", ["x", "w_mm"], ["h"], name="mm"),
             helper.make_node("Relu", ["h"], ["relu"], name="relu"),
             helper.make_node("Gemm", ["x", "w_t"], ["gt"], name="gemm_t", transB=1),
             helper.make_node("Gemm", ["x", "w_n", "bias"], ["gn"], name="gemm_n")]
    outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [None, d]) for n, d in
               (("relu", 96), ("gt", 48), ("gn", 32))]
    graph = helper.make_graph(nodes, "three", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, k])],
                              outputs, [numpy_helper.from_array(v.astype(np.float32), n) for n, v in weights.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _session(model: onnx.ModelProto) -> ort.InferenceSession:
    options = ort.SessionOptions()
    for key, value in QDQ_SESSION_ENTRIES.items():
        options.add_session_config_entry(key, value)
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def _dequantized(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """weight name -> the float weight the block DQ produces, computed here from the stored INT4 and scales."""
    inits = {t.name: t for t in model.graph.initializer}
    out = {}
    for node in model.graph.node:
        if node.op_type != "DequantizeLinear":
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        q = numpy_helper.to_array(inits[node.input[0]]).astype(np.float64)
        scale = numpy_helper.to_array(inits[node.input[1]]).astype(np.float64)
        axis, block = attrs["axis"], attrs["block_size"]
        out[node.output[0]] = q * np.repeat(scale, block, axis=axis)[tuple(slice(0, d) for d in q.shape)]
    return out


def test_int4_model_is_valid_onnx_that_onnxruntime_runs_within_half_a_step():
    model = three_layers()
    out = quantize_weight_only(model, INT4)
    q = out.model
    onnx.checker.check_model(q, full_check=True)
    assert max(o.version for o in q.opset_import if o.domain in ("", "ai.onnx")) >= 21
    dqs = [n for n in q.graph.node if n.op_type == "DequantizeLinear"]
    assert len(dqs) == 3 and not [n for n in q.graph.node if n.op_type == "QuantizeLinear"]
    axes = {n.output[0]: helper.get_attribute_value(next(a for a in n.attribute if a.name == "axis")) for n in dqs}
    assert axes == {"w_mm": 0, "w_t": 1, "w_n": 0}  # blocks run along K in every layout
    inits = {t.name: t for t in q.graph.initializer}
    assert all(inits[n.input[0]].data_type == TensorProto.INT4 for n in dqs)
    assert numpy_helper.to_array(inits[dqs[1].input[1]]).shape == (48, 2)  # ceil(200 / 128) blocks
    assert lint_model(q) == []

    floats = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in model.graph.initializer}
    for name, deq in _dequantized(q).items():
        w = floats[name]
        axis = 1 if name == "w_t" else 0
        blocks = np.split(np.abs(w), [128], axis=axis)  # K = 128 + 72
        step = np.concatenate([np.broadcast_to(b.max(axis=axis, keepdims=True) / 7, b.shape) for b in blocks],
                              axis=axis)
        assert np.all(np.abs(deq - w) <= step / 2 * (1 + 1e-5) + 1e-12), name

    x = np.random.default_rng(1).standard_normal((5, 200)).astype(np.float32)
    relu, gt, gn = _session(q).run(None, {"x": x})
    deq = _dequantized(q)
    np.testing.assert_allclose(relu, np.maximum(x @ deq["w_mm"], 0), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(gt, x @ deq["w_t"].T, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(gn, x @ deq["w_n"] + floats["bias"], rtol=1e-4, atol=1e-4)
    fp32 = _session(model).run(None, {"x": x})
    assert np.corrcoef(fp32[0].ravel(), relu.ravel())[0, 1] > 0.99  # a quantized model, not another one


def test_size_report_counts_packed_int4_and_scales():
    out = quantize_weight_only(three_layers(k=256), QuantizeConfig(precision="int4-weights", block_size=64))
    rows = {r.node: r for r in out.report.layers}
    assert rows["mm"].float_bytes == 256 * 96 * 4
    assert rows["mm"].int4_bytes == 256 * 96 // 2 + 4 * 96 * 4  # 4 blocks of 64 per output channel
    before, after = out.report.model_bytes
    assert before == three_layers(k=256).ByteSize() and after == out.model.ByteSize()
    assert 5 < out.report.size_reduction < 8  # 32 -> 4 bits plus one FP32 scale per 64 weights


def test_gptq_beats_rtn_on_correlated_inputs_held_out():
    """Inputs with strongly correlated channels (a rank-8 signal plus small noise): rounding errors that
    cancel along the correlated directions cost nothing, which GPTQ exploits and RTN cannot."""
    rng = np.random.default_rng(7)
    k = 128
    mix = rng.standard_normal((8, k))

    def inputs(n: int) -> np.ndarray:
        return (rng.standard_normal((n, 8)) @ mix + 0.05 * rng.standard_normal((n, k))).astype(np.float32)

    w = rng.standard_normal((k, 64)).astype(np.float32)
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], "one",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, k])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 64])],
                              [numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    calib = [{"x": inputs(64)} for _ in range(8)]
    held_out = inputs(512)
    reference = held_out @ w
    errors = {}
    for rounding in ("nearest", "learned"):
        options = QuantizeConfig(precision="int4-weights", block_size=32, weight_rounding=rounding)
        out = quantize_weight_only(model, options, calib)
        y = _session(out.model).run(None, {"x": held_out})[0]
        errors[rounding] = float(np.mean((y - reference) ** 2))
    assert out.rounding is not None and out.report.rounding == "gptq"
    (_, nearest_db, gptq_db), = out.rounding.layers
    assert gptq_db > nearest_db + 3  # on the calibration rows
    assert errors["learned"] < errors["nearest"] / 2  # and on inputs it never saw


def test_bad_options_and_models_are_refused():
    with pytest.raises(ConfigError, match="block_size"):
        quantize_weight_only(three_layers(), QuantizeConfig(precision="int4-weights", block_size=1))
    with pytest.raises(ConfigError, match="calibration data"):
        quantize_weight_only(three_layers(), QuantizeConfig(precision="int4-weights", weight_rounding="learned"))
    with pytest.raises(ConfigError, match="fp16"):
        quantize_weight_only(three_layers(), QuantizeConfig(precision="int4-weights", fp16=True))
    no_weights = helper.make_model(helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["y"])], "aa",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [4, 4]) for n in "ab"],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 4])]), opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(ModelError, match="no MatMul/Gemm weight"):
        quantize_weight_only(no_weights, INT4)
    excluded = quantize_weight_only(three_layers(), QuantizeConfig(precision="int4-weights", exclude_nodes=["mm"]))
    assert [r.node for r in excluded.report.layers] == ["gemm_t", "gemm_n"]
    assert [(s.name, s.reason) for s in excluded.report.skipped] == [("mm", "excluded by --exclude-nodes")]


def _int4_graph(consumer: str = "MatMul", shape: tuple[int, int] = (64, 8), scale_shape: tuple[int, ...] = (2, 8),
                qtype: int = TensorProto.INT4, block: int = 32, activation: bool = False) -> onnx.ModelProto:
    """x[?, 64] @ DQ(weight) with the given layout, for the linter's INT4 rules."""
    values = np.zeros(shape, np.int8)
    weight = packed_tensor("wq", pack_int4(values), shape) if qtype == TensorProto.INT4 else \
        numpy_helper.from_array(values, "wq")
    scale = numpy_helper.from_array(np.full(scale_shape, 0.1, np.float32), "ws")
    source = "xq" if activation else "wq"
    nodes = [helper.make_node("DequantizeLinear", [source, "ws"], ["w"], name="dq", axis=0, block_size=block)]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, shape[0]])]
    if activation:
        inputs.append(helper.make_tensor_value_info("xq", TensorProto.INT4, list(shape)))
    if consumer == "MatMul":
        nodes.append(helper.make_node("MatMul", ["x", "w"], ["y"], name="mm"))
    else:
        nodes.append(helper.make_node("Relu", ["w"], ["y"], name="relu"))
    graph = helper.make_graph(nodes, "g", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [weight, scale])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])


@pytest.mark.parametrize(("kwargs", "rules"), [
    ({}, []),
    ({"consumer": "Relu"}, ["int4-consumer"]),
    ({"activation": True}, ["int4-activation"]),
    ({"scale_shape": (3, 8)}, ["block-shape"]),
    ({"scale_shape": (16,)}, ["scale-length", "block-shape"]),  # a 1-D scale also reads as per-channel
    ({"qtype": TensorProto.INT8}, ["block-type"]),
    ({"shape": (64, 7), "scale_shape": (2, 7)}, ["int4-odd-dim"]),
])
def test_linter_knows_the_int4_rules(kwargs, rules):
    assert [f.rule for f in lint_model(_int4_graph(**kwargs)) if f.severity == "error"] == rules
