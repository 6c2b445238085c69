"""Small image models built in code for the calibration tests: NCHW float input 'x' of SIZE x SIZE, dynamic batch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

SIZE = 32  # spatial size of the input


def save(model: onnx.ModelProto, path: Path, **kwargs) -> Path:
    """Check and save `model` with an IR version ONNX Runtime 1.31 reads (onnx writes 14, ORT reads <= 13)."""
    model.ir_version = 10
    onnx.checker.check_model(model)
    onnx.save_model(model, str(path), **kwargs)
    return path


def image_input() -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, SIZE, SIZE])


def conv_classifier() -> onnx.ModelProto:
    """Conv 3->8 (seeded weights), Relu, MaxPool, GlobalAveragePool, Flatten, Gemm 8->4, Softmax -> 'prob' [N, 4]."""
    rng = np.random.default_rng(7)
    inits = [numpy_helper.from_array(rng.normal(0, 0.3, (8, 3, 3, 3)).astype(np.float32), "cw"),
             numpy_helper.from_array(rng.normal(0, 0.1, 8).astype(np.float32), "cb"),
             numpy_helper.from_array(rng.normal(0, 0.5, (4, 8)).astype(np.float32), "gw"),
             numpy_helper.from_array(rng.normal(0, 0.1, 4).astype(np.float32), "gb")]
    nodes = [
        helper.make_node("Conv", ["x", "cw", "cb"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("GlobalAveragePool", ["p"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Gemm", ["f", "gw", "gb"], ["l"], transB=1),
        helper.make_node("Softmax", ["l"], ["prob"]),
    ]
    graph = helper.make_graph(nodes, "conv", [image_input()],
                              [helper.make_tensor_value_info("prob", TensorProto.FLOAT, ["N", 4])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def image_args(size: int = SIZE) -> list[str]:
    """`trtq calibrate` flags that turn any photo into the models' input (0..1, exact resize, no threads)."""
    return ["--resize", "exact", "--height", str(size), "--width", str(size), "--workers", "0"]
