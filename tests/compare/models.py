"""Small FP32 classifiers built with onnx.helper (seeded weights) and their Q/DQ versions."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from tests.qdq.helpers import activation_amax
from trtq.config import QuantizeConfig
from trtq.qdq import quantize_model

CLASSES = 10
INPUT_SHAPE = (3, 8, 8)  # per sample; the batch dimension is dynamic ("N")


def _w(rng: np.random.Generator, name: str, shape: tuple[int, ...], gain: float = 1.0) -> onnx.TensorProto:
    fan_in = int(np.prod(shape[1:]))
    return numpy_helper.from_array((rng.standard_normal(shape) * gain * (2.0 / fan_in) ** 0.5).astype(np.float32),
                                   name)


def branchy_classifier(seed: int = 0) -> onnx.ModelProto:
    """x -> Conv a -> Relu (ra) ------------------------------+-> Add (sum) -> GAP -> Flatten -> Gemm -> Softmax
       x -> Conv b -> Relu (rb) -> Conv c (cc, weights x0.05) -+                         (logits)     (prob [N, 10])

    The c branch is small next to the a branch, so an error made there (e.g. a clipped range
    on rb) ruins cc but is diluted in sum and everything after it.
    """
    rng = np.random.default_rng(seed)
    fc_w = rng.standard_normal((CLASSES, 8)) * 3.0
    fc_w -= fc_w.mean(axis=1, keepdims=True)  # rows sum to 0: a feature offset shared by all channels favours no class
    inits = [_w(rng, "wa", (8, 3, 3, 3)), _w(rng, "wb", (8, 3, 3, 3)), _w(rng, "wc", (8, 8, 1, 1), 0.05),
             numpy_helper.from_array(fc_w.astype(np.float32), "fc_w"),
             numpy_helper.from_array(rng.normal(0, 0.1, CLASSES).astype(np.float32), "fc_b")]
    nodes = [
        helper.make_node("Conv", ["x", "wa"], ["ca"], name="conv_a", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["ca"], ["ra"], name="relu_a"),
        helper.make_node("Conv", ["x", "wb"], ["cb"], name="conv_b", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["cb"], ["rb"], name="relu_b"),
        helper.make_node("Conv", ["rb", "wc"], ["cc"], name="conv_c"),
        helper.make_node("Add", ["ra", "cc"], ["sum"], name="add"),
        helper.make_node("GlobalAveragePool", ["sum"], ["gap"], name="gap"),
        helper.make_node("Flatten", ["gap"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["logits"], name="fc", transB=1),
        helper.make_node("Softmax", ["logits"], ["prob"], name="softmax", axis=1),
    ]
    graph = helper.make_graph(
        nodes, "branchy", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *INPUT_SHAPE])],
        [helper.make_tensor_value_info("prob", TensorProto.FLOAT, ["N", CLASSES])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def batches(seed: int, sizes: tuple[int, ...]) -> list[dict[str, np.ndarray]]:
    """Feed dicts, one per batch size: standard-normal pixels plus a random offset per sample and
    channel (like the colour cast of a photo), so that the classifier's answer varies between samples."""
    rng = np.random.default_rng(seed)
    return [{"x": (rng.standard_normal((n, *INPUT_SHAPE)) + rng.normal(0, 1.5, (n, 3, 1, 1))).astype(np.float32)}
            for n in sizes]


def quantized(model: onnx.ModelProto, calib: list[dict[str, np.ndarray]], shrink: dict[str, float] | None = None,
              precision: str = "int8") -> onnx.ModelProto:
    """`model` quantized with amax = max |x| over `calib`, each amax in `shrink` multiplied by its factor."""
    amax = activation_amax(model, calib)
    for name, factor in (shrink or {}).items():
        amax[name] *= factor
    return quantize_model(model, amax, QuantizeConfig(precision=precision)).model
