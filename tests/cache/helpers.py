"""Shared builders for the cache tests: a tiny Conv model and provenance for it."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from trtq.cache.table import Provenance, names_sha256
from trtq.onnx_model.model import ModelFingerprint


def conv_model(weight_scale: float = 1.0, activation: str = "Relu") -> onnx.ModelProto:
    """x[1,2,4,4] -> Conv(w, b) -> activation -> y, with seeded weights times `weight_scale`."""
    rng = np.random.default_rng(0)
    w = (rng.standard_normal((3, 2, 1, 1)) * weight_scale).astype(np.float32)
    b = np.zeros(3, np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w", "b"], ["conv_out"], name="conv"),
         helper.make_node(activation, ["conv_out"], ["y"], name="act")],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 4, 4])],
        initializer=[numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def provenance_for(fp: ModelFingerprint, names: list[str], algorithm: str = "entropy") -> Provenance:
    return Provenance(
        model_graph_sha256=fp.graph, model_weights_sha256=fp.weights, tensor_names_sha256=names_sha256(names),
        algorithm=algorithm, num_samples=64, data_sha256="d" * 64, algorithm_params={"start_bin": 128},
        num_bins=2048, onnxruntime_version="1.31.0",
    )
