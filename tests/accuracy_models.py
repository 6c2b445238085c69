"""Small FP32 models (built with onnx.helper, seeded weights) for the accuracy tools:
bias correction, sensitivity and fallback."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

CLASSES = 10


def _he(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    fan_in = int(np.prod(shape[1:]))
    return (rng.standard_normal(shape) * (2.0 / fan_in) ** 0.5).astype(np.float32)


def _model(nodes: list, name: str, x_shape: list, y_name: str, y_shape: list, inits: list) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                              [helper.make_tensor_value_info(y_name, TensorProto.FLOAT, y_shape)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def conv_chain(seed: int = 0) -> onnx.ModelProto:
    """x[N,3,12,12] -> Conv1 (bias b1) -> Relu -> Conv2 (no bias) -> Relu -> Conv3 1x1 (no bias) -> y[N,4,12,12]."""
    rng = np.random.default_rng(seed)
    inits = [numpy_helper.from_array(_he(rng, (16, 3, 3, 3)), "w1"),
             numpy_helper.from_array(rng.normal(0, 0.1, 16).astype(np.float32), "b1"),
             numpy_helper.from_array(_he(rng, (8, 16, 3, 3)), "w2"),
             numpy_helper.from_array(_he(rng, (4, 8, 1, 1)), "w3")]
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("Conv", ["r2", "w3"], ["y"], name="conv3"),
    ]
    return _model(nodes, "conv_chain", ["N", 3, 12, 12], "y", ["N", 4, 12, 12], inits)


def outlier_classifier(seed: int = 0, outlier: float = 50.0, channels: int = 8) -> onnx.ModelProto:
    """x[N,3,8,8] -> Conv1 -> Relu (r1) -> Conv2 -> Relu -> Conv3 -> Relu -> GAP -> Flatten -> Gemm -> logits[N,10].

    Output channel 0 of conv1 is `outlier` times larger than the others, and conv2 reads that channel
    with weights `outlier` times smaller: the FP32 function is an ordinary network, but r1, the input of
    conv2, is dominated by one channel, so its per-tensor INT8 scale leaves the other channels a few
    levels only. conv2 is the layer that cannot be quantized. `channels`: of conv1..conv3.
    """
    rng = np.random.default_rng(seed)
    c = channels
    w1, w2, w3 = _he(rng, (c, 3, 3, 3)), _he(rng, (c, c, 3, 3)), _he(rng, (c, c, 3, 3))
    w1[0] *= outlier
    w2[:, 0] /= outlier
    fc = _he(rng, (CLASSES, c)) * 3.0
    inits = [numpy_helper.from_array(a, n) for a, n in ((w1, "w1"), (w2, "w2"), (w3, "w3"), (fc, "fc_w"))]
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("Conv", ["r2", "w3"], ["c3"], name="conv3", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c3"], ["r3"], name="relu3"),
        helper.make_node("GlobalAveragePool", ["r3"], ["gap"], name="gap"),
        helper.make_node("Flatten", ["gap"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "fc_w"], ["logits"], name="fc", transB=1),
    ]
    return _model(nodes, "outlier_classifier", ["N", 3, 8, 8], "logits", ["N", CLASSES], inits)


def image_batches(seed: int, shape: tuple[int, ...], batch: int, count: int,
                  offset: float = 0.0) -> list[dict[str, np.ndarray]]:
    """`count` feed dicts {"x": [batch, *shape]}: standard normal pixels plus a random offset per sample and
    channel (a colour cast, so that samples differ in more than noise) plus `offset`."""
    rng = np.random.default_rng(seed)
    cast = (batch, shape[0]) + (1,) * (len(shape) - 1)
    return [{"x": (rng.standard_normal((batch, *shape)) + rng.normal(0, 1.5, cast) + offset).astype(np.float32)}
            for _ in range(count)]
