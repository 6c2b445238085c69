"""Small FP32 test models built with onnx.helper, seeded random weights.

Each builder returns a model whose tensor names the placement tests refer to.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 13


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _w(rng: np.random.Generator, name: str, shape: tuple[int, ...], scale: float | None = None) -> onnx.TensorProto:
    fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else shape[0]
    std = scale if scale is not None else (2.0 / fan_in) ** 0.5
    return numpy_helper.from_array((rng.standard_normal(shape) * std).astype(np.float32), name)


def _model(nodes, inputs, outputs, inits, opset: int = OPSET) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "test", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _vi(name: str, shape) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def conv_bn_relu(seed: int = 0, opset: int = OPSET) -> onnx.ModelProto:
    """x -> Conv -> BN -> Relu -> MaxPool -> Conv -> Relu -> GlobalAveragePool -> Flatten -> Gemm -> y."""
    rng = _rng(seed)
    inits = [
        _w(rng, "w1", (8, 3, 3, 3)), _w(rng, "b1", (8,), 0.1),
        numpy_helper.from_array(rng.uniform(0.5, 1.5, 8).astype(np.float32), "bn_scale"),
        numpy_helper.from_array(rng.normal(0, 0.1, 8).astype(np.float32), "bn_bias"),
        numpy_helper.from_array(rng.normal(0, 0.1, 8).astype(np.float32), "bn_mean"),
        numpy_helper.from_array(rng.uniform(0.5, 1.5, 8).astype(np.float32), "bn_var"),
        _w(rng, "w2", (16, 8, 3, 3)), _w(rng, "b2", (16,), 0.1),
        _w(rng, "fc_w", (10, 16)), _w(rng, "fc_b", (10,), 0.1),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c1", "bn_scale", "bn_bias", "bn_mean", "bn_var"], ["bn1"],
                         name="bn1"),
        helper.make_node("Relu", ["bn1"], ["r1"], name="relu1"),
        helper.make_node("MaxPool", ["r1"], ["p1"], name="maxpool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "w2", "b2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("GlobalAveragePool", ["r2"], ["gap"], name="gap"),
        helper.make_node("Flatten", ["gap"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["y"], name="fc", transB=1),
    ]
    return _model(nodes, [_vi("x", [1, 3, 16, 16])], [_vi("y", [1, 10])], inits, opset)


def residual_block(seed: int = 1) -> onnx.ModelProto:
    """x -> Conv -> Relu -> Conv -> Add(x) -> Relu -> y (the skip input x also feeds conv1)."""
    rng = _rng(seed)
    inits = [_w(rng, "w1", (8, 8, 3, 3)), _w(rng, "b1", (8,), 0.1), _w(rng, "w2", (8, 8, 3, 3)),
             _w(rng, "b2", (8,), 0.1)]
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["c2", "x"], ["sum"], name="add"),
        helper.make_node("Relu", ["sum"], ["y"], name="relu_out"),
    ]
    return _model(nodes, [_vi("x", [1, 8, 12, 12])], [_vi("y", [1, 8, 12, 12])], inits)


def depthwise(seed: int = 2) -> onnx.ModelProto:
    """x -> depthwise Conv (group=C) -> Relu -> pointwise Conv -> y."""
    rng = _rng(seed)
    inits = [_w(rng, "dw", (8, 1, 3, 3)), _w(rng, "dw_b", (8,), 0.1), _w(rng, "pw", (16, 8, 1, 1))]
    nodes = [
        helper.make_node("Conv", ["x", "dw", "dw_b"], ["d"], name="dwconv", group=8, pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["d"], ["r"], name="relu"),
        helper.make_node("Conv", ["r", "pw"], ["y"], name="pwconv"),
    ]
    return _model(nodes, [_vi("x", [1, 8, 10, 10])], [_vi("y", [1, 16, 10, 10])], inits)


def mlp(seed: int = 3) -> onnx.ModelProto:
    """x[4,16] -> Gemm(transB=1) -> Relu -> Gemm(transB=0) -> Relu -> MatMul -> Add(bias) -> y[4,10]."""
    rng = _rng(seed)
    inits = [_w(rng, "g1_w", (32, 16)), _w(rng, "g1_b", (32,), 0.1), _w(rng, "g2_w", (32, 24)),
             _w(rng, "mm_w", (24, 10)), _w(rng, "mm_b", (10,), 0.1)]
    nodes = [
        helper.make_node("Gemm", ["x", "g1_w", "g1_b"], ["h1"], name="gemm_tb1", transB=1),
        helper.make_node("Relu", ["h1"], ["a1"], name="relu1"),
        helper.make_node("Gemm", ["a1", "g2_w"], ["h2"], name="gemm_tb0"),
        helper.make_node("Relu", ["h2"], ["a2"], name="relu2"),
        helper.make_node("MatMul", ["a2", "mm_w"], ["m"], name="matmul"),
        helper.make_node("Add", ["m", "mm_b"], ["y"], name="bias_add"),
    ]
    return _model(nodes, [_vi("x", [4, 16])], [_vi("y", [4, 10])], inits)


def attention(seed: int = 4) -> onnx.ModelProto:
    """Single-head attention: q,k,v = x@W; softmax(q @ k^T / sqrt(d)) @ v -> y."""
    rng = _rng(seed)
    d = 16
    inits = [_w(rng, n, (d, d)) for n in ("wq", "wk", "wv")]
    inits.append(numpy_helper.from_array(np.array(1 / np.sqrt(d), np.float32), "inv_sqrt_d"))
    nodes = [
        helper.make_node("MatMul", ["x", "wq"], ["q"], name="proj_q"),
        helper.make_node("MatMul", ["x", "wk"], ["k"], name="proj_k"),
        helper.make_node("MatMul", ["x", "wv"], ["v"], name="proj_v"),
        helper.make_node("Transpose", ["k"], ["kt"], name="transpose_k", perm=[0, 2, 1]),
        helper.make_node("MatMul", ["q", "kt"], ["s"], name="qk"),
        helper.make_node("Mul", ["s", "inv_sqrt_d"], ["s_scaled"], name="scale"),
        helper.make_node("Softmax", ["s_scaled"], ["p"], name="softmax", axis=-1),
        helper.make_node("MatMul", ["p", "v"], ["y"], name="pv"),
    ]
    return _model(nodes, [_vi("x", [2, 8, d])], [_vi("y", [2, 8, d])], inits)


def attention_with_position_bias(seed: int = 4) -> onnx.ModelProto:
    """Single-head attention as MPNet's export writes it: the scaled scores get a relative-position
    bias (an activation, here an input) and then the mask bias added before Softmax."""
    model = attention(seed)
    nodes = list(model.graph.node)
    softmax = next(n for n in nodes if n.op_type == "Softmax")
    softmax.input[0] = "s_masked"
    at = nodes.index(softmax)
    nodes[at:at] = [helper.make_node("Add", ["s_scaled", "position_bias"], ["s_biased"], name="position_add"),
                    helper.make_node("Add", ["s_biased", "mask_bias"], ["s_masked"], name="mask_add")]
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    model.graph.input.extend([_vi("position_bias", [2, 8, 8]), _vi("mask_bias", [2, 8, 8])])
    onnx.checker.check_model(model)
    return model


def concat_branches(seed: int = 5) -> onnx.ModelProto:
    """x -> (Conv a -> Relu, Conv b -> Relu) -> Concat -> Conv c -> y."""
    rng = _rng(seed)
    inits = [_w(rng, "wa", (4, 3, 3, 3)), _w(rng, "wb", (6, 3, 1, 1), 1.5), _w(rng, "wc", (5, 10, 3, 3))]
    nodes = [
        helper.make_node("Conv", ["x", "wa"], ["ca"], name="conv_a", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["ca"], ["ra"], name="relu_a"),
        helper.make_node("Conv", ["x", "wb"], ["cb"], name="conv_b"),
        helper.make_node("Relu", ["cb"], ["rb"], name="relu_b"),
        helper.make_node("Concat", ["ra", "rb"], ["cat"], name="concat", axis=1),
        helper.make_node("Conv", ["cat", "wc"], ["y"], name="conv_c", pads=[1, 1, 1, 1]),
    ]
    return _model(nodes, [_vi("x", [1, 3, 8, 8])], [_vi("y", [1, 5, 8, 8])], inits)


def conv_transpose(seed: int = 6, group: int = 1) -> onnx.ModelProto:
    """x -> ConvTranspose(stride 2, W[Cin, Cout/g, 2, 2]) -> Relu -> Conv -> y."""
    rng = _rng(seed)
    inits = [_w(rng, "wt", (8, 6 // group, 2, 2)), _w(rng, "bt", (6,), 0.1), _w(rng, "wc", (4, 6, 3, 3))]
    nodes = [
        helper.make_node("ConvTranspose", ["x", "wt", "bt"], ["up"], name="deconv", strides=[2, 2], group=group),
        helper.make_node("Relu", ["up"], ["r"], name="relu"),
        helper.make_node("Conv", ["r", "wc"], ["y"], name="conv", pads=[1, 1, 1, 1]),
    ]
    return _model(nodes, [_vi("x", [1, 8, 6, 6])], [_vi("y", [1, 4, 12, 12])], inits)
