"""Q/DQ placement: which tensors get Q/DQ, which do not, with which axis, shared by whom."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.qdq import models
from tests.qdq.helpers import dq_inputs_of, qdq_nodes
from trtq.config import QuantizeConfig
from trtq.errors import ConfigError
from trtq.onnx_model.tensors import activation_tensors
from trtq.qdq.quantizer import quantize_model


def _amax(model: onnx.ModelProto, value: float = 1.0) -> dict[str, float]:
    return dict.fromkeys(activation_tensors(model), value)


def _quantize(model: onnx.ModelProto, amax: dict[str, float] | None = None, **options):
    return quantize_model(model, amax if amax is not None else _amax(model), QuantizeConfig(**options))


def _init(model: onnx.ModelProto, name: str) -> np.ndarray:
    return numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == name))


def _axis(node: onnx.NodeProto) -> int | None:
    return next((a.i for a in node.attribute if a.name == "axis"), None)


def _weight_q(model: onnx.ModelProto, weight: str) -> tuple[int | None, np.ndarray]:
    (q,) = qdq_nodes(model)[weight]
    return _axis(q), _init(model, q.input[1])


def test_conv_bn_relu_quantizes_weighted_and_pool_inputs_only():
    result = _quantize(models.conv_bn_relu())
    q = qdq_nodes(result.model)
    assert set(q) == {"x", "w1", "p1", "w2", "r2", "flat", "fc_w"}
    # No pairs on Conv outputs, around BN/ReLU, around MaxPool's input, or on biases and graph outputs.
    for tensor in ("c1", "bn1", "r1", "c2", "gap", "y", "b1", "b2", "fc_b"):
        assert tensor not in q
    assert dq_inputs_of(result.model, "conv1") == ["x", "w1", None]
    assert dq_inputs_of(result.model, "maxpool") == [None]
    assert dq_inputs_of(result.model, "bn1")[0] is None
    assert dq_inputs_of(result.model, "gap") == ["r2"]
    assert dq_inputs_of(result.model, "fc") == ["flat", "fc_w", None]
    for weight, channels in (("w1", 8), ("w2", 16), ("fc_w", 10)):  # Conv W[K,...] and Gemm transB=1: axis 0
        axis, scale = _weight_q(result.model, weight)
        assert axis == 0 and scale.shape == (channels,)
    axis, scale = _weight_q(result.model, "x")
    assert axis is None and scale.shape == ()  # activations: per-tensor, no axis attribute
    assert {n.name for n in result.report.quantized} == {"conv1", "conv2", "gap", "fc"}


def test_weight_scales_are_channel_max_over_127():
    model = models.conv_bn_relu()
    result = _quantize(model)
    w1 = _init(model, "w1")
    _, scale = _weight_q(result.model, "w1")
    np.testing.assert_allclose(scale, np.abs(w1).max(axis=(1, 2, 3)) / 127, rtol=1e-6)
    zero_point = _init(result.model, qdq_nodes(result.model)["w1"][0].input[2])
    assert zero_point.dtype == np.int8 and zero_point.shape == (8,) and not zero_point.any()


def test_residual_block_shares_one_pair_for_the_skip_input():
    result = _quantize(models.residual_block())
    q = qdq_nodes(result.model)
    assert len(q["x"]) == 1  # one pair, read by conv1 and by the Add
    assert dq_inputs_of(result.model, "conv1")[0] == "x"
    assert dq_inputs_of(result.model, "add") == [None, "x"]  # conv2's output fuses, the skip is quantized
    dq_out = next(n.output[0] for n in result.model.graph.node if n.op_type == "DequantizeLinear"
                  and n.input[0] == q["x"][0].output[0])
    readers = [n.name for n in result.model.graph.node if dq_out in n.input]
    assert sorted(readers) == ["add", "conv1"]
    assert "c2" not in q and "sum" not in q and "r1" in q


def _two_conv_add(order: tuple[str, str]) -> onnx.ModelProto:
    rng = np.random.default_rng(7)
    inits = [numpy_helper.from_array(rng.standard_normal((4, 4, 1, 1)).astype(np.float32), n) for n in ("ws", "wa")]
    inits += [numpy_helper.from_array(np.ones(4, np.float32), n) for n in ("s", "b", "m", "v")]
    nodes = {
        "shortcut": helper.make_node("Conv", ["x", "ws"], ["sc"], name="shortcut"),
        "main": helper.make_node("Conv", ["x", "wa"], ["ca"], name="main"),
    }
    graph_nodes = [nodes[order[0]], nodes[order[1]],
                   helper.make_node("BatchNormalization", ["ca", "s", "b", "m", "v"], ["bn"], name="bn"),
                   helper.make_node("Add", ["bn", "sc"], ["y"], name="add")]
    graph = helper.make_graph(graph_nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 5, 5])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 5, 5])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


@pytest.mark.parametrize(("order", "expected"), [(("shortcut", "main"), [None, "sc"]),
                                                 (("main", "shortcut"), ["bn", None])])
def test_add_of_two_convs_quantizes_the_earlier_branch(order, expected):
    # Both inputs come from quantized convs (one through a BN, which folds): the later one fuses with the Add.
    result = _quantize(_two_conv_add(order))
    assert dq_inputs_of(result.model, "add") == expected


def test_depthwise_conv_is_per_channel_over_its_channels():
    result = _quantize(models.depthwise())
    for weight, channels in (("dw", 8), ("pw", 16)):
        axis, scale = _weight_q(result.model, weight)
        assert axis == 0 and scale.shape == (channels,)
    assert set(qdq_nodes(result.model)) == {"x", "dw", "r", "pw"}


def test_gemm_and_matmul_weight_axes():
    result = _quantize(models.mlp())
    assert _weight_q(result.model, "g1_w")[0] == 0  # transB=1: B[N,K]
    axis, scale = _weight_q(result.model, "g2_w")  # transB=0: B[K,N] = [32, 24]
    assert axis == 1 and scale.shape == (24,)
    axis, scale = _weight_q(result.model, "mm_w")  # MatMul B[K,N] = [24, 10]
    assert axis == 1 and scale.shape == (10,)
    assert dq_inputs_of(result.model, "bias_add") == [None, None]
    assert all(s.name != "bias_add" for s in result.report.skipped)  # a bias Add is not a candidate


def test_a_position_bias_before_the_mask_is_part_of_the_attention_core():
    from trtq.qdq.attention import find_attention
    from trtq.qdq.graph import GraphIndex

    model = models.attention_with_position_bias()
    index = GraphIndex.build(model)
    (core,) = find_attention(index)
    assert [index.node(i).name for i in core.bias_adds] == ["mask_add", "position_add"]
    assert {"s", "s_scaled", "s_biased", "s_masked", "position_bias", "mask_bias"} <= set(core.score_tensors)
    default = _quantize(model)
    assert dq_inputs_of(default.model, "qk") == [None, None] and dq_inputs_of(default.model, "pv") == [None, None]
    int8 = _quantize(model, attention="int8")
    assert dq_inputs_of(int8.model, "qk") == ["q", "kt"] and dq_inputs_of(int8.model, "pv") == ["p", "v"]
    for result in (default, int8):  # neither bias Add is taken for a residual Add
        for add in ("position_add", "mask_add"):
            assert dq_inputs_of(result.model, add) == [None, None]


def test_attention_quantizes_both_activation_inputs_per_tensor():
    result = _quantize(models.attention(), attention="int8")
    assert dq_inputs_of(result.model, "qk") == ["q", "kt"]
    assert dq_inputs_of(result.model, "pv") == ["p", "v"]
    q = qdq_nodes(result.model)
    for tensor in ("q", "kt", "p", "v", "x"):
        assert len(q[tensor]) == 1 and _axis(q[tensor][0]) is None
    for tensor in ("s", "s_scaled", "y", "k"):  # softmax in/out of the scores, outputs, the pre-transpose K
        assert tensor not in q
    assert _weight_q(result.model, "wq")[0] == 1


def test_concat_inputs_and_output_share_the_largest_scale():
    model = models.concat_branches()
    amax = _amax(model)
    amax.update({"ra": 2.0, "rb": 5.0, "cat": 4.0})
    result = _quantize(model, amax)
    q = qdq_nodes(result.model)
    scales = {t: float(_init(result.model, q[t][0].input[1])) for t in ("ra", "rb", "cat")}
    assert scales == pytest.approx(dict.fromkeys(("ra", "rb", "cat"), 5.0 / 127))
    assert dq_inputs_of(result.model, "concat") == ["ra", "rb"]
    assert dq_inputs_of(result.model, "conv_c")[0] == "cat"
    assert result.report.activation_scales["ra"] == pytest.approx(5.0 / 127)
    assert float(_init(result.model, q["x"][0].input[1])) == pytest.approx(1.0 / 127)  # unaffected


def test_concat_feeding_only_float_ops_stays_float():
    model = models.concat_branches()
    result = _quantize(model, exclude_nodes=["conv_c"])
    q = qdq_nodes(result.model)
    assert "cat" not in q and "ra" not in q and "rb" not in q
    assert dq_inputs_of(result.model, "conv_c") == [None, None]


def test_conv_transpose_axis_1_and_grouped_falls_back_to_per_tensor():
    axis, scale = _weight_q(_quantize(models.conv_transpose()).model, "wt")
    assert axis == 1 and scale.shape == (6,)  # W[Cin, Cout, kh, kw]
    model = models.conv_transpose(group=2)
    axis, scale = _weight_q(_quantize(model).model, "wt")
    assert axis is None and scale.shape == ()
    assert float(scale) == pytest.approx(np.abs(_init(model, "wt")).max() / 127, rel=1e-6)


def test_excluded_op_types_nodes_and_regex_stay_float():
    model = models.conv_bn_relu()
    result = _quantize(model, exclude_op_types=["Gemm"])
    assert dq_inputs_of(result.model, "fc") == [None, None, None]
    assert "flat" not in qdq_nodes(result.model) and "fc_w" not in qdq_nodes(result.model)
    assert ("fc", "excluded by --exclude-op-types (Gemm)") in [(s.name, s.reason) for s in result.report.skipped]
    result = _quantize(model, exclude_nodes=["conv2"])
    assert dq_inputs_of(result.model, "conv2") == [None, None, None]
    assert dq_inputs_of(result.model, "conv1")[:2] == ["x", "w1"]
    result = _quantize(model, exclude_regex="^conv")
    assert {n.name for n in result.report.quantized} == {"gap", "fc"}
    assert not result.report.warnings  # exclusions are what the user asked for: not warnings


def test_excluded_consumer_keeps_reading_the_float_tensor():
    result = _quantize(models.residual_block(), exclude_nodes=["add"])
    assert dq_inputs_of(result.model, "conv1")[0] == "x"
    add = next(n for n in result.model.graph.node if n.name == "add")
    assert list(add.input) == ["c2", "x"]


def test_missing_amax_leaves_the_node_float_with_a_warning():
    model = models.residual_block()
    amax = _amax(model)
    del amax["r1"]
    result = _quantize(model, amax)
    q = qdq_nodes(result.model)
    assert "r1" not in q and "w2" not in q  # conv2 keeps its float weight too: INT8 needs both inputs
    assert dq_inputs_of(result.model, "conv1")[:2] == ["x", "w1"]
    assert result.report.warnings == ["Conv 'conv2' left in float: no amax for input 'r1'"]


def _conv_with_constant_weight(through_identity: bool) -> onnx.ModelProto:
    w = np.arange(2 * 3 * 3 * 3, dtype=np.float32).reshape(2, 3, 3, 3) / 10 - 2.5
    nodes = [helper.make_node("Constant", [], ["w"], name="wconst", value=numpy_helper.from_array(w))]
    weight = "w"
    if through_identity:
        nodes.append(helper.make_node("Identity", ["w"], ["w_id"], name="ident"))
        weight = "w_id"
    nodes.append(helper.make_node("Conv", ["x", weight], ["y"], name="conv"))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 2, 2])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_constant_node_weights_are_quantized_per_channel():
    result = _quantize(_conv_with_constant_weight(False))
    axis, scale = _weight_q(result.model, "w")
    assert axis == 0 and scale.shape == (2,)
    int8 = _quantize(_conv_with_constant_weight(False), weights="int8")
    assert not [n for n in int8.model.graph.node if n.op_type == "Constant"]  # replaced by an INT8 initializer


def test_weight_computed_from_constants_is_reported():
    result = _quantize(_conv_with_constant_weight(True))
    assert not qdq_nodes(result.model)
    (warning,) = result.report.warnings
    assert "w_id" in warning and "fold" in warning


@pytest.mark.parametrize(("options", "text"), [
    ({"exclude_regex": "conv("}, "not a valid regular expression"),
    ({"exclude_nodes": ["cnov1"]}, "cnov1"),
    ({"precision": "int4"}, "int4"),
    ({"weights": "fp32"}, "fp32"),
])
def test_bad_options_are_config_errors(options, text):
    with pytest.raises(ConfigError, match=text.replace("(", r"\(")) as info:
        _quantize(models.conv_bn_relu(), **options)
    if "exclude_nodes" in options:
        assert info.value.hint == "did you mean 'conv1'?"


def test_excluded_op_type_absent_from_the_model_is_a_warning_with_a_suggestion(caplog):
    with caplog.at_level("WARNING"):
        result = _quantize(models.conv_bn_relu(), exclude_op_types=["Gem"])
    assert "the model has no Gem node (did you mean 'Gemm'?)" in caplog.text
    assert "fc" in {n.name for n in result.report.quantized}
