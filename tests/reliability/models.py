"""Tiny models for the reliability tests, built in code (IR 10 for ONNX Runtime 1.31)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def save(model: onnx.ModelProto, path: Path) -> Path:
    model.ir_version = 10
    onnx.checker.check_model(model)
    onnx.save_model(model, str(path))
    return path


def matmul_model(zero_branch: bool = False, width: int = 4) -> onnx.ModelProto:
    """x [N, width] -> MatMul(w) -> Relu -> y; with `zero_branch`, also z = Mul(x, 0) (constant zero)."""
    rng = np.random.default_rng(3)
    inits = [numpy_helper.from_array(rng.normal(0, 0.5, (width, width)).astype(np.float32), "w")]
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Relu", ["m"], ["y"])]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", width])]
    if zero_branch:
        inits.append(numpy_helper.from_array(np.zeros((1,), np.float32), "zero"))
        nodes += [helper.make_node("Mul", ["x", "zero"], ["z0"]), helper.make_node("MatMul", ["z0", "w"], ["z"])]
        outputs.append(helper.make_tensor_value_info("z", TensorProto.FLOAT, ["N", width]))
    graph = helper.make_graph(nodes, "mm", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", width])],
                              outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def npy_folder(folder: Path, arrays: list[np.ndarray]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, array in enumerate(arrays):
        np.save(folder / f"{i:03d}.npy", array.astype(np.float32))
    return folder


def matmul_chain(depth: int = 4, width: int = 4, seed: int = 5) -> onnx.ModelProto:
    """x -> (MatMul -> Relu) x depth -> y: `depth` quantizable inputs (x, r0, r1, ...)."""
    rng = np.random.default_rng(seed)
    nodes, inits, prev = [], [], "x"
    for i in range(depth):
        inits.append(numpy_helper.from_array(rng.normal(0, 0.5, (width, width)).astype(np.float32), f"w{i}"))
        out = "y" if i == depth - 1 else f"r{i}"
        nodes += [helper.make_node("MatMul", [prev, f"w{i}"], [f"m{i}"]), helper.make_node("Relu", [f"m{i}"], [out])]
        prev = out
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", width])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", width])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
