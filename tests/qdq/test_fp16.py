"""--fp16: float parts in FP16, FP16 Q/DQ scales, FP32 graph interface."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from tests.qdq import models
from tests.qdq.helpers import activation_amax, random_feeds, run, sqnr_db
from trtq.config import QuantizeConfig
from trtq.onnx_model.model import opset_version
from trtq.qdq.quantizer import quantize_model
from trtq.runtime.qdq_options import ort_optimization_level


def _types(model: onnx.ModelProto) -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    g = inferred.graph
    types = {vi.name: vi.type.tensor_type.elem_type for vi in (*g.input, *g.value_info, *g.output)}
    types.update({t.name: t.data_type for t in g.initializer})
    return types


def test_fp16_model_types_and_accuracy():
    model = models.residual_block()
    feeds = random_feeds(model, seed=0, count=2)
    result = quantize_model(model, activation_amax(model, feeds), QuantizeConfig(fp16=True))
    q = result.model
    onnx.checker.check_model(q, full_check=True)
    assert opset_version(q) == 19 and result.report.fp16  # FP16 scales need DequantizeLinear-19
    types = _types(q)
    assert types["x"] == TensorProto.FLOAT and types["y"] == TensorProto.FLOAT  # interface unchanged
    assert not [t for t in q.graph.initializer if t.data_type == TensorProto.FLOAT]
    for node in q.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            assert types[node.input[1]] == TensorProto.FLOAT16
        if node.op_type == "DequantizeLinear":
            assert types[node.output[0]] == TensorProto.FLOAT16  # DQ output type = scale type
        if node.op_type in ("Conv", "Add", "Relu"):
            assert types[node.output[0]] == TensorProto.FLOAT16
    assert ort_optimization_level(q) == "basic"
    assert sqnr_db(run(model, feeds[1])[0], run(q, feeds[1])[0]) > 30


def test_fp16_keeps_resize_scales_in_fp32():
    rng = np.random.default_rng(9)
    inits = [numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales"),
             numpy_helper.from_array(rng.standard_normal((2, 3, 3, 3)).astype(np.float32), "w")]
    nodes = [helper.make_node("Resize", ["x", "", "scales"], ["up"], name="resize", mode="nearest"),
             helper.make_node("Conv", ["up", "w"], ["y"], name="conv", pads=[1, 1, 1, 1])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 8, 8])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    feeds = random_feeds(model, seed=0)
    result = quantize_model(model, activation_amax(model, feeds), QuantizeConfig(fp16=True))
    onnx.checker.check_model(result.model, full_check=True)
    resize = next(n for n in result.model.graph.node if n.op_type == "Resize")
    assert _types(result.model)[resize.input[2]] == TensorProto.FLOAT
    assert sqnr_db(run(model, feeds[0])[0], run(result.model, feeds[0])[0]) > 30
