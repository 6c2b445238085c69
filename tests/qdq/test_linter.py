"""The Q/DQ linter: one test per rule, ONNX Runtime's quantize_static output, and trtq's own output."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.qdq import models
from tests.qdq.helpers import activation_amax, qdq_nodes, random_feeds
from trtq.config import QuantizeConfig
from trtq.onnx_model.model import save_model
from trtq.onnx_model.tensors import activation_tensors
from trtq.qdq.linter import RULES, Finding, lint_model
from trtq.qdq.quantizer import quantize_model


def _trtq_model(precision: str = "int8") -> onnx.ModelProto:
    model = models.conv_bn_relu()
    amax = dict.fromkeys(activation_tensors(model), 2.0)
    return quantize_model(model, amax, QuantizeConfig(precision=precision)).model


def _set(model: onnx.ModelProto, name: str, value: np.ndarray) -> None:
    tensor = next(t for t in model.graph.initializer if t.name == name)
    tensor.CopyFrom(numpy_helper.from_array(value, name))


def _pair(model: onnx.ModelProto, tensor: str) -> tuple[onnx.NodeProto, onnx.NodeProto]:
    q = qdq_nodes(model)[tensor][0]
    dq = next(n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] == q.output[0])
    return q, dq


def _rules(findings: list[Finding], node: str | None = None) -> set[str]:
    return {f.rule for f in findings if node is None or f.node == node}


def test_trtq_models_have_no_findings():
    for build in (models.conv_bn_relu, models.residual_block, models.depthwise, models.mlp, models.attention,
                  models.concat_branches, models.conv_transpose, lambda: models.conv_transpose(group=2)):
        model = build()
        amax = activation_amax(model, random_feeds(model, seed=0))
        for options in (QuantizeConfig(), QuantizeConfig(precision="fp8"), QuantizeConfig(weights="int8"),
                        QuantizeConfig(fp16=True)):
            assert lint_model(quantize_model(model, amax, options).model) == []


def test_float_model_gives_one_info_line():
    assert lint_model(models.mlp()) == [Finding("info", "no-qdq", "", "no Q/DQ nodes")]


def test_nonzero_zero_point():
    model = _trtq_model()
    q, dq = _pair(model, "x")
    _set(model, q.input[2], np.array(3, np.int8))
    findings = lint_model(model)
    assert _rules(findings) == {"nonzero-zero-point"}
    assert {f.node for f in findings} == {q.name, dq.name}
    assert all(f.severity == "error" and "[3.0]" in f.message for f in findings)


def test_uint8_zero_point_is_unsigned_type():
    model = _trtq_model()
    q, _ = _pair(model, "x")
    _set(model, q.input[2], np.array(0, np.uint8))
    findings = lint_model(model)
    assert _rules(findings) == {"unsigned-type"} and "UINT8" in findings[0].message


def test_quantize_without_zero_point_is_uint8():
    model = _trtq_model()
    q, dq = _pair(model, "x")
    del q.input[2]
    del dq.input[2]
    findings = lint_model(model)
    assert _rules(findings, q.name) == {"unsigned-type"}
    assert "without a zero point outputs UINT8" in next(f.message for f in findings if f.node == q.name)


def test_missing_axis_on_per_channel_weights():
    model = _trtq_model()
    q, dq = _pair(model, "w1")
    for node in (q, dq):
        del node.attribute[:]
    findings = lint_model(model)
    assert _rules(findings) == {"missing-axis"} and {f.node for f in findings} == {q.name, dq.name}
    assert "defaults axis to 0" in findings[0].message


def test_per_channel_scale_on_an_activation():
    model = _trtq_model()
    q, dq = _pair(model, "x")
    _set(model, q.input[1], np.full(3, 0.02, np.float32))
    _set(model, q.input[2], np.zeros(3, np.int8))
    for node in (q, dq):
        node.attribute.append(helper.make_attribute("axis", 1))
    findings = lint_model(model)
    assert _rules(findings) == {"per-channel-activation"} and findings[0].node == q.name


@pytest.mark.parametrize("values", [[0.01, 0.0], [0.01, np.nan], [-0.01, 0.01], [np.inf, 0.01]])
def test_bad_scale(values):
    model = _trtq_model()
    q, _ = _pair(model, "w1")
    scale = np.full(8, 0.01, np.float32)
    scale[:2] = values
    _set(model, q.input[1], scale)
    findings = lint_model(model)
    assert _rules(findings) == {"bad-scale"}


def test_scale_computed_at_run_time():
    model = _trtq_model()
    q, dq = _pair(model, "x")
    model.graph.initializer.append(numpy_helper.from_array(np.array(127, np.float32), "qmax"))
    extra = [helper.make_node("Abs", ["x"], ["x_abs"]), helper.make_node("ReduceMax", ["x_abs"], ["x_amax"],
                                                                          keepdims=0),
             helper.make_node("Div", ["x_amax", "qmax"], ["x_dyn_scale"])]
    for i, node in enumerate(extra):
        model.graph.node.insert(i, node)
    q.input[1] = dq.input[1] = "x_dyn_scale"
    findings = lint_model(model)
    assert _rules(findings) == {"scale-not-constant"} and "x_dyn_scale" in findings[0].message


def test_opset_too_old_for_per_channel_and_fp8():
    model = _trtq_model()
    model.opset_import[0].version = 12
    findings = lint_model(model)
    assert _rules(findings) == {"opset-too-old"}
    assert len(findings) == 2 * 3  # Q and DQ of the three per-channel weights
    fp8 = _trtq_model("fp8")
    fp8.opset_import[0].version = 13
    findings = lint_model(fp8)
    assert _rules(findings) == {"opset-too-old"}
    assert {f.message.split(" need")[0] for f in findings} == {"FP8 types"}  # per-channel is fine at 13


def test_scale_length_differs_from_channel_count():
    model = _trtq_model()
    q, dq = _pair(model, "w1")  # W1 has 8 output channels along axis 0
    _set(model, q.input[1], np.full(7, 0.01, np.float32))
    findings = lint_model(model)
    assert _rules(findings) == {"scale-length"}
    assert "scale has 7 values but input 'w1' has 8 along axis 0" in findings[0].message
    assert {f.node for f in findings} == {q.name, dq.name}


def _qdq(tensor: str, scale: str = "s", zp: str = "zp", out: str | None = None) -> list[onnx.NodeProto]:
    return [helper.make_node("QuantizeLinear", [tensor, scale, zp], [f"{tensor}_q"], name=f"{tensor}_Q"),
            helper.make_node("DequantizeLinear", [f"{tensor}_q", scale, zp], [out or f"{tensor}_dq"],
                             name=f"{tensor}_DQ")]


def _conv_graph(tail: list[onnx.NodeProto], output: str, shape=(1, 4, 4, 4), extra_inits=()) -> onnx.ModelProto:
    """x -> Q/DQ -> Conv(DQ(w)) -> c, then `tail` nodes."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(np.array(0.02, np.float32), "s"),
             numpy_helper.from_array(np.array(0, np.int8), "zp"),
             numpy_helper.from_array(np.rint(rng.uniform(-127, 127, (4, 3, 1, 1))).astype(np.int8), "w_q"),
             numpy_helper.from_array(np.full(4, 0.01, np.float32), "w_s"),
             numpy_helper.from_array(np.zeros(4, np.int8), "w_zp"), *extra_inits]
    nodes = [*_qdq("x"), helper.make_node("DequantizeLinear", ["w_q", "w_s", "w_zp"], ["w"], name="w_DQ", axis=0),
             helper.make_node("Conv", ["x_dq", "w"], ["c"], name="conv"), *tail]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
                              [helper.make_tensor_value_info(output, TensorProto.FLOAT, shape)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_conv_graph_itself_is_clean():
    assert lint_model(_conv_graph([helper.make_node("Relu", ["c"], ["y"])], "y")) == []


def test_output_qdq_feeding_only_float_ops():
    model = _conv_graph([*_qdq("c"), helper.make_node("Softmax", ["c_dq"], ["y"], name="softmax", axis=1)], "y")
    findings = lint_model(model)
    assert [(f.rule, f.node, f.severity) for f in findings] == [("output-qdq", "c_Q", "warning")]
    assert "Softmax" in findings[0].message


def test_output_qdq_on_a_graph_output():
    findings = lint_model(_conv_graph(_qdq("c", out="y"), "y"))
    assert _rules(findings) == {"output-qdq"}


@pytest.mark.parametrize("through_bn", [False, True])
def test_qdq_between_conv_and_bn_or_relu(through_bn):
    bn_inits = [numpy_helper.from_array(np.ones(4, np.float32), n) for n in ("g", "b", "m", "v")]
    if through_bn:  # Conv -> BN -> Q/DQ -> Relu
        tail = [helper.make_node("BatchNormalization", ["c", "g", "b", "m", "v"], ["bn"], name="bn"),
                *_qdq("bn"), helper.make_node("Relu", ["bn_dq"], ["y"], name="relu")]
    else:  # Conv -> Q/DQ -> BN
        tail = [*_qdq("c"), helper.make_node("BatchNormalization", ["c_dq", "g", "b", "m", "v"], ["y"], name="bn")]
    findings = lint_model(_conv_graph(tail, "y", extra_inits=bn_inits))
    assert _rules(findings) == {"qdq-splits-fusion"}
    assert ("Relu 'relu'" if through_bn else "BatchNormalization 'bn'") in findings[0].message


def test_dangling_q():
    tail = [helper.make_node("Relu", ["c"], ["r"], name="relu"),
            helper.make_node("QuantizeLinear", ["r", "s", "zp"], ["y"], name="r_Q")]
    model = _conv_graph(tail, "y")
    model.graph.output[0].type.tensor_type.elem_type = TensorProto.INT8
    findings = lint_model(model)
    assert [(f.rule, f.node) for f in findings] == [("dangling-q", "r_Q")]


def test_double_quantization_with_a_different_scale():
    s2 = numpy_helper.from_array(np.array(0.05, np.float32), "s2")
    tail = [helper.make_node("Relu", ["c"], ["r"], name="relu"), *_qdq("r"), *_qdq("r_dq", scale="s2"),
            helper.make_node("Relu", ["r_dq_dq"], ["y"], name="relu2")]
    findings = lint_model(_conv_graph(tail, "y", extra_inits=[s2]))
    assert [(f.rule, f.node) for f in findings] == [("double-quantization", "r_dq_Q")]
    same = [helper.make_node("Relu", ["c"], ["r"], name="relu"), *_qdq("r"), *_qdq("r_dq"),
            helper.make_node("Relu", ["r_dq_dq"], ["y"], name="relu2")]
    assert lint_model(_conv_graph(same, "y")) == []  # same scale: redundant but exact


def test_pair_mismatch():
    s2 = numpy_helper.from_array(np.array(0.05, np.float32), "s2")
    tail = [helper.make_node("Relu", ["c"], ["r"], name="relu"),
            helper.make_node("QuantizeLinear", ["r", "s", "zp"], ["r_q"], name="r_Q"),
            helper.make_node("DequantizeLinear", ["r_q", "s2", "zp"], ["r_dq"], name="r_DQ"),
            helper.make_node("Relu", ["r_dq"], ["y"], name="relu2")]
    findings = lint_model(_conv_graph(tail, "y", extra_inits=[s2]))
    assert [(f.rule, f.node) for f in findings] == [("pair-mismatch", "r_Q")]


def test_errors_come_before_warnings_and_every_rule_is_documented():
    tail = [*_qdq("c"), helper.make_node("Softmax", ["c_dq"], ["y"], name="softmax", axis=1)]
    model = _conv_graph(tail, "y")
    _set(model, "w_zp", np.ones(4, np.int8))
    severities = [f.severity for f in lint_model(model)]
    assert severities == sorted(severities, key=["error", "warning"].index) and "warning" in severities
    import trtq.qdq.linter as linter

    for rule in RULES:
        assert rule in linter.__doc__


class _Reader:
    """onnxruntime CalibrationDataReader over a list of feed dicts."""

    def __init__(self, feeds):
        self._it = iter(feeds)

    def get_next(self):
        return next(self._it, None)


@pytest.mark.parametrize("activation_type", ["default", "QUInt8"])
def test_onnxruntime_quantize_static_output_is_rejected(tmp_path, activation_type):
    from onnxruntime.quantization import QuantType, quantize_static

    model = models.residual_block()
    save_model(model, tmp_path / "fp32.onnx")
    kwargs = {} if activation_type == "default" else {"activation_type": QuantType.QUInt8}
    quantize_static(str(tmp_path / "fp32.onnx"), str(tmp_path / "ort.onnx"),
                    _Reader(random_feeds(model, seed=0, count=2)), **kwargs)
    findings = lint_model(onnx.load(str(tmp_path / "ort.onnx")))
    errors = [f for f in findings if f.severity == "error"]
    expected = {"nonzero-zero-point"} if activation_type == "default" else {"nonzero-zero-point", "unsigned-type"}
    assert expected <= _rules(errors)
    # Every activation Q/DQ is asymmetric; ORT's symmetric per-channel weights are fine.
    assert any("onnxruntime quantize_static" in f.message for f in errors)
    assert not [f for f in errors if f.node.startswith(("w1", "w2"))]
