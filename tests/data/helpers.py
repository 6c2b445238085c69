"""Shared builders for the data tests: input specs, configs, a two-input ONNX model."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper
from PIL import Image

from tests import assets
from trtq.config import Config, DataConfig, PreprocessConfig
from trtq.onnx_model.model import TensorSpec, graph_inputs, load_model, save_model

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


def spec(shape, name: str = "x", dtype: str = "float32") -> TensorSpec:
    return TensorSpec(name, tuple(shape) if shape is not None else None, np.dtype(dtype))


def pre(**changes) -> PreprocessConfig:
    return dataclasses.replace(PreprocessConfig(), **changes)


def data(**changes) -> DataConfig:
    return dataclasses.replace(DataConfig(), **changes)


def config(data_changes: dict | None = None, pre_changes: dict | None = None) -> Config:
    return Config(data=data(**(data_changes or {})), preprocess=pre(**(pre_changes or {})))


def photo(name: str = "chelsea.png") -> Image.Image:
    """A real photo, decoded, as RGB."""
    with Image.open(assets.photo(name)) as image:
        return image.convert("RGB")


def two_input_model(tmp_path: Path) -> list[TensorSpec]:
    """Inputs of a saved and reloaded ONNX model: image (N,3,8,8) and scale (N,4) -> Mul/ReduceMean."""
    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, 8, 8])
    scale = helper.make_tensor_value_info("scale", TensorProto.FLOAT, ["N", 4])
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1])
    nodes = [
        helper.make_node("ReduceMean", ["image"], ["m"], axes=[1, 2, 3], keepdims=0),
        helper.make_node("Unsqueeze", ["m", "axis"], ["mu"]),
        helper.make_node("Mul", ["mu", "scale"], ["p"]),
        helper.make_node("ReduceSum", ["p", "axis"], ["y"], keepdims=1),
    ]
    axis = onnx.numpy_helper.from_array(np.array([1], dtype=np.int64), "axis")
    graph = helper.make_graph(nodes, "two_inputs", [image, scale], [out], [axis])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(model)
    path = tmp_path / "two_inputs.onnx"
    save_model(model, path)
    return graph_inputs(load_model(path))
