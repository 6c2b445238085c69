"""Rewrite a graph by a Placement: add the Q/DQ nodes and rewire the quantized uses.

Each quantized tensor gets one QuantizeLinear -> DequantizeLinear pair (or, for
pre-quantized weights, one DequantizeLinear reading an INT8/FP8 initializer),
placed right after the tensor's producer so the node list stays topologically
sorted. Only the planned uses read the DQ output; every other consumer keeps
the float tensor.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper

from trtq.onnx_model.large_models import drop_initializers
from trtq.qdq.graph import GraphIndex, NameScope, Use
from trtq.qdq.placement import Placement
from trtq.qdq.scales import (
    QType,
    power_of_two_scale,
    quantize_array,
    quantized_tensor,
    scale_from_amax,
    scale_tensor,
    zero_point_tensor,
)
from trtq.qdq.weight_clipping import check_clipping, weight_range


@dataclass(frozen=True)
class InsertOptions:
    """How to write the Q/DQ nodes.

    Attributes:
        qtype: INT8 or FP8.
        weights: "qdq" (float weight + Q -> DQ) or "int8" (pre-quantized initializer + DQ).
        fp16: clamp scales into FP16's normal range (the model is converted to FP16 afterwards).
        weight_clipping: weight ranges from max|w| ("none") or per-channel MSE-optimal ("mse",
            see trtq.qdq.weight_clipping).
        pow2: round every scale up to a power of two (activations already are when their amax is
            127 * 2^k, as calibration with --pow2 makes it; then this changes nothing).

    Raises:
        ConfigError: unknown weight_clipping.
    """

    qtype: QType
    weights: str = "qdq"
    fp16: bool = False
    weight_clipping: str = "none"
    pow2: bool = False

    def scale(self, amax: float | np.ndarray) -> np.ndarray:
        """The scale(s) of `amax` as these options write them."""
        scale = scale_from_amax(amax, self.qtype, self.fp16)
        return power_of_two_scale(scale) if self.pow2 else scale

    def __post_init__(self) -> None:
        check_clipping(self.weight_clipping)


def insert_qdq(index: GraphIndex, placement: Placement, options: InsertOptions) -> dict[str, float]:
    """Insert the planned Q/DQ nodes into `index.model` in place.

    Returns:
        The scale of every quantized activation (tensor name -> float32 scale).
    """
    model = index.model
    writer = _Writer(model, options)
    renames: dict[Use, str] = {}
    scales: dict[str, float] = {}
    for tensor, uses in placement.activations.items():
        scale = options.scale(placement.amax[tensor])
        scales[tensor] = float(scale)
        out = writer.pair(tensor, scale, None, after=index.producer.get(tensor))
        renames.update(dict.fromkeys(uses, out))
    for key, uses in placement.weights.items():
        value = index.constant_value(key.tensor)
        if value is None:  # placement only plans weights whose value is known
            raise ValueError(f"weight {key.tensor} has no constant value")
        amax = weight_range(value, key.axis, options.qtype, options.weight_clipping)
        scale = options.scale(amax)
        if options.weights == "int8":
            out = writer.dequantize_only(key.tensor, quantize_array(value, scale, key.axis, options.qtype),
                                         scale, key.axis)
        else:
            out = writer.pair(key.tensor, scale, key.axis, after=index.producer.get(key.tensor))
        renames.update(dict.fromkeys(uses, out))
    for (i, j), name in renames.items():
        model.graph.node[i].input[j] = name
    writer.commit()
    if options.weights == "int8":
        _drop_unused_constants(model, {key.tensor for key in placement.weights})
    return scales


class _Writer:
    """Collects new nodes and initializers, then splices them into the graph."""

    def __init__(self, model: onnx.ModelProto, options: InsertOptions) -> None:
        self.model = model
        self.options = options
        self.names = NameScope(model)
        self.after: dict[int | None, list[onnx.NodeProto]] = defaultdict(list)
        self.initializers: list[onnx.TensorProto] = []

    def _params(self, base: str, scale: np.ndarray) -> tuple[str, str]:
        scale_name = self.names.fresh(f"{base}_scale")
        zp_name = self.names.fresh(f"{base}_zero_point")
        length = scale.size if scale.ndim == 1 else None
        self.initializers.append(scale_tensor(scale, scale_name))
        self.initializers.append(zero_point_tensor(zp_name, self.options.qtype, length))
        return scale_name, zp_name

    def pair(self, tensor: str, scale: np.ndarray, axis: int | None, after: int | None) -> str:
        """Add `tensor -> Q -> DQ`; returns the DQ output name."""
        scale_name, zp_name = self._params(tensor, scale)
        q_out = self.names.fresh(f"{tensor}_quantized")
        dq_out = self.names.fresh(f"{tensor}_dequantized")
        q = _node("QuantizeLinear", [tensor, scale_name, zp_name], q_out, self.names.fresh(f"{tensor}_QuantizeLinear"),
                  axis)
        dq = _node("DequantizeLinear", [q_out, scale_name, zp_name], dq_out,
                   self.names.fresh(f"{tensor}_DequantizeLinear"), axis)
        self.after[after].extend([q, dq])
        return dq_out

    def dequantize_only(self, tensor: str, values: np.ndarray, scale: np.ndarray, axis: int | None) -> str:
        """Add a pre-quantized initializer `values` -> DQ; returns the DQ output name."""
        scale_name, zp_name = self._params(tensor, scale)
        q_name = self.names.fresh(f"{tensor}_quantized")
        self.initializers.append(quantized_tensor(values, q_name, self.options.qtype))
        dq_out = self.names.fresh(f"{tensor}_dequantized")
        dq = _node("DequantizeLinear", [q_name, scale_name, zp_name], dq_out,
                   self.names.fresh(f"{tensor}_DequantizeLinear"), axis)
        self.after[None].append(dq)
        return dq_out

    def commit(self) -> None:
        """Splice the new nodes in after their producers (graph inputs/initializers: at the front)."""
        graph = self.model.graph
        nodes = list(self.after[None])
        for i, node in enumerate(graph.node):
            nodes.append(node)
            nodes.extend(self.after.get(i, []))
        del graph.node[:]
        graph.node.extend(nodes)
        for tensor in self.initializers:  # add().CopyFrom: a deep copy, where extend serializes and parses
            graph.initializer.add().CopyFrom(tensor)


def _node(op: str, inputs: list[str], output: str, name: str, axis: int | None) -> onnx.NodeProto:
    """A Q or DQ node; `axis` is written only for per-channel scales (opset < 13 has no axis attribute)."""
    node = helper.make_node(op, inputs, [output], name=name)
    if axis is not None:
        node.attribute.append(helper.make_attribute("axis", axis))
    return node


def names_read(graph: onnx.GraphProto) -> set[str]:
    """Every tensor name a node of `graph` or of any subgraph (If/Loop/Scan bodies) reads."""
    names: set[str] = set()
    for node in graph.node:
        names.update(t for t in node.input if t)  # "" is an omitted optional input
        for attr in node.attribute:
            for sub in ([attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)):
                names |= names_read(sub)
    return names


def _drop_unused_constants(model: onnx.ModelProto, candidates: set[str]) -> None:
    """Remove the float weights in `candidates` that nobody reads after being replaced by quantized ones."""
    graph = model.graph
    used = names_read(graph) | {o.name for o in graph.output}
    unused = candidates - used
    keep_nodes = [n for n in graph.node if not (n.op_type == "Constant" and n.output[0] in unused)]
    if len(keep_nodes) != len(graph.node):
        del graph.node[:]
        graph.node.extend(keep_nodes)
    dropped = {t.name for t in graph.initializer if t.name in unused}
    if dropped:
        drop_initializers(graph, dropped)
        inputs = [i for i in graph.input if i.name not in dropped]
        del graph.input[:]
        graph.input.extend(inputs)
