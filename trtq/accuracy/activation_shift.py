"""`--activation-shift`: measure per-channel ranges on calibration data, then shift (trtq.qdq.activation_shift).

The shift of each channel is the middle of its [min, max] over the calibration samples, taken
on the FP32 model the Q/DQ model was made from (the tensors the Q nodes read keep their names).
Language models are measured at their real tokens only, as calibration is (trtq.onnx_model.token_axes),
so padding does not widen the ranges.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from trtq.accuracy.evaluation import Batches, Reference, limit_samples, run_batches, worst_sqnr
from trtq.accuracy.metrics import json_float
from trtq.onnx_model.model import graph_inputs
from trtq.onnx_model.token_axes import attention_mask_input
from trtq.qdq.activation_shift import ShiftedTensor, apply_shifts, shift_targets

# Calibration samples the ranges come from: one FP32 pass; minima and maxima need the whole data
# more than means do (a channel's range only grows), so more than bias correction takes.
SHIFT_SAMPLES = 512


@dataclass
class ActivationShiftReport:
    """What the shift did: the tensors shifted (amax before/after), how many could be, the time."""

    mode: str
    shifted: list[ShiftedTensor] = field(default_factory=list)
    candidates: int = 0
    samples: int = 0
    seconds: float = 0.0
    applied: bool = True
    sqnr_before: float | None = None
    sqnr_after: float | None = None

    def summary(self) -> str:
        judged = "" if self.sqnr_before is None else (
            f"; held-out worst output SQNR {self.sqnr_before:.2f} -> {self.sqnr_after:.2f} dB, "
            + ("kept" if self.applied else "not kept"))
        return self._what() + judged

    def _what(self) -> str:
        if not self.shifted:
            return f"activation shift ({self.mode}): no activation gained (of {self.candidates} that could be shifted)"
        gains = [t.gain_db for t in self.shifted]
        return (f"activation shift ({self.mode}): {len(self.shifted)} of {self.candidates} activations centred on "
                f"their INT8 grid, range {min(gains):.1f}..{max(gains):.1f} dB narrower "
                f"(ranges from {self.samples} calibration samples, {self.seconds:.1f} s)")

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "candidates": self.candidates, "samples": self.samples,
                "seconds": round(self.seconds, 3), "shifted": [t.to_dict() for t in self.shifted],
                "applied": self.applied, "sqnr_before": json_float(self.sqnr_before),
                "sqnr_after": json_float(self.sqnr_after)}


def shift_activations(fp32_model: onnx.ModelProto, qdq_model: onnx.ModelProto, batches: Batches, mode: str, *,
                      max_samples: int | None = SHIFT_SAMPLES, reference: Reference | None = None,
                      sqnr_before: float | None = None,
                      weights_dir: Path | None = None) -> tuple[onnx.ModelProto, ActivationShiftReport]:
    """A copy of `qdq_model` with its shiftable activations shifted (trtq.qdq.activation_shift), and the report.

    `auto` shifts as `all` does, then keeps the shift only if it raises the worst output SQNR on `reference`
    (the held-out data), as bias correction's auto does: on EfficientNet-Lite0 it costs 1.4 dB.
    `sqnr_before`: that SQNR of `qdq_model` when it was measured already (the fallback's last step).
    """
    start = time.perf_counter()
    work = onnx.ModelProto()
    work.CopyFrom(qdq_model)
    targets = shift_targets(work, "all" if mode == "auto" else mode, weights_dir)
    report = ActivationShiftReport(mode, candidates=len(targets))
    if not targets:
        return work, report
    axes = {t.tensor: t.channel_axis for t in targets}
    ranges, shapes, report.samples = channel_ranges(fp32_model, batches, axes, max_samples, weights_dir)
    work, report.shifted = apply_shifts(work, targets, ranges, shapes, weights_dir)
    if mode == "auto" and report.shifted and reference is not None:
        report.sqnr_before = sqnr_before if sqnr_before is not None else worst_sqnr(reference.measure(qdq_model))
        report.sqnr_after = worst_sqnr(reference.measure(work))
        report.applied = report.sqnr_after > report.sqnr_before
    report.seconds = time.perf_counter() - start
    return (work if report.applied else qdq_model), report


def channel_ranges(model: onnx.ModelProto, batches: Batches, axes: dict[str, int], max_samples: int | None,
                   weights_dir: Path | None = None
                   ) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], dict[str, tuple[int, ...]], int]:
    """Per-channel (min, max) of each tensor in `axes` (name -> channel axis) over the batches, the last
    shape of each (left out where it varied between batches), and the sample count. Per-token tensors of a
    language model count real tokens only."""
    mask_name = attention_mask_input(graph_inputs(model))
    lows: dict[str, np.ndarray] = {}
    highs: dict[str, np.ndarray] = {}
    shapes: dict[str, tuple[int, ...]] = {}
    varying: set[str] = set()
    samples = 0
    for feed, values in run_batches(model, limit_samples(batches, max_samples), list(axes), weights_dir):
        first = next(iter(feed.values()))
        samples += int(first.shape[0]) if first.ndim else 1
        mask = feed.get(mask_name) if mask_name else None
        for name, axis in axes.items():
            x = values[name]
            if name in shapes and shapes[name][1:] != tuple(x.shape[1:]):
                varying.add(name)  # a border map holds for one spatial size only
            shapes[name] = tuple(x.shape)
            if mask is not None and x.ndim >= 3 and x.shape[:2] == mask.shape and axis % x.ndim == x.ndim - 1:
                x = x[np.asarray(mask) != 0]  # [real tokens, .., channels]
            rows = np.moveaxis(x, axis, -1).reshape(-1, x.shape[axis])
            if rows.shape[0] == 0:
                continue
            lo, hi = rows.min(axis=0).astype(np.float64), rows.max(axis=0).astype(np.float64)
            lows[name] = np.minimum(lows[name], lo) if name in lows else lo
            highs[name] = np.maximum(highs[name], hi) if name in highs else hi
    return {n: (lows[n], highs[n]) for n in lows}, {n: v for n, v in shapes.items() if n not in varying}, samples
