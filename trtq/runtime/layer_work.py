"""Multiply-accumulates and elements moved per compute layer, from one real run of the FP32 model.

Shapes come from running the model on ONNX Runtime CPU with the inputs and outputs of every
Conv/ConvTranspose/Gemm/MatMul exposed, so dynamic axes, Reshapes and data-dependent shapes are
whatever the given batch makes them (no shape inference guesses). Node names are trtq's
(trtq.qdq.graph.name_nodes), the names the quantizer and the fallback report.

    Conv:          MACs = |output| * (C_in / group) * prod(kernel)      (weights [C_out, C_in/g, k...])
    ConvTranspose: MACs = |input| * (C_out / group) * prod(kernel)      (weights [C_in, C_out/g, k...])
    Gemm, MatMul:  MACs = |output| * K                                  (K: the reduced dim of input A)
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

import numpy as np
import onnx

from trtq.engine.cost_model import LayerWork
from trtq.qdq.graph import name_nodes
from trtq.runtime.session import cpu_session

COMPUTE_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def _reduced_dim(node: onnx.NodeProto, a_shape: tuple[int, ...]) -> int:
    if node.op_type == "Gemm":
        trans_a = next((att.i for att in node.attribute if att.name == "transA"), 0)
        return a_shape[0] if trans_a else a_shape[-1]
    return a_shape[-1]


def _macs(node: onnx.NodeProto, shapes: Mapping[str, tuple[int, ...]]) -> int:
    out = shapes[node.output[0]]
    if node.op_type == "Conv":
        return int(np.prod(out, dtype=np.int64)) * int(np.prod(shapes[node.input[1]][1:], dtype=np.int64))
    if node.op_type == "ConvTranspose":
        return int(np.prod(shapes[node.input[0]], dtype=np.int64)) * \
            int(np.prod(shapes[node.input[1]][1:], dtype=np.int64))
    return int(np.prod(out, dtype=np.int64)) * _reduced_dim(node, shapes[node.input[0]])


def layer_work(model: onnx.ModelProto, feed: Mapping[str, np.ndarray]) -> list[LayerWork]:
    """The compute layers of `model` (graph order) and their work on the batch `feed`.

    Raises:
        ModelError: ONNX Runtime cannot load the model. DataError-like ORT failures surface as they are.
    """
    work = copy.deepcopy(model)
    name_nodes(work)
    weights = {t.name: tuple(int(d) for d in t.dims) for t in work.graph.initializer}
    nodes = [n for n in work.graph.node if n.op_type in COMPUTE_OPS]
    wanted = list(dict.fromkeys(t for n in nodes for t in (*n.input, n.output[0])
                                if t and t not in weights and t not in feed))
    values = dict(zip(wanted, cpu_session(work, wanted).run(wanted, dict(feed)), strict=True)) if wanted else {}
    shapes = {**weights, **{name: tuple(int(d) for d in np.shape(v)) for name, v in {**feed, **values}.items()}}
    layers = []
    for node in nodes:
        inputs = [t for t in node.input if t]
        layers.append(LayerWork(
            node.name, node.op_type, _macs(node, shapes),
            sum(int(np.prod(shapes[t], dtype=np.int64)) for t in inputs if t in weights),
            sum(int(np.prod(shapes[t], dtype=np.int64)) for t in inputs if t not in weights),
            int(np.prod(shapes[node.output[0]], dtype=np.int64))))
    return layers
