"""Shifted activations: an asymmetric range on TensorRT's symmetric INT8 grid, made exact by the bias.

TensorRT's INT8 activations are symmetric (zero point 0): a ReLU6 output in [0, 6] or a GELU
output in [-0.17, A] uses only half of the 255 levels. Subtracting a per-channel shift z_j
before the Q node centres each channel, so one per-tensor scale covers [lo_j, hi_j] with half
the step (6 dB less rounding noise). The layer that reads the tensor gets the shift back in its
bias: W (x - z) + W z = W x. This is the channel-wise shifting of Outlier Suppression+ (Wei et
al. 2023, "Outlier Suppression+: Accurate quantization of large language models by equivalent
and optimal shifting and scaling", section 4.1), migrated into the next layer's bias as there.

Two details make it pay, both measured on MobileNetV2 (300 held-out crops, default ranges):
- z lies on the new quantization grid. ReLU outputs are mostly exact zeros, which the
  symmetric grid represents without error; a shift off the grid would turn each of them into
  rounding noise (every padded-conv shift on: 12.91 -> 10.49 dB; on the grid: 17.56 dB).
- The compensation uses the layer's dequantized weights (what TensorRT multiplies with), not
  the FP32 ones, so the shifted Q/DQ model computes exactly W_q x plus the (smaller) rounding
  noise of x - z; with FP32 weights the weight error times z would become a bias error.

Where the compensation goes:
- MatMul (constant B), Gemm and 1x1 Conv without padding: a constant per output channel, added
  to the layer's bias (Gemm C, Conv B, or the constant operand of the Add after a MatMul);
  nothing is added to the graph but the Sub before the Q, a pointwise op TensorRT fuses into
  the op producing the tensor.
- A Conv with padding (depthwise 3x3 above all, the largest gain): its zero padding is not zero
  after the shift, so the compensation varies at the borders: Conv(z) over the input's static
  spatial shape, a constant [1, C, H, W] added after the conv (`all` only; a second pointwise op
  after the conv, and only for static spatial sizes).

A shift is applied only where it narrows the range by at least MIN_GAIN_DB and the DQ output
feeds nothing but such layers (a tensor also read by an Add or Concat keeps its pair). The
threshold keeps roughly symmetric tensors as they are: centring one on the extremes of its
calibration sample takes away the headroom its shorter side had, for a gain of a few levels
(a Gaussian input, 1.5 dB narrower, lost 1 dB of output SQNR on held-out data that way).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from trtq.qdq.graph import GraphIndex, NameScope

MIN_GAIN_DB = 3.0
HEADROOM = 2.0
QMAX = 127


@dataclass
class ShiftedTensor:
    """One activation that got a shift: its name, the old and new per-tensor amax, the layers compensated."""

    tensor: str
    amax_before: float
    amax_after: float
    layers: list[str] = field(default_factory=list)

    @property
    def gain_db(self) -> float:
        return float(20.0 * np.log10(self.amax_before / self.amax_after))

    def to_dict(self) -> dict[str, Any]:
        return {"tensor": self.tensor, "amax_before": self.amax_before, "amax_after": self.amax_after,
                "gain_db": round(self.gain_db, 2), "layers": list(self.layers)}


@dataclass
class ShiftTarget:
    """An activation Q/DQ pair whose DQ output feeds only layers that can take its shift back.

    Attributes:
        tensor: the quantized tensor (the Q node's input).
        quantize, dequantize: the pair's nodes.
        layers: the layers reading the DQ output.
        channel_axis: the channel axis of the tensor (1 for Conv inputs, -1 for MatMul/Gemm).
    """

    tensor: str
    quantize: onnx.NodeProto
    dequantize: onnx.NodeProto
    layers: list[onnx.NodeProto]
    channel_axis: int


def _attr(node: onnx.NodeProto, name: str, default: Any) -> Any:
    return next((helper.get_attribute_value(a) for a in node.attribute if a.name == name), default)


class _Graph:
    """The model being shifted, its GraphIndex (built before any change), and the initializers replaced so far."""

    def __init__(self, model: onnx.ModelProto, weights_dir: Path | None = None) -> None:
        self.model = model
        self.index = GraphIndex.build(model, infer=False, weights_dir=weights_dir)
        self.replaced: set[str] = set()  # old scales and biases, dropped at the end if nothing reads them

    def producer(self, name: str) -> onnx.NodeProto | None:
        return self.index.producer_node(name)

    def consumers(self, name: str) -> list[onnx.NodeProto]:
        return self.index.consumer_nodes(name)

    def value(self, name: str) -> np.ndarray | None:
        return self.index.constant_value(name)

    def dequantized_weight(self, name: str) -> np.ndarray | None:
        """The weight a layer input `name` carries as TensorRT multiplies it: DQ(int8) or DQ(Q(float))."""
        dq = self.producer(name)
        if dq is None or dq.op_type != "DequantizeLinear":
            return None
        scale = self.value(dq.input[1])
        axis = _attr(dq, "axis", 1)
        q = self.producer(dq.input[0])
        if q is not None and q.op_type == "QuantizeLinear":
            w = self.value(q.input[0])
            if w is None or scale is None:
                return None
            ints = np.clip(np.rint(w / _broadcast(scale, w.ndim, axis)), -128, 127)
        else:
            ints = self.value(dq.input[0])
            if ints is None or scale is None or ints.dtype != np.int8:
                return None
            w = ints
        zero = self.value(dq.input[2]) if len(dq.input) > 2 and dq.input[2] else None
        if zero is not None and np.any(zero != 0):
            return None
        weight: np.ndarray = ints.astype(np.float64) * _broadcast(scale, w.ndim, axis)
        return weight


def _broadcast(scale: np.ndarray, ndim: int, axis: int) -> np.ndarray:
    scale = np.asarray(scale, np.float64)
    if scale.ndim == 0:
        return scale
    shape = [1] * ndim
    shape[axis % ndim] = -1
    return scale.reshape(shape)


def _padded(node: onnx.NodeProto) -> bool:
    return node.op_type == "Conv" and any(_attr(node, "pads", [0]))


def _layer_kind(graph: _Graph, node: onnx.NodeProto, dq_out: str, mode: str) -> int | None:
    """The channel axis of `dq_out` if `node` reads it as its data input and can take the shift, else None."""
    if not node.input or node.input[0] != dq_out or dq_out in node.input[1:]:
        return None
    if (node.op_type == "MatMul" and len(node.input) == 2) or (node.op_type == "Gemm" and not _attr(node, "transA", 0)):
        w = graph.dequantized_weight(node.input[1])
        return -1 if w is not None and w.ndim == 2 else None
    if node.op_type == "Conv":
        w = graph.dequantized_weight(node.input[1])
        if w is None or w.ndim != 4:
            return None
        if _attr(node, "auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
            return None
        uniform = not any(_attr(node, "pads", [0]))
        return 1 if uniform or mode == "all" else None
    return None


def shift_targets(model: onnx.ModelProto, mode: str = "linear", weights_dir: Path | None = None) -> list[ShiftTarget]:
    """The activation Q/DQ pairs of `model` a shift can apply to (see the module docstring).

    `weights_dir`: the folder of the weights a model loaded by reference left in files.
    """
    if mode == "off":
        return []
    graph = _Graph(model, weights_dir)
    found = []
    for q in model.graph.node:
        if q.op_type != "QuantizeLinear" or graph.index.is_constant(q.input[0]):
            continue
        scale = graph.value(q.input[1])
        readers = graph.consumers(q.output[0])
        if scale is None or scale.size != 1 or len(readers) != 1 or readers[0].op_type != "DequantizeLinear":
            continue
        dq = readers[0]
        if dq.input[1] != q.input[1] or dq.output[0] in graph.index.graph_outputs:
            continue
        layers = graph.consumers(dq.output[0])
        axes = {_layer_kind(graph, n, dq.output[0], mode) for n in layers}
        if layers and None not in axes and len(axes) == 1:
            found.append(ShiftTarget(q.input[0], q, dq, layers, axes.pop()))  # type: ignore[arg-type]
    return found


Ranges = Mapping[str, tuple[np.ndarray, np.ndarray]]


def apply_shifts(model: onnx.ModelProto, targets: list[ShiftTarget], ranges: Ranges,
                 shapes: Mapping[str, tuple[int, ...]],
                 weights_dir: Path | None = None) -> tuple[onnx.ModelProto, list[ShiftedTensor]]:
    """Shift each target with per-channel [lo, hi] `ranges` (measured on calibration data) in place of `model`.

    `shapes`: the tensor's shape as measured (a padded Conv's border compensation needs its spatial size).
    Targets without ranges, or whose range would narrow by less than MIN_GAIN_DB, are left alone.
    """
    graph = _Graph(model, weights_dir)
    scope = NameScope(model)
    done: list[ShiftedTensor] = []
    before: list[tuple[onnx.NodeProto, onnx.NodeProto]] = []
    after: list[tuple[onnx.NodeProto, onnx.NodeProto]] = []
    for target in targets:
        if target.tensor not in ranges or (any(_padded(n) for n in target.layers) and target.tensor not in shapes):
            continue
        amax = float(np.asarray(graph.value(target.quantize.input[1])).reshape(())) * QMAX
        lo, hi = _windows(np.asarray(ranges[target.tensor][0], np.float64),
                          np.asarray(ranges[target.tensor][1], np.float64), amax)
        half = float(((hi - lo) / 2).max()) if lo.size else 0.0
        if half <= 0 or 20 * np.log10(amax / half) < MIN_GAIN_DB:
            continue
        # z on the new grid (zeros stay exact); the half step of rounding z is inside the range
        step = float(np.float32(half / (QMAX - 0.5)))  # the scale as stored
        z = np.rint((lo + hi) / 2 / step) * step
        shifted = ShiftedTensor(target.tensor, amax, step * QMAX)
        ndim = len(shapes.get(target.tensor, ())) or (4 if target.channel_axis == 1 else 2)
        z_shape = [1] * ndim
        z_shape[target.channel_axis % ndim] = -1
        z_name = scope.fresh(f"{target.tensor}_shift")
        model.graph.initializer.append(numpy_helper.from_array(z.reshape(z_shape).astype(np.float32), z_name))
        out = scope.fresh(f"{target.tensor}_shifted")
        before.append((target.quantize, helper.make_node("Sub", [target.tensor, z_name], [out],
                                                         name=scope.fresh(f"{target.tensor}_shift"))))
        target.quantize.input[0] = out
        graph.replaced.add(target.quantize.input[1])
        scale_name = scope.fresh(f"{target.tensor}_shifted_scale")
        model.graph.initializer.append(numpy_helper.from_array(np.array(step, np.float32), scale_name))
        target.quantize.input[1] = scale_name
        target.dequantize.input[1] = scale_name
        for layer in target.layers:
            extra = _compensate(graph, scope, layer, z, shapes.get(target.tensor))
            if extra is not None:
                after.append((layer, extra))
            shifted.layers.append(layer.name)
        done.append(shifted)
    _insert(model, before, after)
    _drop_unread(model, graph.replaced)
    return model, done


def _windows(lo: np.ndarray, hi: np.ndarray, amax: float) -> tuple[np.ndarray, np.ndarray]:
    """Each channel's INT8 window: its calibration range widened to HEADROOM times each extreme (seen from 0),
    within the unshifted range [-amax, amax]. Unseen data reach beyond the calibration extremes; without the
    headroom the narrow side of a channel would clip there (EfficientNet-Lite0: 17.47 -> 14.29 dB held out)."""
    low = np.maximum(np.minimum(lo, HEADROOM * lo), -amax)
    high = np.minimum(np.maximum(hi, HEADROOM * hi), amax)
    return low, np.maximum(high, low)


def _compensate(graph: _Graph, scope: NameScope, layer: onnx.NodeProto, z: np.ndarray,
                shape: tuple[int, ...] | None) -> onnx.NodeProto | None:
    """Add W_q z to `layer`'s bias (or, for a padded Conv, a constant map after it); returns a node to insert after."""
    w = graph.dequantized_weight(layer.input[1])
    assert w is not None  # shift_targets checked it
    if layer.op_type == "Conv":
        if _padded(layer):
            assert shape is not None and len(shape) == 4
            return _add_after(graph, scope, layer, _conv_of_constant(layer, w, z, shape))
        comp = _taps(layer, w, z).sum(axis=(1, 2))
        _add_bias(graph, scope, layer, 2, comp, len(layer.input) > 2 and bool(layer.input[2]))
        return None
    if layer.op_type == "Gemm":
        comp = (w @ z if _attr(layer, "transB", 0) else z @ w) / float(_attr(layer, "beta", 1.0))
        _add_bias(graph, scope, layer, 2, comp, len(layer.input) > 2 and bool(layer.input[2]))
        return None
    comp = z @ w  # MatMul [.., C] x [C, N]
    add = _bias_add(graph, layer)
    if add is not None:
        node, index = add
        _replace_constant(graph, scope, node, index, comp)
        return None
    return _add_after(graph, scope, layer, comp)


def _add_after(graph: _Graph, scope: NameScope, layer: onnx.NodeProto, value: np.ndarray) -> onnx.NodeProto:
    """An Add of the constant `value` to `layer`'s output, under the output's name (the layer's output is renamed)."""
    name = scope.fresh(f"{layer.name}_shift_compensation")
    graph.model.graph.initializer.append(numpy_helper.from_array(value.astype(np.float32), name))
    raw = scope.fresh(f"{layer.output[0]}_unshifted")
    node = helper.make_node("Add", [raw, name], [layer.output[0]], name=scope.fresh(f"{layer.name}_shift_add"))
    layer.output[0] = raw
    return node


def _taps(layer: onnx.NodeProto, w: np.ndarray, z: np.ndarray) -> np.ndarray:
    """v[o, kh, kw] = sum over the input channels c of output o's group of w[o, c, kh, kw] z[c]."""
    out_channels, group_channels = w.shape[:2]
    groups = int(_attr(layer, "group", 1))
    z_of_output = z.reshape(groups, group_channels)[np.arange(out_channels) // (out_channels // groups)]
    taps: np.ndarray = np.einsum("ocij,oc->oij", w, z_of_output)
    return taps


def _conv_of_constant(layer: onnx.NodeProto, w: np.ndarray, z: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Conv(z broadcast over the input's spatial shape) with `layer`'s attributes and no bias: [1, C_out, H', W'].

    Every output position sums the taps that fall inside the input (the others read the zero
    padding), so the map is v[o, kh, kw] = sum_c w[o, c, kh, kw] z[c] summed over the in-bounds taps.
    """
    kh, kw = w.shape[2:]
    strides = list(_attr(layer, "strides", [1, 1]))
    dilations = list(_attr(layer, "dilations", [1, 1]))
    pads = list(_attr(layer, "pads", [0, 0, 0, 0]))
    v = _taps(layer, w, z)

    def inside(size: int, kernel: int, stride: int, dilation: int, begin: int, end: int) -> np.ndarray:
        out = (size + begin + end - dilation * (kernel - 1) - 1) // stride + 1
        rows = np.arange(out)[:, None] * stride - begin + np.arange(kernel)[None, :] * dilation
        return ((rows >= 0) & (rows < size)).astype(np.float64)  # [out, kernel]

    rows = inside(shape[2], kh, strides[0], dilations[0], pads[0], pads[2])
    cols = inside(shape[3], kw, strides[1], dilations[1], pads[1], pads[3])
    border_map: np.ndarray = np.einsum("oij,hi,wj->ohw", v, rows, cols)[None]
    return border_map


def _bias_add(graph: _Graph, layer: onnx.NodeProto) -> tuple[onnx.NodeProto, int] | None:
    """The Add right after a MatMul whose other operand is a constant [N] used by it alone (the Linear bias)."""
    readers = graph.consumers(layer.output[0])
    if len(readers) != 1 or readers[0].op_type != "Add":
        return None
    add = readers[0]
    other = 1 if add.input[0] == layer.output[0] else 0
    value = graph.value(add.input[other])
    if value is None or value.ndim != 1 or len(graph.consumers(add.input[other])) != 1:
        return None
    return add, other


def _add_bias(graph: _Graph, scope: NameScope, layer: onnx.NodeProto, index: int, comp: np.ndarray, has: bool) -> None:
    if has:
        _replace_constant(graph, scope, layer, index, comp)
        return
    name = scope.fresh(f"{layer.name}_shift_bias")
    graph.model.graph.initializer.append(numpy_helper.from_array(comp.astype(np.float32), name))
    while len(layer.input) < index:
        layer.input.append("")
    layer.input.append(name)


def _replace_constant(graph: _Graph, scope: NameScope, node: onnx.NodeProto, index: int, comp: np.ndarray) -> None:
    """node.input[index] := a new initializer holding its value + comp (the old one may be shared)."""
    value = graph.value(node.input[index])
    assert value is not None
    graph.replaced.add(node.input[index])
    name = scope.fresh(f"{node.input[index]}_shifted")
    total = (value.astype(np.float64) + comp).astype(np.float32)
    graph.model.graph.initializer.append(numpy_helper.from_array(total, name))
    node.input[index] = name


def _drop_unread(model: onnx.ModelProto, names: set[str]) -> None:
    """Remove the initializers in `names` that no node reads any more (ONNX Runtime warns about each)."""
    read = {t for n in model.graph.node for t in n.input} | {i.name for i in model.graph.input}
    unread = [i for i, t in enumerate(model.graph.initializer) if t.name in names and t.name not in read]
    for i in reversed(unread):
        del model.graph.initializer[i]


def _insert(model: onnx.ModelProto, before: list[tuple[onnx.NodeProto, onnx.NodeProto]],
            after: list[tuple[onnx.NodeProto, onnx.NodeProto]]) -> None:
    """Put each new node right before / after its anchor (topological order kept)."""
    pre: dict[str, list[onnx.NodeProto]] = {}
    post: dict[str, list[onnx.NodeProto]] = {}
    for anchor, node in before:
        pre.setdefault(anchor.output[0], []).append(node)
    for anchor, node in after:
        post.setdefault(anchor.output[0], []).append(node)
    order: list[onnx.NodeProto] = []
    for node in model.graph.node:
        order.extend(pre.get(node.output[0], []))
        order.append(node)
        order.extend(post.get(node.output[0], []))
    copies = [onnx.NodeProto() for _ in order]
    for copy, node in zip(copies, order, strict=True):
        copy.CopyFrom(node)
    del model.graph.node[:]
    model.graph.node.extend(copies)
