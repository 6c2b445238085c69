"""Which weights of a model a pruner may touch, and whether they follow the 2:4 pattern TensorRT accelerates.

TensorRT's sparse kernels (Ampere and newer, BuilderFlag.SPARSE_WEIGHTS) need structured sparsity along
the input channels: for every output channel (and, for a convolution, every kernel position), each group
of four consecutive input-channel weights holds at least two zeros (TensorRT developer guide,
"Structured Sparsity"). A last group shorter than four counts as padded with zeros, as TensorRT pads it.

The weights are those of Conv (W is [O, I/group, kh, kw]: input channels on axis 1), Gemm (B is [K, N],
or [N, K] with transB=1) and MatMul (a constant second input [..., K, N]: axis -2). In a Q/DQ model the
weight is found behind its DequantizeLinear (and QuantizeLinear): zeros stay zeros when quantized.
A weight is an initializer or the tensor of a Constant node (as PaddlePaddle's exporter writes them).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

PRUNABLE_OPS = ("Conv", "Gemm", "MatMul")
GROUP = 4  # 2:4: in every group of four input-channel weights at most two are non-zero
KEEP = 2


@dataclass(frozen=True)
class WeightUse:
    """A prunable weight: the node reading it, the initializer holding it, and its input-channel axis."""

    node: str
    op_type: str
    initializer: str
    in_axis: int


def _attr(node: onnx.NodeProto, name: str, default: int) -> int:
    return next((int(a.i) for a in node.attribute if a.name == name), default)


def constant_tensors(model: onnx.ModelProto) -> dict[str, onnx.TensorProto]:
    """tensor name -> the TensorProto holding its value: initializers and Constant nodes' `value` (in place:
    changing one changes the model)."""
    found = {t.name: t for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value" and attr.type == onnx.AttributeProto.TENSOR:
                    found[node.output[0]] = attr.t
    return found


def _source(name: str, producers: dict[str, onnx.NodeProto], inits: dict[str, onnx.TensorProto]) -> str | None:
    """The initializer behind `name`, looking through DequantizeLinear/QuantizeLinear (a Q/DQ weight)."""
    for _ in range(3):
        if name in inits:
            return name
        node = producers.get(name)
        if node is None or node.op_type not in ("DequantizeLinear", "QuantizeLinear"):
            return None
        name = node.input[0]
    return name if name in inits else None


def weight_uses(model: onnx.ModelProto) -> list[WeightUse]:
    """The Conv/Gemm/MatMul weights of the main graph that are constants, in node order, once each."""
    graph = model.graph
    inits = constant_tensors(model)
    producers = {o: n for n in graph.node for o in n.output if n.op_type != "Constant"}
    uses, seen = [], set()
    for i, node in enumerate(graph.node):
        if node.op_type not in PRUNABLE_OPS or len(node.input) < 2:
            continue
        source = _source(node.input[1], producers, inits)
        if source is None or source in seen:
            continue
        ndim = len(inits[source].dims)
        if node.op_type == "Conv" and ndim >= 3:
            axis = 1
        elif node.op_type == "Gemm" and ndim == 2:
            axis = 1 if _attr(node, "transB", 0) else 0
        elif node.op_type == "MatMul" and ndim >= 2:
            axis = ndim - 2
        else:
            continue
        seen.add(source)
        uses.append(WeightUse(node.name or f"{node.op_type}_{i}", node.op_type, source, axis))
    return uses


def groups_view(weight: np.ndarray, in_axis: int) -> np.ndarray:
    """`weight` with the input channels last, padded with zeros to a multiple of 4, as [..., groups, 4]."""
    moved = np.moveaxis(weight, in_axis, -1)
    pad = -moved.shape[-1] % GROUP
    if pad:
        moved = np.concatenate([moved, np.zeros((*moved.shape[:-1], pad), moved.dtype)], axis=-1)
    return moved.reshape(*moved.shape[:-1], -1, GROUP)


def is_two_four_sparse(weight: np.ndarray, in_axis: int) -> bool:
    """True if every group of four consecutive input-channel weights has at most two non-zeros."""
    if weight.shape[in_axis] < GROUP:  # nothing for a sparse kernel to skip (TensorRT keeps it dense)
        return False
    return bool((np.count_nonzero(groups_view(weight, in_axis), axis=-1) <= KEEP).all())


def two_four_sparse_layers(model: onnx.ModelProto) -> list[str]:
    """Names of the nodes whose weight follows the 2:4 pattern (float or Q/DQ weights)."""
    inits = constant_tensors(model)
    return [use.node for use in weight_uses(model)
            if is_two_four_sparse(numpy_helper.to_array(inits[use.initializer]), use.in_axis)]
