"""Find the attention cores of transformer blocks: Q@K^T -> [scale] -> [+ bias] [+ mask] -> Softmax -> P@V.

This is the pattern TensorRT fuses into one multi-head-attention kernel (TensorRT developer guide,
"Fused Attention": BMM1, an optional scale, an optional additive or boolean mask, Softmax, BMM2)
and the one ModelOpt's ONNX quantizer matches as an "MHA partition" (modelopt.onnx.quantization
`find_mha_partitions`: MatMul -> non-bias Add -> Softmax -> MatMul). Placement (rule 10) and the
linter both use it; the search walks through Q/DQ nodes, so it finds the cores of quantized models too.
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx

from trtq.qdq.graph import GraphIndex

_QDQ = frozenset({"QuantizeLinear", "DequantizeLinear"})
# Ops between BMM1 and Softmax and between Softmax and BMM2 that the fused kernel absorbs or that
# only move data (exporters reshape the scores to 3-D and back, or cast them).
_PASS = frozenset({"Reshape", "Cast", "Flatten", "Identity"})
_SCALE = frozenset({"Div", "Mul"})


@dataclass(frozen=True)
class Attention:
    """One attention core, by node index.

    Attributes:
        bmm1: the MatMul of Q and K^T (two activations).
        softmax: the Softmax of the scores.
        bmm2: the MatMul of the probabilities (input 0) and V.
        score_tensors: every tensor from BMM1's output to Softmax's input, the mask bias included:
            where no Q/DQ pair may go (it would split the fused kernel).
        bias_adds: every Add of a bias to the scores, the one nearest Softmax (the mask's) first: also
            a relative-position bias (MPNet adds one before the mask), which TensorRT's fused kernel
            takes as another additive mask.
    """

    bmm1: int
    softmax: int
    bmm2: int
    score_tensors: tuple[str, ...]
    bias_adds: tuple[int, ...] = ()

    @property
    def mask_add(self) -> int | None:
        """The Add of the mask bias (the bias Add nearest Softmax), or None."""
        return self.bias_adds[0] if self.bias_adds else None


def find_attention(index: GraphIndex) -> list[Attention]:
    """Every attention core of `index.model`, in graph order of their Softmax."""
    found = []
    for i, node in enumerate(index.model.graph.node):
        if node.op_type == "Softmax" and node.domain in ("", "ai.onnx"):
            core = _core(index, i)
            if core is not None:
                found.append(core)
    return found


def _core(index: GraphIndex, softmax: int) -> Attention | None:
    back = _backward(index, index.node(softmax).input[0])
    if back is None:
        return None
    bmm1, adds, tensors = back
    bmm2 = _forward(index, index.node(softmax).output[0])
    if bmm2 is None:
        return None
    return Attention(bmm1, softmax, bmm2, tuple(tensors), tuple(adds))


_MAX_BIAS_ADDS = 2  # a mask, and a position bias before it


def _backward(index: GraphIndex, tensor: str) -> tuple[int, list[int], list[str]] | None:
    """From Softmax's input back to BMM1: (BMM1, the bias Adds nearest Softmax first, the tensors
    passed), or None if no match."""
    tensors: list[str] = []
    adds: list[int] = []
    for _ in range(16):  # a few pass/scale ops at most; bounded against odd graphs
        tensors.append(tensor)
        p = index.producer.get(tensor)
        if p is None:
            return None
        node = index.node(p)
        inputs = [t for t in node.input if t]
        if node.op_type == "MatMul":
            return (p, adds, tensors) if not any(index.is_constant(t) for t in inputs) else None
        scale_by_constant = node.op_type in _SCALE and len(inputs) == 2 and index.is_constant(inputs[1])
        if node.op_type in _QDQ or node.op_type in _PASS or scale_by_constant:
            tensor = inputs[0]
        elif node.op_type == "Mul" and len(inputs) == 2 and index.is_constant(inputs[0]):
            tensor = inputs[1]
        elif node.op_type == "Add" and len(adds) < _MAX_BIAS_ADDS and len(inputs) == 2 \
                and not any(index.is_constant(t) for t in inputs):
            adds.append(p)
            side = _scores_side(index, inputs)
            tensors.extend(_bias_chain(index, inputs[1 - side]))
            tensor = inputs[side]
        else:
            return None
    return None


def _scores_side(index: GraphIndex, inputs: list[str]) -> int:
    """Which Add input carries the scores: the one that leads back to a MatMul (else the first)."""
    for side, tensor in enumerate(inputs):
        seen = 0
        while seen < 16:
            p = index.producer.get(tensor)
            if p is None:
                break
            node = index.node(p)
            if node.op_type == "MatMul":
                return side
            if node.op_type not in _QDQ | _PASS | _SCALE:
                break
            tensor, seen = node.input[0], seen + 1
    return 0


def _bias_chain(index: GraphIndex, tensor: str) -> list[str]:
    """The mask bias and, through Q/DQ nodes, what it was before them."""
    chain = [tensor]
    p = index.producer.get(tensor)
    while p is not None and index.node(p).op_type in _QDQ:
        tensor = index.node(p).input[0]
        chain.append(tensor)
        p = index.producer.get(tensor)
    return chain


def _forward(index: GraphIndex, tensor: str, depth: int = 0) -> int | None:
    """From Softmax's output to the MatMul that reads it as input 0 (BMM2) directly or through
    pass/Q/DQ ops (several readers are fine, e.g. a Q and, wrongly, the MatMul itself), or None."""
    if depth > 16:
        return None
    for c, pos in index.consumers.get(tensor, []):
        node: onnx.NodeProto = index.node(c)
        if node.op_type == "MatMul" and pos == 0 and not index.is_constant(node.input[1]):
            return c
    for c, pos in index.consumers.get(tensor, []):
        node = index.node(c)
        if (node.op_type in _QDQ | _PASS and pos == 0) or _nan_guard(index, node, pos):
            found = _forward(index, node.output[0], depth + 1)
            if found is not None:
                return found
    return None


def _nan_guard(index: GraphIndex, node: onnx.NodeProto, pos: int) -> bool:
    """True for `Where(cond, const, probs)` / `Where(cond, probs, const)` reading the probabilities at
    `pos`: torch's scaled_dot_product_attention export zeroes fully masked rows this way
    (`where(isnan(softmax), 0, softmax)`, seen in Hugging Face encoders exported with opset 17);
    it is elementwise and TensorRT's fused attention needs no Q/DQ around it."""
    return (node.op_type == "Where" and pos in (1, 2) and len(node.input) == 3
            and index.is_constant(node.input[3 - pos]))
