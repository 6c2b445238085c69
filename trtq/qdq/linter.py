"""Check any Q/DQ ONNX model against what TensorRT accepts and fuses well.

Errors are models TensorRT's ONNX parser rejects or silently misreads
(docs/tensorrt.md §4: onnx-tensorrt's QuantizeLinear/DequantizeLinear
importers and IQuantizeLayer's contract). Warnings are valid models whose Q/DQ
placement costs speed or accuracy (TensorRT developer guide, Q/DQ placement
recommendations). Rules, one id each:

errors
    nonzero-zero-point     a zero point is not all zeros (TensorRT quantizes symmetrically only)
    unsigned-type          UINT8/UINT4 Q/DQ (the parser rejects unsigned types; a Q without a zero
                           point and without output_dtype is UINT8 by the ONNX spec)
    missing-axis           per-channel Q/DQ without an explicit `axis` (the parser defaults it to 0,
                           ONNX to 1: the scales land on the wrong dimension)
    per-channel-activation per-channel scales on a Q whose input is not a constant (TensorRT supports
                           per-channel scales on weights only)
    bad-scale              a scale is <= 0, NaN or infinite
    scale-not-constant     a scale or zero point is computed, not an initializer/Constant (TensorRT
                           needs build-time constant scales)
    opset-too-old          the default-domain opset is too old for what the Q/DQ node uses
                           (per-channel axis 13, FP8 or FP16 scales 19, INT4 or block_size 21)
    scale-length           per-channel scale (or zero point) length != the input's dim[axis]
    int4-activation        an INT4 or block-quantized Q/DQ reads an activation: TensorRT has INT4 and
                           block quantization for weights only (weight-only quantization)
    int4-consumer          an INT4 weight's DequantizeLinear does not feed a MatMul/Gemm weight input
                           directly (TensorRT runs INT4 weights only as the DQ -> GEMM weight pattern)
    int4-odd-dim           an INT4 weight whose last dimension is odd (TensorRT packs two INT4 values
                           per byte along it and rejects odd sizes)
    block-shape            block quantization whose scale does not have the input's rank, blocks along
                           more than one axis, or has a length != ceil(dim / block_size) along `axis`
                           and != dim elsewhere (ONNX DequantizeLinear-21)
    block-type             block quantization of a type TensorRT does not block (only INT4, FP4, FP8)
warnings
    output-qdq             Q/DQ on the output of a Conv/Gemm/MatMul whose DQ feeds only
                           non-quantized consumers (forces an INT8 output and a reformat for nothing)
    qdq-splits-fusion      a Q/DQ pair between a Conv/Gemm and a following BatchNormalization or
                           activation, which TensorRT would otherwise fuse into the convolution
    dangling-q             a Q whose output is not read by a DequantizeLinear
    double-quantization    DQ -> Q with a different scale (a requantization: two roundings)
    pair-mismatch          Q -> DQ whose scales or zero points differ
    mha-scores-qdq         a Q/DQ pair between an attention's Q@K^T and its Softmax (on the scores, the
                           scale, the mask bias or the masked scores): TensorRT fuses BMM1 -> scale ->
                           mask -> Softmax -> BMM2 into one kernel only without it (placement rule 10)
    mha-half-quantized     one batched MatMul of an attention reads both inputs through DQ and the other
                           does not (or a BMM has one DQ input): neither TensorRT's INT8 nor its FP16
                           fused attention applies, and the lone pairs only add reformats
info
    no-qdq                 the model has no Q/DQ nodes at all
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto

from trtq.onnx_model.model import opset_version
from trtq.onnx_model.tensors import QUANTIZABLE_OPS
from trtq.qdq.attention import find_attention
from trtq.qdq.graph import GraphIndex
from trtq.qdq.opset import FP8_TYPES
from trtq.qdq.placement import WEIGHTED_OPS

QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
_UNSIGNED = frozenset({TensorProto.UINT8, TensorProto.UINT4, TensorProto.UINT16})
_INT4 = frozenset({TensorProto.INT4, TensorProto.UINT4})
# Ops TensorRT fuses into a preceding convolution/GEMM (BN folding, pointwise activations).
_FUSED_AFTER_CONV = frozenset({
    "BatchNormalization", "Relu", "LeakyRelu", "Sigmoid", "Tanh", "Clip", "HardSigmoid", "HardSwish", "Elu",
    "Selu", "Softplus", "PRelu",
})
_QUANTIZED_CONSUMERS = QUANTIZABLE_OPS | {"QuantizeLinear", "Reshape", "Transpose", "Flatten", "Squeeze",
                                          "Unsqueeze", "Slice", "Split", "Pad"}

RULES = {
    "nonzero-zero-point": "error", "unsigned-type": "error", "missing-axis": "error",
    "per-channel-activation": "error", "bad-scale": "error", "scale-not-constant": "error",
    "opset-too-old": "error", "scale-length": "error", "output-qdq": "warning", "qdq-splits-fusion": "warning",
    "dangling-q": "warning", "double-quantization": "warning", "pair-mismatch": "warning",
    "mha-scores-qdq": "warning", "mha-half-quantized": "warning", "no-qdq": "info",
    "int4-activation": "error", "int4-consumer": "error", "int4-odd-dim": "error", "block-shape": "error",
    "block-type": "error",
}
_BLOCKABLE = frozenset({TensorProto.INT4, TensorProto.FLOAT4E2M1}) | FP8_TYPES
_INT4_WEIGHT_OPS = ("MatMul", "Gemm")


@dataclass(frozen=True)
class Finding:
    """One problem: severity ("error", "warning" or "info"), rule id, node name and message."""

    severity: str
    rule: str
    node: str
    message: str

    def line(self) -> str:
        """`<severity>  <rule>  <node>: <message>` (no node part for model-wide findings), as `trtq lint` prints it."""
        where = f"  {self.node}" if self.node else ""
        return f"{self.severity}  {self.rule}{where}: {self.message}"


@dataclass(frozen=True)
class _QDQ:
    """What the linter needs to know about one QuantizeLinear/DequantizeLinear node."""

    index: int
    node: onnx.NodeProto
    name: str
    scale: np.ndarray | None  # None: not a constant
    zero_point: np.ndarray | None  # None: absent or not a constant
    has_zero_point: bool
    qtype: int | None  # quantized element type, None when unknown
    axis: int | None  # the attribute as written, None when absent
    block_size: int

    @property
    def per_channel(self) -> bool:
        return self.scale is not None and self.scale.ndim == 1 and self.scale.size > 1

    @property
    def is_q(self) -> bool:
        return self.node.op_type == "QuantizeLinear"


class _Context:
    def __init__(self, model: onnx.ModelProto) -> None:
        self.index = GraphIndex.build(model)
        self.opset = opset_version(model)
        self.qdq: dict[int, _QDQ] = {}
        for i, node in enumerate(model.graph.node):
            if node.op_type in QDQ_OPS and node.domain in ("", "ai.onnx"):
                self.qdq[i] = self._describe(i, node)

    def display_name(self, i: int) -> str:
        node = self.index.node(i)
        return node.name or f"{node.op_type}#{i}"

    def _describe(self, i: int, node: onnx.NodeProto) -> _QDQ:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        zp_name = node.input[2] if len(node.input) > 2 and node.input[2] else None
        scale = self.index.constant_value(node.input[1]) if len(node.input) > 1 else None
        zero_point = self.index.constant_value(zp_name) if zp_name else None
        return _QDQ(i, node, self.display_name(i), None if scale is None else np.asarray(scale),
                    zero_point, zp_name is not None, self._qtype(node, zp_name, attrs),
                    attrs.get("axis"), int(attrs.get("block_size", 0)))

    def _qtype(self, node: onnx.NodeProto, zp_name: str | None, attrs: dict[str, Any]) -> int | None:
        if zp_name:
            return self.index.types.get(zp_name)
        if node.op_type == "QuantizeLinear":
            return int(attrs.get("output_dtype", 0)) or TensorProto.UINT8  # ONNX: no zero point -> uint8
        return self.index.types.get(node.input[0])

    def consumers_of_outputs(self, i: int) -> list[int]:
        return [c for o in self.index.node(i).output for c, _ in self.index.consumers.get(o, [])]


def lint_model(model: onnx.ModelProto) -> list[Finding]:
    """All findings for `model`, errors first, then warnings, each in graph order.

    A model without any Q/DQ node gives one "info" finding (rule no-qdq).
    """
    ctx = _Context(model)
    if not ctx.qdq:
        return [Finding("info", "no-qdq", "", "no Q/DQ nodes")]
    findings = [f for q in ctx.qdq.values() for check in _CHECKS for f in check(ctx, q)]
    findings += _attention_findings(ctx)
    order = {"error": 0, "warning": 1, "info": 2}
    return sorted(findings, key=lambda f: order[f.severity])  # stable: graph order within a severity


def _finding(rule: str, q: _QDQ, message: str) -> Finding:
    return Finding(RULES[rule], rule, q.name, message)


def _type_name(elem: int | None) -> str:
    return "unknown" if elem is None else TensorProto.DataType.Name(elem)


def _check_zero_point(ctx: _Context, q: _QDQ) -> Iterator[Finding]:
    if q.zero_point is not None and np.any(q.zero_point.astype(np.float64) != 0):
        values = np.unique(q.zero_point.astype(np.float64))[:4].tolist()
        yield _finding("nonzero-zero-point", q, f"zero point is {values}: asymmetric quantization, which "
                       "TensorRT does not support (onnxruntime quantize_static makes it by default); "
                       "re-quantize symmetrically (ActivationSymmetric=True, QInt8) or with trtq")


def _check_type(ctx: _Context, q: _QDQ) -> Iterator[Finding]:
    if q.qtype in _UNSIGNED:
        how = "" if q.has_zero_point else " (a QuantizeLinear without a zero point outputs UINT8)"
        yield _finding("unsigned-type", q, f"quantized type is {_type_name(q.qtype)}{how}; TensorRT accepts "
                       "signed INT8/INT4 and FP8 only (onnxruntime's default QUInt8 activations are rejected); "
                       "use INT8 with zero point 0")


def _check_scale(ctx: _Context, q: _QDQ) -> Iterator[Finding]:
    names = [q.node.input[1]] + ([q.node.input[2]] if q.has_zero_point else [])
    computed = [n for n in names if not ctx.index.is_constant(n)]
    if computed or q.scale is None:
        which = computed[0] if computed else names[0]
        yield _finding("scale-not-constant", q, f"'{which}' is computed at run time or not a plain "
                       "initializer/Constant; TensorRT needs build-time constant scales and zero points")
        return
    scale = q.scale.astype(np.float64)
    if not np.all(np.isfinite(scale)) or np.any(scale <= 0):
        bad = scale[~(np.isfinite(scale) & (scale > 0))][:4].tolist()
        yield _finding("bad-scale", q, f"scale has values {bad}; every scale must be finite and > 0")


def _check_axis(ctx: _Context, q: _QDQ) -> Iterator[Finding]:
    if not q.per_channel or q.scale is None:
        return
    if q.axis is None:
        yield _finding("missing-axis", q, f"per-channel scale ({q.scale.size} values) without an explicit "
                       "axis: TensorRT's parser defaults axis to 0, ONNX to 1; write axis explicitly")
    if q.is_q and not ctx.index.is_constant(q.node.input[0]):
        yield _finding("per-channel-activation", q, f"per-channel scale on activation '{q.node.input[0]}'; "
                       "TensorRT supports per-channel scales on weights only: use one scale per tensor")
    yield from _check_scale_length(ctx, q)


def _check_scale_length(ctx: _Context, q: _QDQ) -> Iterator[Finding]:
    if q.axis is None or q.scale is None:
        return
    shape = ctx.index.shapes.get(q.node.input[0])
    if shape is None or not -len(shape) <= q.axis < len(shape):
        return
    dim = shape[q.axis]
    lengths = {"scale": q.scale.size}
    if q.zero_point is not None:
        lengths["zero point"] = q.zero_point.size
    for what, length in lengths.items():
        if dim is not None and length != dim:
            yield _finding("scale-length", q, f"{what} has {length} values but input '{q.node.input[0]}' "
                           f"has {dim} along axis {q.axis} (shape {list(shape)})")


def _check_opset(ctx: _Context, q: _QDQ) -> Iterator[Finding]:
    needs: list[tuple[int, str]] = []
    if q.per_channel or q.axis is not None:
        needs.append((13, "per-channel scales / the axis attribute"))
    if q.qtype in FP8_TYPES:
        needs.append((19, "FP8 types"))
    if q.scale is not None and q.scale.dtype == np.float16:
        needs.append((19, "FP16 scales"))
    if q.qtype in _INT4 or q.block_size:
        needs.append((21, "INT4 types / block quantization"))
    for version, what in needs:
        if ctx.opset < version:
            yield _finding("opset-too-old", q, f"{what} need opset {version}, the model imports opset "
                           f"{ctx.opset}; convert it (onnx.version_converter) or re-export")


def _check_dangling(ctx: _Context, q: _QDQ) -> Iterator[Finding]:
    if not q.is_q:
        return
    consumers = [ctx.index.node(c) for c in ctx.consumers_of_outputs(q.index)]
    if not any(c.op_type == "DequantizeLinear" for c in consumers):
        yield _finding("dangling-q", q, f"Q of '{q.node.input[0]}' is not followed by a DequantizeLinear; "
                       "TensorRT expects every Q to feed a DQ")


def _check_pairs(ctx: _Context, q: _QDQ) -> Iterator[Finding]:
    """DQ -> Q requantization, and Q -> DQ pairs whose parameters differ."""
    if not q.is_q:
        return
    producer = ctx.index.producer.get(q.node.input[0])
    if producer in ctx.qdq and not ctx.qdq[producer].is_q and not _same_params(ctx.qdq[producer], q):
        yield _finding("double-quantization", q, f"'{q.node.input[0]}' is dequantized by "
                       f"'{ctx.qdq[producer].name}' and quantized again with a different scale: two roundings; "
                       "share one scale or remove the inner pair")
    for c in ctx.consumers_of_outputs(q.index):
        dq = ctx.qdq.get(c)
        if dq is not None and not dq.is_q and not _same_params(q, dq):
            yield _finding("pair-mismatch", q, f"its DequantizeLinear '{dq.name}' uses a different scale or "
                           "zero point; a Q/DQ pair must share both")


def _same_params(a: _QDQ, b: _QDQ) -> bool:
    if a.scale is None or b.scale is None:
        return True  # unknown; scale-not-constant reports it
    same_scale = a.scale.shape == b.scale.shape and np.array_equal(a.scale, b.scale, equal_nan=True)
    zp_a = a.zero_point if a.zero_point is not None else np.zeros(1)
    zp_b = b.zero_point if b.zero_point is not None else np.zeros(1)
    return same_scale and np.array_equal(zp_a.astype(np.float64).ravel(), zp_b.astype(np.float64).ravel()) \
        and a.qtype == b.qtype


def _check_placement(ctx: _Context, q: _QDQ) -> Iterator[Finding]:
    """Q/DQ on a Conv/Gemm/MatMul output: splitting a BN/activation fusion, or feeding only float ops."""
    if not q.is_q or ctx.index.is_constant(q.node.input[0]):
        return
    conv = _conv_source(ctx, q.node.input[0])
    if conv is None:
        return
    dqs = [dq for dq in ctx.consumers_of_outputs(q.index) if ctx.index.node(dq).op_type == "DequantizeLinear"]
    consumers = [ctx.index.node(c) for dq in dqs for c in ctx.consumers_of_outputs(dq)]
    to_output = any(o in ctx.index.graph_outputs for dq in dqs for o in ctx.index.node(dq).output)
    split = [c for c in consumers if c.op_type in _FUSED_AFTER_CONV]
    if split:
        yield _finding("qdq-splits-fusion", q, f"Q/DQ between {conv.op_type} '{conv.name}' and "
                       f"{split[0].op_type} '{split[0].name}' prevents TensorRT from fusing them; move the "
                       "Q/DQ to the input of the next quantized layer")
    elif (consumers or to_output) and not any(c.op_type in _QUANTIZED_CONSUMERS for c in consumers):
        kinds = ", ".join(sorted({c.op_type for c in consumers} | ({"graph output"} if to_output else set())))
        yield _finding("output-qdq", q, f"Q/DQ on the output of {conv.op_type} '{conv.name}' feeds only "
                       f"non-quantized ops ({kinds}): an INT8 output plus a reformat for nothing; remove it")


def _conv_source(ctx: _Context, tensor: str) -> onnx.NodeProto | None:
    """The Conv/Gemm/MatMul `tensor` comes from directly or through a BatchNormalization."""
    node = ctx.index.producer_node(tensor)
    if node is not None and node.op_type == "BatchNormalization":
        node = ctx.index.producer_node(node.input[0])
    return node if node is not None and node.op_type in WEIGHTED_OPS else None


def _weight_shape(ctx: _Context, q: _QDQ) -> tuple[int | None, ...] | None:
    """The static shape of the Q/DQ input (an initializer's dims when it is one)."""
    tensor = ctx.index.initializers.get(q.node.input[0])
    if tensor is not None:
        return tuple(int(d) for d in tensor.dims)
    return ctx.index.shapes.get(q.node.input[0])


def _reads_constant(ctx: _Context, q: _QDQ) -> bool:
    """The Q/DQ input is a constant, or (a DQ) the output of a Q of a constant."""
    source = q.node.input[0]
    producer = ctx.index.producer_node(source)
    if not q.is_q and producer is not None and producer.op_type == "QuantizeLinear":
        source = producer.input[0]
    return ctx.index.is_constant(source)


def _check_int4(ctx: _Context, q: _QDQ) -> Iterator[Finding]:
    """INT4 and block quantization: weight-only, DQ -> MatMul/Gemm weight, even last dim (TensorRT)."""
    int4 = q.qtype == TensorProto.INT4
    if not (int4 or q.block_size):
        return
    if not _reads_constant(ctx, q):
        yield _finding("int4-activation", q, f"{'INT4' if int4 else 'block'} quantization of activation "
                       f"'{q.node.input[0]}': TensorRT supports it for constant weights only; quantize "
                       "activations to INT8/FP8 per tensor, or leave them float (--precision int4-weights)")
        return
    if int4 and not q.is_q:
        uses = [(ctx.index.node(c), j) for o in q.node.output for c, j in ctx.index.consumers.get(o, [])]
        wrong = [n for n, j in uses if n.op_type not in _INT4_WEIGHT_OPS or j != 1]
        if wrong:
            yield _finding("int4-consumer", q, f"the INT4 weight's DequantizeLinear feeds {wrong[0].op_type} "
                           f"'{wrong[0].name}'; TensorRT runs INT4 weights only when the DQ output is the "
                           "weight (B) input of a MatMul/Gemm directly")
    shape = _weight_shape(ctx, q)
    if int4 and shape and shape[-1] is not None and shape[-1] % 2:
        yield _finding("int4-odd-dim", q, f"INT4 weight '{q.node.input[0]}' has shape {list(shape)}: its last "
                       "dimension must be even for TensorRT; leave this weight in float or INT8")
    if q.block_size:
        yield from _check_block(q, shape)


def _check_block(q: _QDQ, shape: tuple[int | None, ...] | None) -> Iterator[Finding]:
    if q.qtype not in _BLOCKABLE:
        yield _finding("block-type", q, f"block quantization of {_type_name(q.qtype)}: TensorRT blocks INT4, "
                       "FP4 and FP8 only; use per-channel scales for INT8")
    if q.scale is None or shape is None:
        return
    axis = q.axis if q.axis is not None else 1
    if q.scale.ndim != len(shape) or not -len(shape) <= axis < len(shape):
        yield _finding("block-shape", q, f"block scale has shape {list(q.scale.shape)} for input shape "
                       f"{list(shape)} (axis {axis}): it must have the input's rank")
        return
    axis %= len(shape)
    want = [None if d is None else (-(-d // q.block_size) if i == axis else d) for i, d in enumerate(shape)]
    if any(w is not None and w != got for w, got in zip(want, q.scale.shape, strict=True)):
        yield _finding("block-shape", q, f"block scale has shape {list(q.scale.shape)}; input shape "
                       f"{list(shape)} with block_size {q.block_size} along axis {axis} needs {want}")


_CHECKS: tuple[Callable[[_Context, _QDQ], Iterator[Finding]], ...] = (
    _check_zero_point, _check_type, _check_scale, _check_axis, _check_opset, _check_dangling, _check_pairs,
    _check_placement, _check_int4,
)


def _attention_findings(ctx: _Context) -> list[Finding]:
    """Placement rule 10 on every attention core: nothing quantized between BMM1 and Softmax, both BMMs
    quantized or neither."""
    findings = []
    for core in find_attention(ctx.index):
        softmax = ctx.display_name(core.softmax)
        for q in ctx.qdq.values():
            if q.is_q and q.node.input[0] in core.score_tensors:
                findings.append(_finding("mha-scores-qdq", q, f"Q/DQ on '{q.node.input[0]}' between the "
                                         f"attention's Q@K^T and Softmax '{softmax}' stops TensorRT from fusing "
                                         "the attention into one kernel; quantize only the inputs of the two "
                                         "MatMuls"))
        dq_inputs = [_dq_inputs(ctx, bmm) for bmm in (core.bmm1, core.bmm2)]
        if dq_inputs[0] != dq_inputs[1] or dq_inputs[0] == 1:
            bmm1, bmm2 = ctx.display_name(core.bmm1), ctx.display_name(core.bmm2)
            findings.append(Finding(RULES["mha-half-quantized"], "mha-half-quantized", bmm1,
                                    f"the attention's MatMuls '{bmm1}' and '{bmm2}' read {dq_inputs[0]} and "
                                    f"{dq_inputs[1]} of their 2 inputs through DequantizeLinear: quantize all "
                                    "four (Q, K, the Softmax output, V) or none"))
    return findings


def _dq_inputs(ctx: _Context, node_index: int) -> int:
    """How many of a node's first two inputs come from a DequantizeLinear."""
    node = ctx.index.node(node_index)
    producers = [ctx.index.producer.get(t) for t in node.input[:2]]
    return sum(1 for p in producers if p is not None and ctx.index.node(p).op_type == "DequantizeLinear")

