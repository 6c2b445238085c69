"""Activation ranges re-chosen on the quantized network, by the output error of the layers they feed.

The histogram methods choose each activation's amax from that tensor alone, on FP32 data:
the range that best keeps the tensor itself. What matters is the output of the layer that
reads it, computed with its quantized weight on inputs that already carry the quantization
error of every earlier layer. This pass (AdaQuant, Hubara et al. 2021, section 3, restricted
to the activation step size; the per-tensor output-MSE range choice of Nagel et al. 2021,
"A White Paper on Neural Network Quantization", section 3.5) re-chooses the per-tensor scale s
of an activation that only weighted layers read, from a grid around its histogram scale s0:

    s* = argmin_s  sum over the layers reading it  || fq(X~, s) Wq^T - X W^T ||^2

with X~ the tensor in the partly quantized model (rows as in trtq.qdq.layer_rows), X the
same rows in the FP32 model, Wq the layer's quantized weight and W its FP32 weight;
fq(x, s) = clip(round(x / s), -128, 127) s is QuantizeLinear -> DequantizeLinear with zero
point 0. The grid contains s0, so the chosen error is never larger than the histogram's on
these rows. trtq.accuracy.weight_rounding runs it level by level, before it rounds the
weights of the same layers, so both see the same inputs.

Only scales that belong to one tensor are changed: a scale shared with other Q/DQ pairs
(Concat inputs and outputs share one on purpose) or read by anything but the tensor's own
Q and DQ nodes is left as it is, as are tensors read by other ops as well (Add, Concat, ...).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from trtq.accuracy.metrics import json_float
from trtq.qdq.graph import GraphIndex

# Factors of the histogram scale tried: finer near 1, down to 0.4 (heavy tails clipped
# harder) and up to 1.6 (a range the calibration data clipped too hard).
FACTORS = np.unique(np.concatenate([np.geomspace(0.4, 1.0, 13), np.geomspace(1.0, 1.6, 7)]))
SEARCH_ROWS = 4096  # rows per layer the error is measured on (all when fewer)
QMIN, QMAX = -128, 127


@dataclass(frozen=True)
class InputScale:
    """An activation's per-tensor INT8 quantization: its Q node and its scale initializer(s)."""

    tensor: str
    quantize: onnx.NodeProto
    scale_names: tuple[str, ...]
    scale: float
    refinable: bool  # the scale belongs to this tensor alone and only weighted layers read it


@dataclass(frozen=True)
class RangeChoice:
    """One re-chosen activation range (amax = 127 * scale)."""

    tensor: str
    layers: tuple[str, ...]
    amax_before: float
    amax_after: float
    error_ratio: float  # layer output error after / before, on the search rows (<= 1)

    def to_dict(self) -> dict[str, Any]:
        return {"tensor": self.tensor, "layers": list(self.layers), "amax_before": json_float(self.amax_before),
                "amax_after": json_float(self.amax_after), "error_ratio": json_float(self.error_ratio)}


def input_scale(index: GraphIndex, layer_input: str, weighted: frozenset[str]) -> InputScale | None:
    """How `layer_input` (a DequantizeLinear output) is quantized, or None if it is not an INT8
    per-tensor Q -> DQ of a float tensor. `weighted`: names of the layers the pass handles."""
    dq = index.producer_node(layer_input)
    if dq is None or dq.op_type != "DequantizeLinear":
        return None
    q = index.producer_node(dq.input[0])
    if q is None or q.op_type != "QuantizeLinear" or len(q.input) < 3 or len(dq.input) < 3:
        return None
    scale = index.constant_value(q.input[1])
    zero = index.constant_value(q.input[2])
    if scale is None or zero is None or np.size(scale) != 1 or zero.dtype != np.int8 or np.any(zero != 0):
        return None
    dq_scale = index.constant_value(dq.input[1])
    if dq_scale is None or np.size(dq_scale) != 1 or float(np.asarray(dq_scale)) != float(np.asarray(scale)):
        return None
    dqs = index.consumer_nodes(q.output[0])
    own = {id(q), *(id(n) for n in dqs)}
    names = tuple(dict.fromkeys([q.input[1], *(n.input[1] for n in dqs)]))
    alone = all(n.op_type == "DequantizeLinear" for n in dqs) and all(name in index.initializers for name in names) \
        and all(id(reader) in own for name in names for reader in index.consumer_nodes(name))
    readers = [r for n in dqs for r in index.consumer_nodes(n.output[0])]
    refinable = alone and all(r.name in weighted for r in readers) and \
        len(index.consumer_nodes(q.input[0])) == 1 and q.input[0] not in index.graph_outputs  # feeds nothing else
    return InputScale(str(q.input[0]), q, names, float(np.asarray(scale)), refinable)


def fake_quant(x: np.ndarray, scale: float) -> np.ndarray:
    """QuantizeLinear -> DequantizeLinear, INT8, zero point 0 (round half to even, saturate)."""
    s = np.float32(scale)
    out: np.ndarray = np.clip(np.rint(x / s), QMIN, QMAX).astype(np.float32) * s
    return out


def choose_scale(scale: float, layers: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]
                 ) -> tuple[float, float]:
    """The grid scale with the least summed layer output error, and error(best) / error(scale).

    Args:
        scale: the histogram scale s0.
        layers: per reading layer (X~ rows (G, R, K), X rows (G, R, K), Wq (G, O, K), W (G, O, K)).
    """
    prepared = []
    for xs, xf, wq, w in layers:
        keep = slice(None) if xs.shape[1] <= SEARCH_ROWS else slice(None, None, -(-xs.shape[1] // SEARCH_ROWS))
        xs, xf = xs[:, keep], xf[:, keep]
        target = np.matmul(xf, np.swapaxes(w, 1, 2).astype(np.float32))
        prepared.append((xs, np.swapaxes(wq, 1, 2).astype(np.float32), target))
    errors = []
    for factor in FACTORS:
        s = scale * float(factor)
        errors.append(sum(float(np.square(np.matmul(fake_quant(xs, s), wq_t) - target,
                                          dtype=np.float64).sum()) for xs, wq_t, target in prepared))
    base = errors[int(np.argmin(np.abs(FACTORS - 1.0)))]
    best = int(np.argmin(errors))
    if errors[best] >= base:
        return scale, 1.0
    return scale * float(FACTORS[best]), errors[best] / base if base > 0 else 1.0


def write_scale(model: onnx.ModelProto, found: InputScale, scale: float) -> None:
    """Set the scale initializer(s) of `found` to `scale` (float32 scalars, as written)."""
    wanted = set(found.scale_names)
    for tensor in model.graph.initializer:
        if tensor.name in wanted:
            value = numpy_helper.to_array(tensor)
            tensor.CopyFrom(numpy_helper.from_array(np.asarray(scale, dtype=value.dtype).reshape(value.shape),
                                                    tensor.name))
