"""Attention-mask tensors: float tensors that hold -inf or huge negative values by construction.

Language-model exporters turn the integer `attention_mask` input into an additive bias on the
attention scores: `(1 - mask) * finfo(float32).min` (Hugging Face's eager
`get_extended_attention_mask`), `(1 - mask) * -10000` (the original BERT), or
`Where(mask, 0, -inf)` (torch.onnx's scaled_dot_product_attention at opset 17, what current
Hugging Face exports write). The bias is added to Q@K^T and Softmax turns its -inf into exact zeros.
No INT8 or FP8 scale can represent these values, and none needs to: TensorRT runs the mask path in
float (ModelOpt's INT8 placement never quantizes "the mask add of MHA", see qdq/placement.py rule 10).
So these tensors get no statistics, no cache entry and no Q/DQ pair. Two kinds are recognized
from the graph:

- "attention-mask bias": a float tensor computed only from integer/bool tensors that are not
  constant (the mask input) and constants, through any op except a table lookup (Gather of a
  float constant by integer ids is an embedding, not a mask), on the way to masked scores (below).
  Cast(mask), 1 - mask, (1 - mask) * min, Where(mask, 0, -inf) and their reshapes all are; a 0/1
  mask used as data (mean pooling) is not.
- "masked scores": the result of adding (Add/Sub/Where/Min/Max) such a bias to a float
  activation, or of a Where the mask selects with (`scores.masked_fill(~mask, -inf)`), and its
  reshapes, when it is read only by ops that normalize it away (Softmax, LogSoftmax,
  ReduceMax/ReduceMin, ArgMax/ArgMin, TopK). A product with the mask that feeds anything else
  (e.g. `hidden * mask` for mean pooling) is a real activation and stays.

Tensors that hold such values although the graph does not show it are found from the data
during calibration instead (trtq.calibration.collect).
"""

from __future__ import annotations

import onnx

MASK_BIAS = "attention-mask bias"
MASKED_SCORES = "masked-score"
# Why a mask tensor is left out, for the report (one line per kind).
REASONS = {
    MASK_BIAS: "computed from the integer attention mask alone; it holds -inf or a huge negative fill",
    MASKED_SCORES: "scores plus the mask bias, read only by Softmax/ReduceMax; -inf or huge negative where "
                   "padded",
}

_LOOKUP_OPS = frozenset({"Gather", "GatherElements", "GatherND"})
_SHAPE_OPS = frozenset({"Shape", "Size"})  # their outputs describe the mask's shape, not its values
_COMBINE_OPS = frozenset({"Add", "Sub", "Where", "Min", "Max"})
_PASS_OPS = frozenset({"Reshape", "Transpose", "Unsqueeze", "Squeeze", "Flatten", "Expand", "Identity", "Cast"})
_NORMALIZING_OPS = frozenset({"Softmax", "LogSoftmax", "ReduceMax", "ReduceMin", "ArgMax", "ArgMin", "TopK"})
_FLOAT_TYPES = frozenset({
    onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16, onnx.TensorProto.DOUBLE,
})


def mask_tensors(model: onnx.ModelProto, constants: set[str], types: dict[str, int]) -> dict[str, str]:
    """Float tensor -> its kind (MASK_BIAS or MASKED_SCORES), in graph order.

    Args:
        model: the FP32 model.
        constants, types: trtq.onnx_model.tensors.constant_tensors / tensor_types of `model`
            (trtq.onnx_model.tensors.attention_masks passes them).
    """
    biases = _mask_biases(model, constants, types)
    scores = set(_masked_scores(model, biases, types))
    feeding = _feeding(model, scores, biases)
    found = {}
    for name in (o for node in model.graph.node for o in node.output if o):
        if name in feeding and types.get(name) in _FLOAT_TYPES:
            found[name] = MASK_BIAS
        elif name in scores:
            found[name] = MASKED_SCORES
    return found


def _mask_biases(model: onnx.ModelProto, constants: set[str], types: dict[str, int]) -> set[str]:
    """Every tensor (float or not) whose values come from non-constant integer/bool tensors and constants
    only (shapes of tensors do not count: a position table sliced to the sequence length is no mask)."""
    initializers = {t.name for t in model.graph.initializer}
    derived = {i.name for i in model.graph.input
               if i.name not in initializers and types.get(i.name) not in _FLOAT_TYPES | {None}}
    for node in model.graph.node:  # topological order
        inputs = [t for t in node.input if t]
        if not inputs or all(t in constants for t in inputs) or node.op_type in _SHAPE_OPS:
            continue
        if node.op_type in _LOOKUP_OPS and inputs[0] not in derived:
            continue  # an embedding lookup: the float data comes from a table
        if all(t in derived or t in constants or _is_integer(t, types) for t in inputs) \
                and any(t in derived for t in inputs):
            derived.update(o for o in node.output if o)
    return derived


def _feeding(model: onnx.ModelProto, scores: set[str], biases: set[str]) -> set[str]:
    """The mask tensors that lead to the masked scores (a 0/1 mask used as data, e.g. for mean
    pooling, is left to calibration: it is finite and may feed a quantized op)."""
    producers = {o: node for node in model.graph.node for o in node.output if o}
    stack = [t for s in scores for t in producers[s].input if t in biases] if scores else []
    seen: set[str] = set()
    while stack:
        tensor = stack.pop()
        if tensor in seen:
            continue
        seen.add(tensor)
        node = producers.get(tensor)
        if node is not None:
            stack.extend(t for t in node.input if t in biases)
    return seen


def _is_integer(tensor: str, types: dict[str, int]) -> bool:
    elem = types.get(tensor)
    return elem is not None and elem not in _FLOAT_TYPES


def _masked_scores(model: onnx.ModelProto, biases: set[str], types: dict[str, int]) -> list[str]:
    """Activations plus a float mask bias that only normalizing ops read (through reshapes)."""
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for t in node.input:
            consumers.setdefault(t, []).append(node)
    outputs = {o.name for o in model.graph.output}
    found: list[str] = []
    for node in model.graph.node:
        if node.op_type not in _COMBINE_OPS or not node.output or node.output[0] in biases:
            continue
        inputs = [t for t in node.input if t]
        has_bias = any(t in biases and types.get(t) in _FLOAT_TYPES for t in inputs) \
            or (node.op_type == "Where" and inputs[0] in biases)  # scores.masked_fill(~mask, -inf)
        if has_bias and _normalized_only(node.output[0], consumers, outputs):
            found.extend(_pass_chain(node.output[0], consumers))
    return found


def _normalized_only(tensor: str, consumers: dict[str, list[onnx.NodeProto]], outputs: set[str]) -> bool:
    """True when every path from `tensor` through reshapes ends in a normalizing op."""
    readers = consumers.get(tensor, [])
    if tensor in outputs or not readers:
        return False
    for node in readers:
        if node.op_type in _PASS_OPS and node.input[0] == tensor:
            if not _normalized_only(node.output[0], consumers, outputs):
                return False
        elif node.op_type not in _NORMALIZING_OPS:
            return False
    return True


def _pass_chain(tensor: str, consumers: dict[str, list[onnx.NodeProto]]) -> list[str]:
    """`tensor` and the reshapes of it up to the normalizing ops."""
    chain = [tensor]
    for node in consumers.get(tensor, []):
        if node.op_type in _PASS_OPS and node.input[0] == tensor:
            chain.extend(_pass_chain(node.output[0], consumers))
    return chain


def summary_lines(left_out: dict[str, str], source: str = "from the graph",
                  reasons: dict[str, str] | None = None) -> list[str]:
    """One report line per kind: how many tensors were left out of the cache and the Q/DQ model, and why."""
    lines = []
    for kind in dict.fromkeys(left_out.values()):
        names = [n for n, k in left_out.items() if k == kind]
        shown = ", ".join(names[:3]) + (f", ... ({len(names) - 3} more)" if len(names) > 3 else "")
        reason = (reasons or REASONS).get(kind, kind)
        lines.append(f"left out of the cache and the Q/DQ model ({source}): {len(names)} {kind} "
                     f"tensor{'s' * (len(names) != 1)} ({shown}): {reason}")
    return lines
