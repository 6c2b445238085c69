"""INT4 weight-only quantization: block-wise INT4 DequantizeLinear on MatMul/Gemm weights.

TensorRT 10+ runs weight-only INT4 ("WoQ") from explicit Q/DQ: the weight is a constant INT4
tensor read by a DequantizeLinear that feeds the MatMul/Gemm weight input directly, with one scale
per block of `block_size` consecutive input channels (K) of every output channel, symmetric (zero
point 0), opset 21 (INT4 and the `block_size` attribute; docs/tensorrt.md section 4). Activations
stay float: the GEMM runs in FP32/FP16 on the dequantized weight, so only storage and memory
traffic shrink. The layout follows ModelOpt's INT4 ONNX export (modelopt.onnx.quantization.int4):

    MatMul B[K, N], Gemm transB=0 B[K, N]:  scale [ceil(K / block), N], axis 0
    Gemm transB=1 B[N, K]:                  scale [N, ceil(K / block)], axis 1

Scale = max|w| over the block / 7, so the block's largest magnitude maps to +-7 exactly; the
integers are in [-8, 7] (-8 is reachable only by an error-minimizing rounding, which may move a
weight one step beyond the nearest one). A block of zeros gets scale 1 (all its integers are 0).

Steps: `int4_targets` finds the weights and their block scales; the integers come from
`nearest_integers` (RTN) or any other rounding on the same grid (trtq.accuracy.int4_rounding:
GPTQ from calibration inputs); `apply_int4` writes them. The input model is never modified.

    targets, skipped = int4_targets(model, 128)
    model4, report = apply_int4(model, targets, {t.node: nearest_integers(t) for t in targets}, skipped)
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from trtq.errors import ConfigError
from trtq.onnx_model.large_models import exceeds_protobuf_limit
from trtq.onnx_model.model import opset_version
from trtq.qdq.graph import GraphIndex, NameScope, name_nodes
from trtq.qdq.layer_rows import LayerShape, layer_shape
from trtq.qdq.opset import INT4_OPSET, ensure_opset, set_ir_version
from trtq.qdq.placement import Exclusions, SkippedNode
from trtq.qdq.rounding_solvers import nearest

INT4_LOW, INT4_HIGH = -8, 7
INT4_QMAX = 7.0  # the value a block's max|w| maps to
DEFAULT_BLOCK_SIZE = 128
INT4_OPS = ("MatMul", "Gemm")


@dataclass(frozen=True)
class Int4Target:
    """One weight to quantize: the node reading it, its LayerShape and its (G=1, O, K) matrix and scales.

    Attributes:
        node: name of the MatMul/Gemm.
        op_type: its op type.
        weight: the float initializer's name.
        shape: how the weight maps to matrix rows (trtq.qdq.layer_rows).
        matrix: the weight as (1, O, K), float64.
        scales: block scales (1, O, ceil(K / block_size)), float64.
        block_size: inputs per block.
        axis: the weight axis the blocks run along (K): 0 for B[K, N], 1 for Gemm transB=1 B[N, K].
    """

    node: str
    op_type: str
    weight: str
    shape: LayerShape
    matrix: np.ndarray
    scales: np.ndarray
    block_size: int
    axis: int

    @property
    def grid(self) -> np.ndarray:
        """The scale of every weight of `matrix` (1, O, K): the block scales repeated over their blocks."""
        k = self.matrix.shape[-1]
        return np.repeat(self.scales, self.block_size, axis=-1)[..., :k]


@dataclass(frozen=True)
class Int4Layer:
    """What INT4 quantization did to one weight: its size before/after and its rounding errors.

    `sqnr_db` is the weight's own SQNR (||W||^2 / ||W - s Q||^2) in dB.
    """

    node: str
    op_type: str
    weight_shape: tuple[int, ...]
    blocks: int
    float_bytes: int
    int4_bytes: int
    sqnr_db: float

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["weight_shape"] = list(self.weight_shape)
        d["sqnr_db"] = round(self.sqnr_db, 3) if math.isfinite(self.sqnr_db) else None
        return d


@dataclass(frozen=True)
class Int4Report:
    """What `apply_int4` did: the weights quantized, the ones left in float, and the sizes.

    Attributes:
        block_size: inputs per scale block.
        rounding: "nearest" or the error-minimizing method's name.
        layers: quantized weights, graph order.
        skipped: MatMul/Gemm nodes left in float, with the reason.
        model_bytes: serialized size (before, after) of the whole model.
        opset: default-domain opset (before, after).
    """

    block_size: int
    rounding: str
    layers: tuple[Int4Layer, ...]
    skipped: tuple[SkippedNode, ...]
    model_bytes: tuple[int, int]
    opset: tuple[int, int]

    @property
    def weight_bytes(self) -> tuple[int, int]:
        """Bytes of the quantized weights (float before; packed INT4 + FP32 scales after)."""
        return sum(r.float_bytes for r in self.layers), sum(r.int4_bytes for r in self.layers)

    @property
    def size_reduction(self) -> float:
        """Whole-model size before / after (e.g. 4.5 for 4.5x smaller)."""
        before, after = self.model_bytes
        return before / after if after else math.inf

    def summary(self) -> str:
        """One line for the log and the report."""
        wb, wa = self.weight_bytes
        before, after = self.model_bytes
        return (f"int4-weights ({self.rounding}, block {self.block_size}): {len(self.layers)} MatMul/Gemm weights "
                f"INT4 ({wb / 2**20:.2f} -> {wa / 2**20:.2f} MiB), {len(self.skipped)} left in float; model "
                f"{before / 2**20:.2f} -> {after / 2**20:.2f} MiB ({self.size_reduction:.2f}x smaller)")

    def to_dict(self) -> dict[str, Any]:
        return {"block_size": self.block_size, "rounding": self.rounding, "opset": list(self.opset),
                "model_bytes": list(self.model_bytes), "weight_bytes": list(self.weight_bytes),
                "size_reduction": round(self.size_reduction, 4),
                "layers": [r.to_dict() for r in self.layers],
                "skipped": [{"name": s.name, "op_type": s.op_type, "reason": s.reason} for s in self.skipped]}


def check_block_size(block_size: int) -> None:
    """Raises ConfigError unless block_size is an integer >= 2 (blocks of one are per-weight scales)."""
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 2:
        raise ConfigError(f"block_size must be an integer >= 2, got {block_size!r}",
                          hint="use --block-size 128 (the default), 64 or 32")


def int4_targets(model: onnx.ModelProto, block_size: int = DEFAULT_BLOCK_SIZE,
                 exclusions: Exclusions | None = None) -> tuple[list[Int4Target], list[SkippedNode]]:
    """The MatMul/Gemm weights of `model` INT4 can take, and the candidates left in float with why.

    A weight qualifies when it is a 2-D float initializer read by this one node as its B input, and
    its last dimension is even (TensorRT packs two INT4 values per byte along it). MatMuls of two
    activations (attention) are not candidates. Nodes are matched by name: name them first
    (trtq.qdq.graph.name_nodes), as trtq.pipeline.weight_only does.

    Raises:
        ConfigError: bad block_size.
    """
    check_block_size(block_size)
    index = GraphIndex.build(model, infer=False)
    initializers = {t.name: t for t in model.graph.initializer}
    targets, skipped = [], []
    for node in model.graph.node:
        if node.op_type not in INT4_OPS or len(node.input) < 2:
            continue
        if node.input[1] not in initializers and not index.is_constant(node.input[1]):
            continue  # activation x activation (attention): no weight to quantize
        reason = exclusions.reason(node) if exclusions else None
        found = None if reason else _target(node, initializers, index, block_size)
        if isinstance(found, Int4Target):
            targets.append(found)
        else:
            skipped.append(SkippedNode(node.name, node.op_type, reason or str(found)))
    return targets, skipped


def _target(node: onnx.NodeProto, initializers: Mapping[str, onnx.TensorProto], index: GraphIndex,
            block_size: int) -> Int4Target | str:
    name = node.input[1]
    tensor = initializers.get(name)
    if tensor is None:
        return "its weight is computed from constants (fold the constants first), not an initializer"
    if tensor.data_type not in (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE):
        return f"its weight is {TensorProto.DataType.Name(tensor.data_type)}, not float"
    if len(index.consumers.get(name, [])) != 1:
        return "its weight is shared with other nodes"
    value = numpy_helper.to_array(tensor).astype(np.float64)
    shape = layer_shape(node, tuple(value.shape))
    if isinstance(shape, str):
        return shape
    if value.shape[-1] % 2:
        return f"its weight's last dimension ({value.shape[-1]}) is odd; TensorRT needs it even for INT4"
    matrix = shape.matrix(value)  # (1, O, K)
    k = matrix.shape[-1]
    blocks = -(-k // block_size)
    padded = np.zeros((*matrix.shape[:2], blocks * block_size))
    padded[..., :k] = matrix
    amax = np.abs(padded.reshape(*matrix.shape[:2], blocks, block_size)).max(-1)
    scales = np.where(amax > 0, amax / INT4_QMAX, 1.0).astype(np.float32).astype(np.float64)
    axis = 1 if shape.op_type == "Gemm" and shape.trans_b else 0
    return Int4Target(node.name, node.op_type, name, shape, matrix, scales, block_size, axis)


def nearest_integers(target: Int4Target) -> np.ndarray:
    """RTN: each weight rounded to the nearest step of its block's grid, (1, O, K) in [-8, 7]."""
    return nearest(target.matrix, target.grid, INT4_LOW, INT4_HIGH)


def apply_int4(model: onnx.ModelProto, targets: Sequence[Int4Target], integers: Mapping[str, np.ndarray],
               skipped: Sequence[SkippedNode] = (), rounding: str = "nearest") -> tuple[onnx.ModelProto, Int4Report]:
    """A copy of `model` whose target weights are INT4 initializers read through block-wise DequantizeLinear.

    Args:
        model: the float model (unchanged).
        targets: from int4_targets on this model.
        integers: node name -> its integers (1, O, K) in [-8, 7] on the target's grid.
        skipped: the candidates left in float (for the report).
        rounding: the name of the rounding that made `integers` (for the report).

    Returns:
        The model (opset >= 21, ONNX-checked) and the report.

    Raises:
        ConfigError: integers outside [-8, 7] or of the wrong shape.
        ModelError: the model cannot be converted to opset 21.
    """
    opset_before = opset_version(model)
    work = ensure_opset(copy.deepcopy(model), INT4_OPSET)
    name_nodes(work)
    names = NameScope(work)
    by_node = {n.name: n for n in work.graph.node}
    layers = []
    for t in targets:
        q = np.asarray(integers[t.node])
        if q.shape != t.matrix.shape or q.min(initial=0) < INT4_LOW or q.max(initial=0) > INT4_HIGH:
            raise ConfigError(f"INT4 integers of '{t.node}' have shape {q.shape} / range "
                              f"[{q.min()}, {q.max()}]; expected {t.matrix.shape} in [-8, 7]")
        layers.append(_write(work, by_node[t.node], t, q.astype(np.int8), names))
    set_ir_version(work)
    if not exceeds_protobuf_limit(work):  # the in-memory checker cannot serialise > 2 GiB
        onnx.checker.check_model(work)
    report = Int4Report(targets[0].block_size if targets else 0, rounding, tuple(layers), tuple(skipped),
                        (model.ByteSize(), work.ByteSize()), (opset_before, opset_version(work)))
    return work, report


def _write(work: onnx.ModelProto, node: onnx.NodeProto, t: Int4Target, q: np.ndarray,
           names: NameScope) -> Int4Layer:
    """Replace the float initializer by INT4 + scales + DQ; the DQ output keeps the weight's name."""
    ints = t.shape.weight(q)
    scales = t.scales[0].T if t.axis == 0 else t.scales[0]  # weight layout: blocks along `axis`
    old = next(i for i, x in enumerate(work.graph.initializer) if x.name == t.weight)
    float_bytes = len(work.graph.initializer[old].raw_data) or int(np.prod(ints.shape)) * 4
    del work.graph.initializer[old]
    for i, x in enumerate(work.graph.input):
        if x.name == t.weight:  # old IR versions list initializers as graph inputs
            del work.graph.input[i]
            break
    qname, sname = names.fresh(f"{t.weight}_int4"), names.fresh(f"{t.weight}_scale")
    packed = pack_int4(ints)
    work.graph.initializer.extend([packed_tensor(qname, packed, ints.shape),
                                   numpy_helper.from_array(scales.astype(np.float32), sname)])
    dq = helper.make_node("DequantizeLinear", [qname, sname], [t.weight], name=names.fresh(f"{node.name}_weight_dq"),
                          axis=t.axis, block_size=t.block_size)
    position = next(i for i, n in enumerate(work.graph.node) if n.name == node.name)
    work.graph.node.insert(position, dq)
    d = t.matrix - t.grid * q
    noise, signal = float((d * d).sum()), float((t.matrix * t.matrix).sum())
    sqnr = math.inf if noise == 0 else 10 * math.log10(max(signal, 1e-300) / noise)
    return Int4Layer(t.node, t.op_type, tuple(ints.shape), int(t.scales.size), float_bytes,
                     len(packed) + scales.size * 4, sqnr)


def pack_int4(values: np.ndarray) -> bytes:
    """ONNX INT4 raw data: two values per byte, the first in the low nibble (odd counts padded with 0)."""
    flat = np.asarray(values, np.int8).reshape(-1)
    if flat.size % 2:
        flat = np.append(flat, np.int8(0))
    nibbles = (flat.astype(np.uint8) & 0x0F)
    return (nibbles[0::2] | (nibbles[1::2] << 4)).astype(np.uint8).tobytes()


def packed_tensor(name: str, raw: bytes, dims: Sequence[int]) -> onnx.TensorProto:
    """An INT4 TensorProto from packed raw data."""
    tensor = onnx.TensorProto()
    tensor.name = name
    tensor.data_type = TensorProto.INT4
    tensor.dims.extend(int(d) for d in dims)
    tensor.raw_data = raw
    return tensor
