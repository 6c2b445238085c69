"""Per-layer tensor selection and exact-name marking through Polygraphy."""

from __future__ import annotations

import onnx
from onnx import TensorProto, helper
from polygraphy.backend.onnx import ModifyOutputs

from tests.compare import models
from trtq.accuracy.layers import layer_tensors
from trtq.runtime.runners import exact_pattern


def test_quantized_layer_outputs_in_graph_order():
    fp32 = models.branchy_classifier()
    qdq = models.quantized(fp32, models.batches(0, (4,)))
    assert layer_tensors(fp32, qdq) == [("ca", "Conv"), ("cb", "Conv"), ("cc", "Conv"), ("sum", "Add"),
                                        ("gap", "GlobalAveragePool"), ("logits", "Gemm")]


def test_without_qdq_the_quantizable_ops_are_used():
    fp32 = models.branchy_classifier()
    # Relu, Flatten and Softmax are not ops TensorRT quantizes
    assert [t for t, _ in layer_tensors(fp32, fp32)] == ["ca", "cb", "cc", "sum", "gap", "logits"]


def test_names_with_wildcard_characters_are_marked_exactly():
    nodes = [helper.make_node("Relu", ["x"], ["a[0]"]), helper.make_node("Neg", ["x"], ["a0"]),
             helper.make_node("Add", ["a[0]", "a0"], ["y*"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y*", TensorProto.FLOAT, [2])])
    model = helper.make_model(graph)
    marked = ModifyOutputs(model, outputs=[exact_pattern("a[0]"), exact_pattern("y*")], copy=True)()
    assert [o.name for o in marked.graph.output] == ["a[0]", "y*"]
    assert isinstance(marked, onnx.ModelProto)
