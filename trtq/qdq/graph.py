"""A read-only index of an ONNX graph: producers, consumers, constants, names.

Built once per pass; the placement rules and the linter ask it questions instead
of scanning the node list again.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from trtq.onnx_model import external_data
from trtq.onnx_model.tensors import constant_tensors, inferred_value_info

# (node index, input index): one place where a tensor is read.
Use = tuple[int, int]


@dataclass
class GraphIndex:
    """Lookups over `model.graph` (the model must not change while the index is used).

    Attributes:
        producer: tensor -> index of the node that writes it.
        consumers: tensor -> every (node index, input index) that reads it.
        initializers: initializer name -> TensorProto.
        constant_nodes: output name of a Constant node -> that node.
        constants: initializers, Constant outputs and tensors computed from constants only.
        graph_inputs: names of the inputs the user feeds.
        graph_outputs: names of the graph outputs.
        types: ONNX element type of every tensor shape inference could type.
        shapes: static shape (ints, or None for unknown dims) where shape inference knows it.
        weights_dir: folder of the external data files of a model loaded by reference
            (trtq.onnx_model.model.load_model_by_reference), or None when the weights are loaded.
    """

    model: onnx.ModelProto
    weights_dir: Path | None = None
    producer: dict[str, int] = field(default_factory=dict)
    consumers: dict[str, list[Use]] = field(default_factory=lambda: defaultdict(list))
    initializers: dict[str, onnx.TensorProto] = field(default_factory=dict)
    constant_nodes: dict[str, onnx.NodeProto] = field(default_factory=dict)
    constants: set[str] = field(default_factory=set)
    graph_inputs: list[str] = field(default_factory=list)
    graph_outputs: set[str] = field(default_factory=set)
    types: dict[str, int] = field(default_factory=dict)
    shapes: dict[str, tuple[int | None, ...]] = field(default_factory=dict)

    @classmethod
    def build(cls, model: onnx.ModelProto, infer: bool = True, weights_dir: Path | None = None) -> GraphIndex:
        """Index `model`; `infer` runs ONNX shape inference for types and shapes; `weights_dir`: see the class."""
        index = cls(model, weights_dir)
        graph = model.graph
        index.initializers = {t.name: t for t in graph.initializer}
        for i, node in enumerate(graph.node):
            for o in node.output:
                if o:
                    index.producer[o] = i
            for j, name in enumerate(node.input):
                if name:
                    index.consumers[name].append((i, j))
            if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
                index.constant_nodes[node.output[0]] = node
        index.constants = constant_tensors(model)
        index.graph_inputs = [i.name for i in graph.input if i.name not in index.initializers]
        index.graph_outputs = {o.name for o in graph.output}
        if infer:
            index.types, index.shapes = _infer_types_and_shapes(model)
        for name, tensor in index.initializers.items():
            index.types.setdefault(name, tensor.data_type)
            index.shapes.setdefault(name, tuple(tensor.dims))
        return index

    def node(self, i: int) -> onnx.NodeProto:
        node: onnx.NodeProto = self.model.graph.node[i]
        return node

    def producer_node(self, tensor: str) -> onnx.NodeProto | None:
        i = self.producer.get(tensor)
        return None if i is None else self.model.graph.node[i]

    def consumer_nodes(self, tensor: str) -> list[onnx.NodeProto]:
        return [self.model.graph.node[i] for i, _ in self.consumers.get(tensor, [])]

    def is_constant(self, tensor: str) -> bool:
        return tensor in self.constants

    def constant_value(self, tensor: str) -> np.ndarray | None:
        """Value of an initializer or a Constant node output; None for anything computed."""
        if tensor in self.initializers:
            return external_data.tensor_values(self.initializers[tensor], self.weights_dir)  # external: read now
        node = self.constant_nodes.get(tensor)
        if node is None:
            return None
        for attr in node.attribute:
            if attr.name == "value":
                return numpy_helper.to_array(attr.t)
            if attr.name in ("value_float", "value_floats", "value_int", "value_ints"):
                return np.asarray(onnx.helper.get_attribute_value(attr))
        return None

    def constant_rank(self, tensor: str) -> int | None:
        """Rank of `constant_value(tensor)` without reading the values (None where that gives None)."""
        if tensor in self.initializers:
            return len(self.initializers[tensor].dims)
        node = self.constant_nodes.get(tensor)
        if node is None:
            return None
        for attr in node.attribute:
            if attr.name == "value":
                return len(attr.t.dims)
            if attr.name in ("value_float", "value_int"):
                return 0
            if attr.name in ("value_floats", "value_ints"):
                return 1
        return None


def _infer_types_and_shapes(model: onnx.ModelProto) -> tuple[dict[str, int], dict[str, tuple[int | None, ...]]]:
    """Element types and static shapes from one ONNX shape-inference run (best effort)."""
    types: dict[str, int] = {}
    shapes: dict[str, tuple[int | None, ...]] = {}
    for vi in inferred_value_info(model):
        if not vi.type.HasField("tensor_type"):
            continue
        ttype = vi.type.tensor_type
        types[vi.name] = ttype.elem_type
        if ttype.HasField("shape"):
            shapes[vi.name] = tuple(d.dim_value if d.HasField("dim_value") else None for d in ttype.shape.dim)
    return types, shapes


def name_nodes(model: onnx.ModelProto) -> None:
    """Give every unnamed node a unique name `<op_type>_<index>` (reports and exclusions need names)."""
    taken = {n.name for n in model.graph.node if n.name}
    for i, node in enumerate(model.graph.node):
        if node.name:
            continue
        name = f"{node.op_type}_{i}"
        while name in taken:
            name += "_"
        node.name = name
        taken.add(name)


class NameScope:
    """Hands out tensor/node names not yet used anywhere in the model."""

    def __init__(self, model: onnx.ModelProto) -> None:
        graph = model.graph
        self._taken = {n.name for n in graph.node}
        self._taken.update(t for n in graph.node for t in (*n.input, *n.output))
        self._taken.update(t.name for t in graph.initializer)
        self._taken.update(v.name for v in (*graph.input, *graph.output, *graph.value_info))

    def fresh(self, base: str) -> str:
        name, k = base, 1
        while name in self._taken:
            name = f"{base}_{k}"
            k += 1
        self._taken.add(name)
        return name
