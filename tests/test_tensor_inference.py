"""Shape inference without the weights (trtq.onnx_model.tensors.inferred_value_info) gives what ONNX's
infer_shapes gives on the whole model, tensor for tensor, byte for byte."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.lm_models import bert_encoder
from trtq.onnx_model.tensors import WEIGHT_ELEMENTS, inferred_value_info


def _onnx_inference(model: onnx.ModelProto) -> list[bytes]:
    graph = onnx.shape_inference.infer_shapes(model, strict_mode=False).graph
    return [vi.SerializeToString(deterministic=True) for vi in (*graph.input, *graph.value_info, *graph.output)]


def _ours(model: onnx.ModelProto) -> list[bytes]:
    return [vi.SerializeToString(deterministic=True) for vi in inferred_value_info(model)]


def _projection(ir_version: int, weights_listed_as_inputs: bool) -> onnx.ModelProto:
    """x [N, 64] @ W [64, 64] (a weight: 4096 elements), reshaped by a small shape initializer, resized
    by a small float scales initializer: the two kinds of values that decide shapes."""
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.standard_normal((64, 64)).astype(np.float32), "W")
    shape = numpy_helper.from_array(np.array([-1, 1, 8, 8], np.int64), "shape")
    scales = numpy_helper.from_array(np.array([1.0, 1.0, 2.0, 2.0], np.float32), "scales")
    nodes = [helper.make_node("MatMul", ["x", "W"], ["h"], name="proj"),
             helper.make_node("Reshape", ["h", "shape"], ["r"], name="reshape"),
             helper.make_node("Resize", ["r", "", "scales"], ["y"], name="resize", mode="nearest")]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 64])]
    if weights_listed_as_inputs:
        inputs.append(helper.make_tensor_value_info("W", TensorProto.FLOAT, [64, 64]))
    graph = helper.make_graph(nodes, "proj", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              initializer=[weight, shape, scales])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=ir_version)


@pytest.mark.parametrize(("ir_version", "listed"), [(8, False), (3, True)])
def test_same_as_onnx_inference_on_a_projection(ir_version, listed):
    model = _projection(ir_version, listed)
    assert np.prod(model.graph.initializer[0].dims) > WEIGHT_ELEMENTS
    ours = inferred_value_info(model)
    assert _ours(model) == _onnx_inference(model)
    by_name = {vi.name: vi for vi in ours}
    assert [d.dim_value for d in by_name["y"].type.tensor_type.shape.dim][1:] == [1, 16, 16]  # scales were read
    assert ("W" in by_name) is listed  # a stand-in input is not reported; an input the model lists is


@pytest.mark.parametrize("mask", ["additive", "where"])
def test_same_as_onnx_inference_on_the_test_encoder(mask):
    model = bert_encoder(mask=mask)
    assert any(np.prod(t.dims) > WEIGHT_ELEMENTS for t in model.graph.initializer)
    assert _ours(model) == _onnx_inference(model)


def test_the_model_is_not_changed():
    model = _projection(8, False)
    before = model.SerializeToString(deterministic=True)
    inferred_value_info(model)
    assert model.SerializeToString(deterministic=True) == before
