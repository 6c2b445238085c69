"""Bias correction: shift the biases of quantized Conv/ConvTranspose/Gemm so the Q/DQ model's mean outputs match FP32.

Quantization error is not zero-mean per output channel. Rounding a channel's weights by
dw shifts its output by sum_k dw_k E[x_k], and coarse activation rounding of skewed
(e.g. post-ReLU) inputs has a non-zero mean too; the shift passes through every later
layer. Empirical bias correction (Nagel et al. 2019, "Data-Free Quantization Through
Weight Equalization and Bias Correction", section 4.2; Quark and NNCF, with its
BiasCorrection and FastBiasCorrection, offer it too) measures, per output channel c of
each quantized layer,

    shift_c = mean over samples and positions of (FP32 output - Q/DQ output)

on calibration data and adds it to the layer's bias (creating the bias if the layer has
none). Gemm's bias is scaled by `beta`, so shift / beta is added to C.

Sequential, level by level. A layer's error mean depends on how the layers before it
were corrected, so correcting all layers from one measurement would count the shift of
an early layer again in every layer after it. Layers are therefore grouped by level,
the number of quantized layers on the longest path to them: layers of one level cannot
feed each other, so one pass over the data corrects a whole level exactly as one-by-one
correction would, and the levels are corrected in order. Cost: one FP32 pass plus one
pass per level (for a plain chain of layers, one per layer), each running only the part
of the Q/DQ model the level needs; `max_samples` bounds the data per pass.

Fast (method="fast", in the spirit of NNCF's FastBiasCorrection; its code was not read):
one pass of the probe model
(trtq.accuracy.probe), where every layer sees FP32 activations and a copy of it sees their
Q/DQ versions; shift_c = mean(FP32 output - copy output). Each layer is corrected for the
error it adds itself; shifts passed on from earlier layers are left to those layers'
corrections, which is exact for linear paths and approximate through ReLU and the like.
On a chain of 3 convs with Relus (tests/qdq/test_bias_correction.py), the held-out mean
per-channel output error fell 24x (sequential) and 3.2x (fast) at the calibrated ranges,
3.9x and 1.7x with 4x too coarse activation ranges.

    model, report = correct_biases(fp32_model, qdq_model, calib_batches)
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from trtq.accuracy.evaluation import Batches, Reference, limit_samples, run_batches, worst_sqnr
from trtq.accuracy.metrics import json_float
from trtq.accuracy.probe import probe_model
from trtq.errors import ConfigError, DataError
from trtq.onnx_model.external_data import tensor_values
from trtq.onnx_model.large_models import drop_initializers
from trtq.progress import progress_bar, timed_step
from trtq.qdq.graph import NameScope

log = logging.getLogger(__name__)

CORRECTED_OPS = ("Conv", "ConvTranspose", "Gemm")
MODES = ("none", "always", "auto")
METHODS = ("sequential", "fast")


@dataclass(frozen=True)
class BiasShift:
    """The correction of one layer.

    Attributes:
        node: node name.
        op_type: Conv, ConvTranspose or Gemm.
        level: quantized layers on the longest path before it (the pass that corrected it).
        channels: output channels.
        mean_abs_shift: mean over channels of |shift| added to the bias (output units).
        max_abs_shift: largest |shift|.
        output_rms: RMS of the FP32 output, to judge the shift's size against.
        created: the layer had no bias and got one.
    """

    node: str
    op_type: str
    level: int
    channels: int
    mean_abs_shift: float
    max_abs_shift: float
    output_rms: float
    created: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class BiasCorrectionReport:
    """What bias correction did.

    Attributes:
        layers: corrected layers, in graph order.
        skipped: (node, reason) of quantized Conv/Gemm layers left alone.
        passes: passes over the calibration data (sequential: FP32 + one per level; fast: 1).
        samples: calibration samples per pass.
        method: "sequential" or "fast".
        seconds: wall time.
        applied: whether the corrected model was kept (always True unless mode "auto" rejected it).
        sqnr_before, sqnr_after: worst output SQNR (dB) on the held-out data without and with the
            correction (mode "auto" only).
    """

    layers: tuple[BiasShift, ...]
    skipped: tuple[tuple[str, str], ...] = ()
    passes: int = 0
    samples: int = 0
    seconds: float = 0.0
    applied: bool = True
    sqnr_before: float | None = None
    sqnr_after: float | None = None
    method: str = "sequential"

    def summary(self) -> str:
        line = (f"bias correction ({self.method}): {len(self.layers)} layers corrected in {self.passes} passes over "
                f"{self.samples} samples, {len(self.skipped)} skipped")
        if self.sqnr_before is not None and self.sqnr_after is not None:
            verdict = "kept" if self.applied else "discarded"
            line += f"; held-out SQNR {self.sqnr_before:.2f} -> {self.sqnr_after:.2f} dB, {verdict}"
        return line

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "layers": [s.to_dict() for s in self.layers],
                "skipped": [list(s) for s in self.skipped], "passes": self.passes, "samples": self.samples,
                "seconds": round(self.seconds, 3), "applied": self.applied,
                "sqnr_before": json_float(self.sqnr_before), "sqnr_after": json_float(self.sqnr_after)}


@dataclass
class _Target:
    index: int
    node: onnx.NodeProto
    level: int = 0


@dataclass
class _Moments:
    """Per-channel sums of one tensor over batches (channel axis 1)."""

    sums: np.ndarray | None = None
    squares: float = 0.0
    count: int = 0  # values per channel

    def update(self, x: np.ndarray) -> None:
        x = np.asarray(x, dtype=np.float64)
        other = tuple(d for d in range(x.ndim) if d != 1)
        s = x.sum(axis=other)
        self.sums = s if self.sums is None else self.sums + s
        self.squares += float(np.dot(x.ravel(), x.ravel()))
        self.count += x.size // max(x.shape[1], 1)

    @property
    def mean(self) -> np.ndarray:
        return (self.sums if self.sums is not None else np.zeros(0)) / max(self.count, 1)

    @property
    def rms(self) -> float:
        values = self.count * (self.sums.size if self.sums is not None else 0)
        return math.sqrt(self.squares / values) if values else 0.0


def correct_biases(fp32_model: onnx.ModelProto, qdq_model: onnx.ModelProto, batches: Batches, *,
                   method: str = "sequential", max_samples: int | None = None, show_progress: bool = False,
                   weights_dir: Path | None = None) -> tuple[onnx.ModelProto, BiasCorrectionReport]:
    """Correct the biases of `qdq_model`'s quantized Conv/ConvTranspose/Gemm layers (module docstring).

    Args:
        fp32_model: the FP32 model `qdq_model` was made from (same tensor names).
        qdq_model: the Q/DQ model (left unchanged).
        batches: calibration feed dicts (see trtq.accuracy.evaluation.Batches).
        method: "sequential" (exact, 1 + levels passes) or "fast" (one pass, each layer's own
            error on FP32 activations; see the module docstring).
        max_samples: use at most this many samples of `batches` per pass (None: all).
        show_progress: a progress bar of the passes on stderr (they take seconds each on CPU).
        weights_dir: the folder of the weights the models left in files (loaded by reference,
            trtq.onnx_model.model.load_model_by_reference): sessions and the biases read them there.

    Returns:
        The corrected copy and the report.

    Raises:
        ConfigError: unknown method or max_samples < 1.
        DataError: there is no data, or a batch does not fit the model.
        ModelError: a model cannot be loaded by ONNX Runtime.
    """
    if method not in METHODS:
        raise ConfigError(f"bias correction method {method!r} is not supported",
                          hint=f"use one of {', '.join(METHODS)}")
    start = time.perf_counter()
    batches = limit_samples(batches, max_samples)
    work = onnx.ModelProto()
    work.CopyFrom(qdq_model)
    targets, skipped = _targets(work, fp32_model)
    if not targets:
        return work, BiasCorrectionReport((), tuple(skipped), seconds=time.perf_counter() - start)
    run = _fast if method == "fast" else _sequential
    with progress_bar(1 if method == "fast" else 1 + len({t.level for t in targets}),
                      "bias correction", unit="pass", enabled=show_progress) as bar:
        shifts, passes, samples = run(work, fp32_model, targets, _Passes(batches, weights_dir), bar)
    ordered = tuple(shift for _, shift in sorted(shifts, key=lambda item: item[0]))
    report = BiasCorrectionReport(ordered, tuple(skipped), passes=passes, samples=samples,
                                  seconds=time.perf_counter() - start, method=method)
    return work, report


_Shifts = list[tuple[int, BiasShift]]


@dataclass(frozen=True)
class _Passes:
    """The data of every pass, and the folder of the weights the models left in files (or None)."""

    batches: Batches
    weights_dir: Path | None


def _sequential(work: onnx.ModelProto, fp32_model: onnx.ModelProto, targets: list[_Target],
                passes: _Passes, bar: Any) -> tuple[_Shifts, int, int]:
    """Level by level: measure the level's outputs in the (already partly corrected) Q/DQ model, correct."""
    reference, samples = _moments(fp32_model, passes, [t.node.output[0] for t in targets])
    bar.update(1)
    shifts: _Shifts = []
    levels = sorted({t.level for t in targets})
    for level in levels:
        group = [t for t in targets if t.level == level]
        outputs = [t.node.output[0] for t in group]
        measured, _ = _moments(_prune(work, outputs), passes, outputs)
        names = NameScope(work)
        for t in group:
            ref = reference[t.node.output[0]]
            shifts.append(_correct(work, t, ref, measured[t.node.output[0]], names, passes.weights_dir))
        bar.update(1)
        log.debug("bias correction: level %d, %d layers", level, len(group))
    return shifts, 1 + len(levels), samples


def _fast(work: onnx.ModelProto, fp32_model: onnx.ModelProto, targets: list[_Target],
          passes: _Passes, bar: Any) -> tuple[_Shifts, int, int]:
    """One pass of the probe model: each layer's FP32 output against its output on Q/DQ'd FP32 inputs."""
    probe, pairs = probe_model(work, [t.node.name for t in targets])
    outputs = [name for t in targets if t.node.name in pairs for name in pairs[t.node.name]]
    stats, samples = _moments(probe, passes, outputs)
    bar.update(1)
    names = NameScope(work)
    shifts = [_correct(work, t, stats[pairs[t.node.name][0]], stats[pairs[t.node.name][1]], names, passes.weights_dir)
              for t in targets if t.node.name in pairs]
    return shifts, 1, samples


def _correct(work: onnx.ModelProto, target: _Target, ref: _Moments, measured: _Moments,
             names: NameScope, weights_dir: Path | None) -> tuple[int, BiasShift]:
    shift = ref.mean - measured.mean
    created = _add_to_bias(work, target.node, shift, names, weights_dir)
    node = target.node
    return target.index, BiasShift(node.name, node.op_type, target.level, int(shift.size),
                                   float(np.abs(shift).mean()), float(np.abs(shift).max()), ref.rms, created)


def apply_bias_correction(fp32_model: onnx.ModelProto, qdq_model: onnx.ModelProto, calib_batches: Batches,
                          mode: str, eval_batches: Batches | None = None, reference: Reference | None = None, *,
                          method: str = "sequential", max_samples: int | None = None,
                          sqnr_before: float | None = None, show_progress: bool = False,
                          weights_dir: Path | None = None) -> tuple[onnx.ModelProto, BiasCorrectionReport | None]:
    """QuantizeConfig.bias_correction as the pipeline uses it.

    Args:
        fp32_model, qdq_model: as for `correct_biases`.
        calib_batches: data the shifts are measured on.
        mode: "none" (return `qdq_model`), "always" (correct), or "auto": correct, then keep the
            correction only if it raises the worst output SQNR on the held-out data.
        eval_batches: held-out data for "auto"; without it the calibration data is used (which
            favours the correction).
        reference: an existing Reference on the held-out data, to avoid running FP32 again.
        method, max_samples: as for `correct_biases`.
        sqnr_before: the worst output SQNR of `qdq_model` on `reference` when it was measured
            already (the fallback's last step): "auto" then runs the Q/DQ model once, not twice.
        weights_dir: as for `correct_biases`.

    Raises:
        ConfigError: unknown mode or method.
    """
    if mode not in MODES:
        raise ConfigError(f"bias correction {mode!r} is not supported", hint=f"use one of {', '.join(MODES)}")
    if mode == "none":
        return qdq_model, None
    corrected, report = correct_biases(fp32_model, qdq_model, calib_batches, method=method, max_samples=max_samples,
                                       show_progress=show_progress, weights_dir=weights_dir)
    if mode == "always" or not report.layers:
        return corrected, report
    if reference is None:
        if eval_batches is None:
            log.warning("bias correction 'auto' without held-out data: judged on the calibration data")
        reference = Reference(fp32_model, eval_batches if eval_batches is not None else calib_batches,
                              weights_dir=weights_dir)
    with timed_step(log, "bias correction 'auto': measuring the corrected model on the held-out data"):
        before = sqnr_before if sqnr_before is not None else worst_sqnr(reference.measure(qdq_model))
        after = worst_sqnr(reference.measure(corrected))
    applied = after > before
    report = replace(report, applied=applied, sqnr_before=before, sqnr_after=after)
    return (corrected if applied else qdq_model), report


def _targets(model: onnx.ModelProto, fp32_model: onnx.ModelProto) -> tuple[list[_Target], list[tuple[str, str]]]:
    """Quantized Conv/ConvTranspose/Gemm nodes (weight read through a DQ) with their levels; and the skipped."""
    producers = {o: n for n in model.graph.node for o in n.output}
    in_fp32 = {o for n in fp32_model.graph.node for o in n.output}
    inits = {t.name for t in model.graph.initializer}
    depth: dict[str, int] = {}
    targets, skipped = [], []
    for i, node in enumerate(model.graph.node):
        din = max((depth.get(t, 0) for t in node.input if t), default=0)
        quantized = (node.op_type in CORRECTED_OPS and len(node.input) > 1
                     and getattr(producers.get(node.input[1]), "op_type", None) == "DequantizeLinear")
        reason = _problem(node, in_fp32, inits) if quantized else None
        if quantized and reason is None:
            targets.append(_Target(i, node, din))
        elif reason:
            skipped.append((node.name, reason))
        for o in node.output:
            depth[o] = din + 1 if quantized and reason is None else din
    return targets, skipped


def _problem(node: onnx.NodeProto, in_fp32: set[str], inits: set[str]) -> str | None:
    if node.output[0] not in in_fp32:
        return f"its output '{node.output[0]}' is not a tensor of the FP32 model"
    if len(node.input) > 2 and node.input[2] and node.input[2] not in inits:
        return f"its bias '{node.input[2]}' is not an initializer"
    if node.op_type == "Gemm" and _beta(node) == 0.0:
        return "Gemm beta is 0 (the bias is ignored)"
    return None


def _beta(node: onnx.NodeProto) -> float:
    for attr in node.attribute:
        if attr.name == "beta":
            return float(attr.f)
    return 1.0


def _moments(model: onnx.ModelProto, passes: _Passes, tensors: Sequence[str]) -> tuple[dict[str, _Moments], int]:
    """Per-channel moments of `tensors` over all batches, and the number of samples."""
    stats = {t: _Moments() for t in tensors}
    samples = 0
    for feed, values in run_batches(model, passes.batches, list(tensors), passes.weights_dir):
        first = next(iter(feed.values()))
        samples += int(first.shape[0]) if first.ndim else 1
        for name, m in stats.items():
            m.update(values[name])
    if samples == 0:
        raise DataError("there is no calibration data for bias correction: the batches were empty",
                        hint="check the data path")
    return stats, samples


def _prune(model: onnx.ModelProto, outputs: Sequence[str]) -> onnx.ModelProto:
    """A copy of `model` holding only the nodes and initializers `outputs` depend on (all graph inputs kept)."""
    needed = set(outputs)
    keep = []
    for node in reversed(model.graph.node):
        if any(o in needed for o in node.output):
            keep.append(node)
            needed.update(t for t in node.input if t)
            for attr in node.attribute:  # subgraphs read outer tensors by name
                for sub in ([attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)):
                    needed.update(t for n in sub.node for t in n.input if t)
    pruned = onnx.ModelProto()
    pruned.CopyFrom(model)
    graph = pruned.graph
    del graph.node[:]
    graph.node.extend(reversed(keep))
    listed = {i.name for i in model.graph.input}  # old models list initializers as inputs: keep those
    drop_initializers(graph, {t.name for t in graph.initializer} - needed - listed)
    return pruned


def _add_to_bias(model: onnx.ModelProto, node: onnx.NodeProto, shift: np.ndarray, names: NameScope,
                 weights_dir: Path | None = None) -> bool:
    """Add `shift` (per output channel) to the node's bias (read from `weights_dir` if left in a file there),
    creating it if missing; True if created."""
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    shift = shift / _beta(node) if node.op_type == "Gemm" else shift
    name = node.input[2] if len(node.input) > 2 else ""
    if name:
        old = tensor_values(inits[name], weights_dir)
        value = _shifted(old, shift, node.op_type).astype(old.dtype)
        shared = sum(t == name for n in graph.node for t in n.input) > 1
        if not shared:
            inits[name].CopyFrom(numpy_helper.from_array(value, name))
            return False
    else:
        value = shift.astype(_float_type(model, node))
    new = names.fresh(f"{node.name}_bias_corrected")
    graph.initializer.append(numpy_helper.from_array(value, new))
    while len(node.input) < 3:
        node.input.append("")
    node.input[2] = new
    return not name


def _shifted(bias: np.ndarray, shift: np.ndarray, op_type: str) -> np.ndarray:
    """bias + shift broadcast over the output channels (Gemm's C may be a scalar, [N], [1, N] or [M, N])."""
    b = bias.astype(np.float64)
    shifted: np.ndarray
    if op_type != "Gemm" or b.ndim <= 1:
        shifted = np.broadcast_to(b, shift.shape) + shift
    else:
        shifted = np.broadcast_to(b, (b.shape[0], shift.size)) + shift[None, :]
    return shifted


def _float_type(model: onnx.ModelProto, node: onnx.NodeProto) -> np.dtype:
    """dtype of a new bias: that of the weight DQ's scale (the DQ output type), else float32."""
    producers = {o: n for n in model.graph.node for o in n.output}
    dq = producers.get(node.input[1])
    scales = {t.name: t for t in model.graph.initializer}
    if dq is not None and len(dq.input) > 1 and dq.input[1] in scales:
        return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(scales[dq.input[1]].data_type))
    return np.dtype(np.float32)
