"""Small ONNX models for the engine tests, built in code."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def conv_classifier(batch: int | str = "N", seed: int = 0) -> onnx.ModelProto:
    """x[batch,3,16,16] -> Conv 8 -> Relu -> Conv 8 -> Relu -> GlobalAveragePool -> Flatten -> Gemm -> y[batch,10]."""
    rng = np.random.default_rng(seed)

    def weight(name: str, shape: tuple[int, ...], scale: float) -> onnx.TensorProto:
        return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)

    initializers = [
        weight("w1", (8, 3, 3, 3), 0.3), weight("b1", (8,), 0.1),
        weight("w2", (8, 8, 3, 3), 0.15), weight("b2", (8,), 0.1),
        weight("wf", (10, 8), 0.5), weight("bf", (10,), 0.1),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv_1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu_1"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="conv_2", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu_2"),
        helper.make_node("GlobalAveragePool", ["r2"], ["gap"], name="gap"),
        helper.make_node("Flatten", ["gap"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "wf", "bf"], ["y"], name="fc", transB=1),
    ]
    graph = helper.make_graph(
        nodes, "conv_classifier",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 10])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    onnx.checker.check_model(model)
    return model
