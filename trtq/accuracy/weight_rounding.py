"""Learned weight rounding: choose the INT8 weight integers of a Q/DQ model from calibration data.

Nearest rounding makes each weight's own error smallest, not the layer's output error: the
errors of weights that multiply correlated inputs add up. This pass keeps every weight's
per-channel symmetric scale (max|w| / 127, or the MSE-clipped range) and re-chooses its
integers to minimise the layer's output reconstruction error on calibration inputs
(trtq.qdq.rounding_solvers: GPTQ, closed form, by default; AdaRound on request).

Objective ("asymmetric", AdaRound section 4.2): the quantized layer reads its inputs X~ from
the Q/DQ model with the earlier layers already rounded, and should reproduce the FP32 layer's
output on the FP32 inputs X: min over Q of ||X W^T - X~ (s Q)^T||^2. With the second moments
H~ = X~^T X~, M = X~^T X and H = X^T X (per group, from trtq.qdq.layer_rows) this is
v H~ v^T - 2 v M w^T + w H w^T per output row v = s q, w: minimised by rounding the
least-squares weight W* = W M^T H~^-1 on the grid. Target "self" uses X~ for both (M = H~,
W* = W: the error the rounding itself adds).

Layer by layer in topological order: layers are grouped by level (quantized weighted layers on
the longest path to them, as in trtq.accuracy.bias_correction); a level's layers cannot feed each
other, so one pass over the data collects the moments of a whole level, and its rounded
weights are in place before the next level is measured. Memory: only the K x K moments of the
current level and one batch of its inputs; at most `rows_per_sample` random output positions
of each sample enter the moments.

The rounded integers go into the model: the float weight read by the weight's
QuantizeLinear is replaced by s * Q (which that Q maps back to exactly Q), or the INT8
initializer of a pre-quantized weight by Q. INT8 only (FP8 weights are left as they are).

    model, report = round_weights(fp32_model, qdq_model, calib_batches)
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from trtq.accuracy.evaluation import Batches, batch_samples, limit_samples, run_batches
from trtq.accuracy.input_ranges import InputScale, RangeChoice, choose_scale, fake_quant, input_scale, write_scale
from trtq.accuracy.metrics import json_float
from trtq.accuracy.probe import float_sources
from trtq.errors import ConfigError, DataError
from trtq.qdq.equalization import drop_unread
from trtq.qdq.graph import GraphIndex, NameScope
from trtq.qdq.layer_rows import SUPPORTED_OPS, LayerShape, layer_shape
from trtq.qdq.rounding_solvers import adaround, anchored_weight, gptq_round, nearest, target_errors

log = logging.getLogger(__name__)

METHODS = ("gptq", "adaround", "nearest")  # nearest: integers kept (with `ranges`, only the ranges change)
TARGETS = ("fp32", "self")
DEFAULT_SAMPLES = 32
DEFAULT_ROWS_PER_SAMPLE = 256


@dataclass(frozen=True)
class LayerRounding:
    """What rounding did to one layer.

    Attributes:
        node, op_type: the layer.
        level: the pass that rounded it.
        weights: number of weights; changed: how many differ from nearest rounding.
        rows: input rows the moments were summed over.
        sqnr_nearest, sqnr_learned: the layer's output SQNR (dB) on those rows, against the
            target (FP32 layer on FP32 inputs, or the float weight on the same inputs).
    """

    node: str
    op_type: str
    level: int
    weights: int
    changed: int
    rows: int
    sqnr_nearest: float
    sqnr_learned: float

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["sqnr_nearest"], d["sqnr_learned"] = json_float(self.sqnr_nearest), json_float(self.sqnr_learned)
        return d


@dataclass(frozen=True)
class WeightRoundingReport:
    """What learned rounding did (layers in graph order)."""

    method: str
    target: str
    layers: tuple[LayerRounding, ...] = ()
    skipped: tuple[tuple[str, str], ...] = ()
    ranges: tuple[RangeChoice, ...] = ()
    passes: int = 0
    samples: int = 0
    seconds: float = 0.0

    def summary(self) -> str:
        gain = [r.sqnr_learned - r.sqnr_nearest for r in self.layers
                if math.isfinite(r.sqnr_learned) and math.isfinite(r.sqnr_nearest)]
        mean = f", layer output SQNR +{np.mean(gain):.2f} dB on average" if gain else ""
        rechosen = f"{sum(r.amax_after != r.amax_before for r in self.ranges)} of {len(self.ranges)} input ranges " \
            "re-chosen"
        if self.method == "nearest":
            return f"activation ranges by layer output error: {rechosen} in {self.passes} passes over " \
                   f"{self.samples} samples, {self.seconds:.1f} s"
        ranges = f", {rechosen}" if self.ranges else ""
        return (f"weight rounding ({self.method}, target {self.target}): {len(self.layers)} layers in {self.passes} "
                f"passes over {self.samples} samples{mean}{ranges}, {len(self.skipped)} skipped, "
                f"{self.seconds:.1f} s")

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "target": self.target, "layers": [r.to_dict() for r in self.layers],
                "skipped": [list(s) for s in self.skipped], "ranges": [r.to_dict() for r in self.ranges],
                "passes": self.passes, "samples": self.samples,
                "seconds": round(self.seconds, 3)}


@dataclass
class _Target:
    """A quantized weighted layer and where its weight lives."""

    index: int
    node: onnx.NodeProto
    shape: LayerShape
    weight: np.ndarray  # float weight (qdq) or dequantized integers (int8)
    scale: np.ndarray  # per matrix row (G, O)
    dq: onnx.NodeProto
    quantize: onnx.NodeProto | None  # the weight's Q (None for pre-quantized INT8 weights)
    level: int = 0


@dataclass
class _Moments:
    """Sums over input rows: H~ = X~^T X~, M = X~^T X, H = X^T X (per group) and the row count."""

    quantized: np.ndarray | None = None
    cross: np.ndarray | None = None
    fp32: np.ndarray | None = None
    rows: int = 0

    def update(self, xq: np.ndarray, xf: np.ndarray | None) -> None:
        tq = np.swapaxes(xq, 1, 2)
        hq = np.matmul(tq, xq).astype(np.float64)  # float32 BLAS per batch, float64 across batches
        self.quantized = hq if self.quantized is None else self.quantized + hq
        if xf is not None:
            m = np.matmul(tq, xf).astype(np.float64)
            hf = np.matmul(np.swapaxes(xf, 1, 2), xf).astype(np.float64)
            self.cross = m if self.cross is None else self.cross + m
            self.fp32 = hf if self.fp32 is None else self.fp32 + hf
        self.rows += xq.shape[1]


@dataclass
class _Options:
    method: str
    target: str
    rows_per_sample: int
    seed: int
    adaround_iterations: int = 1000
    ranges: bool = False
    skipped: list[tuple[str, str]] = field(default_factory=list)
    chosen: list[RangeChoice] = field(default_factory=list)


def round_weights(fp32_model: onnx.ModelProto | None, qdq_model: onnx.ModelProto, batches: Batches, *,
                  method: str = "gptq", target: str = "fp32", max_samples: int | None = DEFAULT_SAMPLES,
                  rows_per_sample: int = DEFAULT_ROWS_PER_SAMPLE, seed: int = 0,
                  layers: Collection[str] | None = None, ranges: bool = False
                  ) -> tuple[onnx.ModelProto, WeightRoundingReport]:
    """Re-round the INT8 weights of `qdq_model`'s quantized layers (module docstring).

    Args:
        fp32_model: the FP32 model `qdq_model` was made from (same tensor names); needed for target "fp32".
        qdq_model: the Q/DQ model (left unchanged).
        batches: calibration feed dicts.
        method: "gptq", "adaround", or "nearest" (integers kept: with `ranges`, only the ranges change).
        target: "fp32" (asymmetric: match the FP32 layer on FP32 inputs) or "self".
        max_samples: samples per pass (None: all).
        rows_per_sample: random output positions per sample entering the moments.
        seed: seed of the position sampling (the result is deterministic for given inputs).
        layers: names of the layers to re-round (default: every quantized weighted layer).
        ranges: first re-choose, level by level, the per-tensor input scales of these layers by
            their output error against the FP32 layer (trtq.accuracy.input_ranges; needs `fp32_model`).

    Returns:
        The re-rounded copy and the report.

    Raises:
        ConfigError: unknown method or target, or target "fp32" without the FP32 model.
        DataError: there is no data, or a batch does not fit the model.
    """
    if method not in METHODS:
        raise ConfigError(f"weight rounding method {method!r} is not supported", hint=f"use {' or '.join(METHODS)}")
    if target not in TARGETS or ((target == "fp32" or ranges) and fp32_model is None):
        raise ConfigError(f"weight rounding target {target!r} is not supported here",
                          hint="use fp32 (with the FP32 model) or self")
    start = time.perf_counter()
    batches = limit_samples(batches, max_samples)
    work = onnx.ModelProto()
    work.CopyFrom(qdq_model)
    options = _Options(method, target, rows_per_sample, seed, ranges=ranges)
    targets = [t for t in _targets(work, options) if layers is None or t.node.name in layers]
    names = NameScope(work)
    done: list[tuple[int, LayerRounding]] = []
    levels = sorted({t.level for t in targets})
    samples = 0
    for level in levels:
        group = [t for t in targets if t.level == level]
        if options.ranges:
            assert fp32_model is not None  # checked above
            moments, samples = _collect_with_ranges(work, fp32_model, group, batches, options)
        else:
            moments, samples = _collect(work, fp32_model if target == "fp32" else None, group, batches, options)
        for t in group:
            if method != "nearest":
                done.append((t.index, _round_layer(work, t, moments[t.index], options, names)))
        log.debug("weight rounding: level %d, %d layers", level, len(group))
    drop_unread(work)
    rounded = tuple(r for _, r in sorted(done, key=lambda item: item[0]))
    report = WeightRoundingReport(method, target, rounded, tuple(options.skipped), tuple(options.chosen),
                                  passes=len(levels),
                                  samples=samples, seconds=time.perf_counter() - start)
    return work, report


def _targets(model: onnx.ModelProto, options: _Options) -> list[_Target]:
    """Weighted layers reading an INT8 per-channel/per-tensor weight DQ, with their levels."""
    index = GraphIndex.build(model, infer=False)
    depth: dict[str, int] = {}
    targets = []
    for i, node in enumerate(model.graph.node):
        din = max((depth.get(t, 0) for t in node.input if t), default=0)
        found = _target(index, i, node, options) if node.op_type in SUPPORTED_OPS else None
        if found is not None:
            found.level = din
            targets.append(found)
        for o in node.output:
            depth[o] = din + 1 if found is not None else din
    return targets


def _target(index: GraphIndex, i: int, node: onnx.NodeProto, options: _Options) -> _Target | None:
    dq = index.producer_node(node.input[1]) if len(node.input) > 1 else None
    if dq is None or dq.op_type != "DequantizeLinear":
        return None
    scale = index.constant_value(dq.input[1])
    quantize = index.producer_node(dq.input[0])
    if quantize is not None and quantize.op_type != "QuantizeLinear":
        return None
    source = quantize.input[0] if quantize is not None else dq.input[0]
    value = index.constant_value(source)
    if value is None or scale is None:
        return _skip(options, node, "its weight or scale is not a constant")
    zero = index.constant_value(dq.input[2]) if len(dq.input) > 2 and dq.input[2] else None
    symmetric_int8 = zero is None or (zero.dtype == np.int8 and not np.any(zero != 0))
    if not symmetric_int8 or (quantize is None and value.dtype != np.int8):
        return _skip(options, node, "only symmetric INT8 weights are re-rounded")
    shape = layer_shape(node, tuple(value.shape))
    if isinstance(shape, str):
        return _skip(options, node, shape)
    axis = next((int(a.i) for a in dq.attribute if a.name == "axis"), 1) if np.ndim(scale) == 1 else None
    if axis is not None and axis != {"Conv": 0, "ConvTranspose": 1, "MatMul": 1}.get(
            node.op_type, 0 if shape.trans_b else 1):
        return _skip(options, node, f"its weight scale runs along axis {axis}, not the output channels")
    rows_scale = np.asarray(scale, np.float64).reshape(-1)[shape.channel_index(axis)]
    weight = value.astype(np.float64) * (1 if quantize is not None else _broadcast(scale, axis, value.ndim))
    return _Target(i, node, shape, weight, rows_scale, dq, quantize)


def _broadcast(scale: np.ndarray, axis: int | None, ndim: int) -> np.ndarray:
    if axis is None:
        return np.asarray(scale, np.float64)
    shape = [1] * ndim
    shape[axis] = -1
    return np.asarray(scale, np.float64).reshape(shape)


def _skip(options: _Options, node: onnx.NodeProto, reason: str) -> _Target | None:
    """Record why `node` is not re-rounded; None, for `return _skip(...)` in _target."""
    options.skipped.append((node.name, reason))
    return None


def _collect(work: onnx.ModelProto, fp32_model: onnx.ModelProto | None, group: list[_Target], batches: Batches,
             options: _Options) -> tuple[dict[int, _Moments], int]:
    """One pass: the moments of every layer of `group` (inputs from the partly rounded `work`)."""
    inputs = [t.node.input[0] for t in group]
    float_of = float_sources(work)
    sources = [float_of.get(name, name) for name in inputs]
    moments = {t.index: _Moments() for t in group}
    rngs = {t.index: np.random.default_rng([options.seed, t.index]) for t in group}
    fp32_runs = run_batches(_prune(fp32_model, sources), batches, sorted(set(sources))) if fp32_model else None
    samples = 0
    for feed, values in run_batches(_prune(work, inputs), batches, sorted(set(inputs))):
        reference = next(fp32_runs)[1] if fp32_runs is not None else None
        n = batch_samples(feed)
        samples += n
        for t, name, source in zip(group, inputs, sources, strict=True):
            moments[t.index].update(*_paired_rows(t, values[name], reference[source] if reference is not None else None,
                                                  options.rows_per_sample * n, rngs[t.index]))
    _check_samples(samples)
    return moments, samples


def _paired_rows(t: _Target, x: np.ndarray, reference: np.ndarray | None, count: int, rng: np.random.Generator
                 ) -> tuple[np.ndarray, np.ndarray | None]:
    """`count` random rows of the layer input `x` and the rows at the same positions of `reference`."""
    state = rng.bit_generator.state
    rows = t.shape.rows(x, count, rng)
    if reference is None:
        return rows, None
    rng.bit_generator.state = state  # the same positions in the FP32 input
    return rows, t.shape.rows(reference, count, rng)


def _check_samples(samples: int) -> None:
    if samples == 0:
        raise DataError("there is no calibration data for weight rounding: the batches were empty",
                        hint="check the data path")


def _collect_with_ranges(work: onnx.ModelProto, fp32_model: onnx.ModelProto, group: list[_Target],
                         batches: Batches, options: _Options) -> tuple[dict[int, _Moments], int]:
    """One pass that keeps the sampled input rows of `group`, re-chooses the refinable input scales
    (trtq.accuracy.input_ranges) and then sums the moments of the inputs quantized with them."""
    index = GraphIndex.build(work, infer=False)
    weighted = frozenset(t.node.name for t in group)
    scales: list[InputScale | None] = [input_scale(index, t.node.input[0], weighted) for t in group]
    # the float tensor an INT8 per-tensor Q reads (quantized here, in numpy), else what the layer reads
    sources = [found.tensor if found is not None else t.node.input[0] for t, found in zip(group, scales, strict=True)]
    float_of = float_sources(work)
    references = [float_of.get(t.node.input[0], t.node.input[0]) for t in group]
    rows: dict[int, tuple[list[np.ndarray], list[np.ndarray]]] = {t.index: ([], []) for t in group}
    rngs = {t.index: np.random.default_rng([options.seed, t.index]) for t in group}
    names, fp32_names = sorted(set(sources)), sorted(set(references))
    fp32_runs = run_batches(_prune(fp32_model, fp32_names), batches, fp32_names)
    samples = 0
    for feed, values in run_batches(_prune(work, names), batches, names):
        reference = next(fp32_runs)[1]
        n = batch_samples(feed)
        samples += n
        for t, source, fp32_source in zip(group, sources, references, strict=True):
            xs, xf = _paired_rows(t, values[source], reference[fp32_source], options.rows_per_sample * n,
                                  rngs[t.index])
            assert xf is not None  # a reference was given
            rows[t.index][0].append(xs)
            rows[t.index][1].append(xf)
    _check_samples(samples)
    joined = {i: (np.concatenate(a, axis=1), np.concatenate(b, axis=1)) for i, (a, b) in rows.items()}
    chosen: dict[str, float] = {}
    by_tensor: dict[str, list[int]] = {}
    for k, found in enumerate(scales):
        if found is not None and found.refinable:
            by_tensor.setdefault(found.tensor, []).append(k)
    for tensor, members in by_tensor.items():
        found = scales[members[0]]
        assert found is not None
        readers = [(*joined[group[k].index], _nearest_matrix(group[k]), group[k].shape.matrix(group[k].weight))
                   for k in members]
        best, ratio = choose_scale(found.scale, readers)
        if best != found.scale:
            write_scale(work, found, best)
        chosen[tensor] = best
        options.chosen.append(RangeChoice(tensor, tuple(group[k].node.name for k in members), found.scale * 127,
                                          best * 127, ratio))
    if options.method == "nearest":
        return {}, samples  # nothing to round: the moments are not needed
    moments = {t.index: _Moments() for t in group}
    for t, found in zip(group, scales, strict=True):
        xs, xf = joined[t.index]
        if found is not None:  # the refinable and fixed per-tensor scales, as the model now has them
            xs = fake_quant(xs, chosen.get(found.tensor, found.scale))
        moments[t.index].update(xs, xf if options.target == "fp32" else None)
    return moments, samples


def _nearest_matrix(t: _Target) -> np.ndarray:
    """The layer's weight (G, O, K) as its Q/DQ pair gives it before rounding: nearest integers times the scale."""
    matrix: np.ndarray = nearest(t.shape.matrix(t.weight), np.maximum(t.scale, 1e-30)) * t.scale[..., None]
    return matrix


def _prune(model: onnx.ModelProto, outputs: Sequence[str]) -> onnx.ModelProto:
    from trtq.accuracy.bias_correction import _prune as prune

    return prune(model, outputs)


def _round_layer(work: onnx.ModelProto, t: _Target, m: _Moments, options: _Options,
                 names: NameScope) -> LayerRounding:
    w = t.shape.matrix(t.weight)
    s = np.maximum(t.scale, 1e-30)
    hq = m.quantized if m.quantized is not None else np.zeros((w.shape[0], w.shape[2], w.shape[2]))
    b = np.matmul(w, np.swapaxes(m.cross, 1, 2)) if m.cross is not None else np.matmul(w, hq)
    zeros = w == 0  # pruned weights (trtq prune) stay 0, so a 2:4 or sparse pattern survives the rounding
    if options.method == "adaround":
        q = adaround(w, s, hq, iterations=options.adaround_iterations, b=b if m.cross is not None else None)
    else:
        goal, moments = anchored_weight(b, hq, w) if m.cross is not None else (w, hq)
        q = gptq_round(goal, s, moments, zeros=zeros)
    q = np.where(zeros, 0.0, q)
    base = nearest(w, s)
    learned, plain = target_errors(b, s, q, hq), target_errors(b, s, base, hq)
    q = np.where((learned <= plain)[..., None], q, base)  # never worse than nearest on the objective
    signal = (np.matmul(w, m.fp32 if m.fp32 is not None else hq) * w).sum()
    err_learned, err_plain = np.minimum(learned, plain).sum() + signal, plain.sum() + signal
    _write(work, t, q, names)
    return LayerRounding(t.node.name, t.node.op_type, t.level, int(q.size), int(np.count_nonzero(q != base)),
                         m.rows, _db(signal, err_plain), _db(signal, err_learned))


def _db(signal: float, noise: float) -> float:
    noise = max(float(noise), 0.0)
    if noise == 0:
        return math.inf
    return 10 * math.log10(max(float(signal), 1e-300) / noise)


def _write(work: onnx.ModelProto, t: _Target, q: np.ndarray, names: NameScope) -> None:
    """Put the integers `q` (G, O, K) into the model (module docstring)."""
    ints = t.shape.weight(q)
    if t.quantize is None:
        tensor = numpy_helper.from_array(ints.astype(np.int8), names.fresh(f"{t.dq.input[0]}_rounded"))
        work.graph.initializer.append(tensor)
        t.dq.input[0] = tensor.name
        return
    values = t.shape.weight(q * t.scale[..., None]).astype(np.float32)
    tensor = numpy_helper.from_array(values, names.fresh(f"{t.quantize.input[0]}_rounded"))
    work.graph.initializer.append(tensor)
    t.quantize.input[0] = tensor.name
