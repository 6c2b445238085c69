"""Cross-layer equalization: rescale Conv -> (Relu | identity | Clip(0, M)) -> Conv chains, exactly.

Per-channel INT8 weights lose the most where one output channel of a layer has a range far
larger or smaller than its neighbours: the next layer's per-tensor input scale is set by
the widest channel, and a channel with a tiny weight range is quantized coarsely relative to
its own values (depthwise convolutions especially). For a chain y = W2 f(W1 x + b1) + b2
with f positively homogeneous (f(x / s) = f(x) / s for s > 0), channel i of W1 and b1 can
be divided by s_i and input channel i of W2 multiplied by s_i without changing y (Nagel et al.
2019, "Data-Free Quantization Through Weight Equalization and Bias Correction", section 4.1).
s_i = sqrt(r1_i / r2_i) (r1_i = max|W1[i]|, r2_i = max|W2[:, i]|) makes both ranges
sqrt(r1_i r2_i); the pass repeats over all pairs until the scales settle (their Algorithm).

Clip(0, M) (ReLU6) is not homogeneous; it becomes Relu then Min with the per-channel bound
M / s_i, which is exact. Other activations (HardSwish, Sigmoid, ...) end a chain.

High-bias absorption (section 4.1.1 there) moves c_i = max(0, b1_i - 3 sigma_i) of a ReLU
layer's bias into the next layer's bias when the next layer is a 1x1 Conv without padding
(exact where the pre-activation stays >= c_i). Without BatchNormalization statistics in an
inference graph, sigma_i is unknown, so trtq absorbs only with activation statistics given
by the caller (`absorb_high_bias`); equalize() alone is exact in FP32.

    equalized, report = equalize(model)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from trtq.onnx_model.large_models import drop_initializers
from trtq.qdq.graph import GraphIndex, NameScope
from trtq.qdq.insert import names_read

ACTIVATIONS = ("Relu", "Clip", "Identity")
ROUNDS = 20
TOLERANCE = 1e-4
DEAD = 1e-6  # channel range below this fraction of the layer's largest: left alone
MAX_SCALE = 1e3  # largest per-round rescaling of a channel


@dataclass(frozen=True)
class Pair:
    """One equalized chain: first conv, activation nodes between, second conv."""

    first: str
    second: str
    activation: str
    channels: int
    range_ratio_before: float  # largest / smallest channel range of W1
    range_ratio_after: float


@dataclass(frozen=True)
class EqualizationReport:
    pairs: tuple[Pair, ...] = ()
    skipped: tuple[tuple[str, str], ...] = ()
    rounds: int = 0

    def summary(self) -> str:
        return (f"cross-layer equalization: {len(self.pairs)} conv pairs equalized in {self.rounds} rounds, "
                f"{len(self.skipped)} candidate pairs skipped")

    def to_dict(self) -> dict[str, Any]:
        return {"method": "cle", "pairs": [dict(p.__dict__) for p in self.pairs],
                "skipped": [list(s) for s in self.skipped], "rounds": self.rounds}


@dataclass
class _Weights:
    """The float64 weight and bias of one conv, shared by the chains it is part of."""

    w: np.ndarray
    b: np.ndarray | None


@dataclass
class Chain:
    """Conv -> (activation) -> Conv; `scale` is the product of the rescalings applied so far."""

    first: onnx.NodeProto
    acts: list[onnx.NodeProto]
    second: onnx.NodeProto
    one: _Weights
    two: _Weights
    clip_max: float | None = None
    scale: np.ndarray = field(default_factory=lambda: np.ones(0))

    @property
    def w1(self) -> np.ndarray:
        return self.one.w

    @property
    def group(self) -> int:
        """The second conv's group count."""
        return int(_attr(self.second, "group", 1))

    @property
    def activation(self) -> str:
        return "+".join(a.op_type for a in self.acts) or "identity"


def _attr(node: onnx.NodeProto, name: str, default: Any) -> Any:
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def equalize(model: onnx.ModelProto) -> tuple[onnx.ModelProto, EqualizationReport]:
    """A copy of `model` with every eligible Conv pair equalized (module docstring)."""
    work = onnx.ModelProto()
    work.CopyFrom(model)
    index = GraphIndex.build(work, infer=False)
    chains, skipped = find_chains(index)
    rounds = 0
    before = [_spread(c.w1) for c in chains]
    for rounds in range(1, ROUNDS + 1):  # noqa: B007
        change = 0.0
        for c in chains:
            s = _pair_scale(c.one.w, c.two.w, c.group)
            scale_chain(c, s)
            change = max(change, float(np.abs(np.log(s)).max()) if s.size else 0.0)
        if change < TOLERANCE:
            break
    write_chains(work, chains)
    pairs = tuple(Pair(c.first.name, c.second.name, c.activation, int(c.w1.shape[0]), spread, _spread(c.w1))
                  for c, spread in zip(chains, before, strict=True))
    return work, EqualizationReport(pairs, tuple(skipped), rounds if chains else 0)


def write_chains(work: onnx.ModelProto, chains: list[Chain]) -> None:
    """Put the rescaled weights and clip bounds of `chains` into `work` (in place)."""
    names = NameScope(work)
    _write_weights(work, chains, names)
    for c in chains:
        _write_bound(work, c, names)
    drop_unread(work)


def _spread(w: np.ndarray) -> float:
    r = np.abs(w.reshape(w.shape[0], -1)).max(1)
    r = r[r > 0]
    return float(r.max() / r.min()) if r.size else 1.0


def find_chains(index: GraphIndex) -> tuple[list[Chain], list[tuple[str, str]]]:
    chains, skipped = [], []
    firsts: set[str] = set()
    weights: dict[str, _Weights] = {}
    seconds: set[str] = set()  # a conv may end one pair and start the next (the rounds then settle both)
    for node in index.model.graph.node:
        if node.op_type != "Conv" or node.output[0] in firsts:
            continue
        found = _chain_from(index, node, weights)
        if isinstance(found, str):
            if found:
                skipped.append((node.name, found))
            continue
        if found.second.output[0] in seconds:
            continue
        firsts.add(found.first.output[0])
        seconds.add(found.second.output[0])
        chains.append(found)
    return chains, skipped


def _only_consumer(index: GraphIndex, tensor: str) -> onnx.NodeProto | None:
    users = index.consumer_nodes(tensor)
    if len(users) != 1 or tensor in index.graph_outputs:
        return None
    return users[0]


def _chain_from(index: GraphIndex, first: onnx.NodeProto, weights: dict[str, _Weights]) -> Chain | str:
    """The chain starting at `first`, or why not ("" when there is simply no second conv)."""
    acts: list[onnx.NodeProto] = []
    tensor = first.output[0]
    node = _only_consumer(index, tensor)
    clip_max = None
    while node is not None and node.op_type in ACTIVATIONS and len(acts) < 1:
        if node.op_type == "Clip":
            bounds = _clip_bounds(index, node)
            if bounds is None or bounds[0] != 0.0 or not math.isfinite(bounds[1]):
                return ""
            clip_max = bounds[1]
        acts.append(node)
        tensor = node.output[0]
        node = _only_consumer(index, tensor)
    if node is None or node.op_type != "Conv" or node.input[0] != tensor:
        return ""
    w1 = index.constant_value(first.input[1])
    w2 = index.constant_value(node.input[1])
    b1 = index.constant_value(first.input[2]) if len(first.input) > 2 and first.input[2] else None
    b2 = index.constant_value(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    if w1 is None or w2 is None or (len(first.input) > 2 and first.input[2] and b1 is None) or (
            len(node.input) > 2 and node.input[2] and b2 is None):
        return "a weight or bias is not a constant"
    if w1.dtype != np.float32 or w2.dtype != np.float32:
        return "weights are not float32"
    if w1.shape[0] != w2.shape[1] * int(_attr(node, "group", 1)):
        return "channel counts do not match"
    shared = [t for t in (*first.input[1:], *node.input[1:]) if t and len(index.consumers.get(t, [])) > 1]
    if shared:
        return f"weight {shared[0]} is shared with other nodes"
    one = weights.setdefault(first.output[0], _Weights(w1.astype(np.float64), _bias(index, first)))
    two = weights.setdefault(node.output[0], _Weights(w2.astype(np.float64), _bias(index, node)))
    return Chain(first, acts, node, one, two, clip_max, np.ones(w1.shape[0]))


def _bias(index: GraphIndex, node: onnx.NodeProto) -> np.ndarray | None:
    value = index.constant_value(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    return None if value is None else value.astype(np.float64)


def _clip_bounds(index: GraphIndex, node: onnx.NodeProto) -> tuple[float, float] | None:
    if len(node.input) == 1 and not any(a.name in ("min", "max") for a in node.attribute):
        return None
    low = float(_attr(node, "min", -math.inf))
    high = float(_attr(node, "max", math.inf))
    for pos in (1, 2):
        if len(node.input) > pos and node.input[pos]:
            value = index.constant_value(node.input[pos])
            if value is None:
                return None
            if pos == 1:
                low = float(value)
            else:
                high = float(value)
    return low, high


def input_ranges(w2: np.ndarray, group: int) -> np.ndarray:
    """max|W2| per input channel of the second conv (its channel i is column i % (C/g) of group i // (C/g))."""
    o, cg = w2.shape[:2]
    per: np.ndarray = np.abs(w2.reshape(group, o // group, cg, -1)).max(axis=(1, 3))  # (group, cg)
    return per.reshape(-1)


def _pair_scale(w1: np.ndarray, w2: np.ndarray, group: int) -> np.ndarray:
    r1 = np.abs(w1.reshape(w1.shape[0], -1)).max(1)
    r2 = input_ranges(w2, group)
    # dead channels (ranges ~0, e.g. 1e-35 in PP-OCRv4) keep s = 1: dividing their bias by a tiny s
    # would blow up the activation range the next layer's input scale must cover
    ok = (r1 > DEAD * r1.max()) & (r2 > DEAD * r2.max())
    s = np.where(ok, np.sqrt(np.where(ok, r1, 1) / np.where(ok, r2, 1)), 1.0)
    return np.clip(s, 1 / MAX_SCALE, MAX_SCALE)


def scale_chain(c: Chain, s: np.ndarray) -> None:
    """Divide channel i of W1, b1 by s_i and multiply input channel i of W2 by s_i."""
    c.one.w = c.one.w / s.reshape(-1, *([1] * (c.one.w.ndim - 1)))
    if c.one.b is not None:
        c.one.b = c.one.b / s
    group = int(_attr(c.second, "group", 1))
    o, cg = c.two.w.shape[:2]
    grid = c.two.w.reshape(group, o // group, cg, -1) * s.reshape(group, 1, cg, 1)
    c.two.w = grid.reshape(c.two.w.shape)
    c.scale = c.scale * s


def _write_weights(model: onnx.ModelProto, chains: list[Chain], names: NameScope) -> None:
    """New initializers for every changed weight and bias (each conv once)."""
    nodes = {c.first.output[0]: (c.first, c.one) for c in chains} | {c.second.output[0]: (c.second, c.two)
                                                                     for c in chains}
    for node, weights in nodes.values():
        for pos, value in ((1, weights.w), (2, weights.b)):
            if value is None:
                continue
            tensor = numpy_helper.from_array(value.astype(np.float32), names.fresh(f"{node.input[pos]}_equalized"))
            model.graph.initializer.append(tensor)
            node.input[pos] = tensor.name


def _write_bound(model: onnx.ModelProto, c: Chain, names: NameScope) -> None:
    """Clip(0, M) -> Relu, Min(M / s) (module docstring)."""
    graph = model.graph
    if c.clip_max is not None:
        clip = c.acts[0]
        bound = numpy_helper.from_array((c.clip_max / c.scale).astype(np.float32).reshape(-1, *[1] * (c.w1.ndim - 2)),
                                        names.fresh(f"{clip.name}_bound"))
        graph.initializer.append(bound)
        relu_out = names.fresh(f"{clip.output[0]}_relu")
        relu = helper.make_node("Relu", [clip.input[0]], [relu_out], name=names.fresh(f"{clip.name}_relu"))
        minimum = helper.make_node("Min", [relu_out, bound.name], [clip.output[0]], name=clip.name)
        nodes = []
        for node in graph.node:
            nodes.extend([relu, minimum] if node.output[0] == clip.output[0] else [node])
        del graph.node[:]
        graph.node.extend(nodes)


def drop_unread(model: onnx.ModelProto) -> None:
    """Remove initializers and Constant nodes that nothing reads any more (replaced weights)."""
    graph = model.graph
    read = names_read(graph) | {o.name for o in graph.output}
    nodes = [n for n in graph.node if not (n.op_type == "Constant" and n.output[0] not in read)]
    del graph.node[:]
    graph.node.extend(nodes)
    listed = {i.name for i in graph.input}
    drop_initializers(graph, {t.name for t in graph.initializer} - read - listed)
