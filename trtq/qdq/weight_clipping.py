"""MSE-optimal per-channel weight ranges (QuantizeConfig.weight_clipping = "mse").

By default a weight channel's scale is max|w| / 127: the one largest weight sets the step
for all of them. When that weight is an outlier, a smaller range clips it a little and
rounds every other weight of the channel more finely, which lowers the channel's total
squared error. This module finds, per output channel, the range amax = f * max|w| with f
on the grid k / steps (k = 1..steps) whose quantize-dequantize error sum((DQ(Q(w)) - w)**2)
is least. f = 1 (max|w|) is on the grid, so the result is never worse than the default on
the weights themselves. The error is evaluated exactly as ONNX QuantizeLinear rounds and
saturates (trtq.qdq.scales.quantize_array: INT8 round half to even, clip to [-128, 127];
FP8 E4M3 saturating cast), so it is what the Q/DQ model will compute.

Cost: one fake-quantization of the weight per grid point, vectorized over all channels:
steps * weight size element operations (the 2.4 M weights of a 512x512x3x3 conv take
1-3 s with 100 steps on a shared 2-core CPU).
"""

from __future__ import annotations

import numpy as np

from trtq.errors import ConfigError
from trtq.qdq.scales import AMAX_FLOOR, INT8, QType, broadcast_scale, quantize_array, weight_amax

CLIPPING_MODES = ("none", "mse")
DEFAULT_STEPS = 100


def check_clipping(mode: str) -> None:
    """Raise ConfigError unless `mode` is a known weight clipping mode."""
    if mode not in CLIPPING_MODES:
        raise ConfigError(f"weight clipping {mode!r} is not supported", hint=f"use {' or '.join(CLIPPING_MODES)}")


def channel_errors(weight: np.ndarray, amax: np.ndarray, axis: int | None, qtype: QType = INT8) -> np.ndarray:
    """Sum of squared quantize-dequantize errors per channel (1-D over `axis`), or of the whole tensor.

    Args:
        weight: the float weight.
        amax: per-channel ranges (1-D, one per index of `axis`) or a scalar range when `axis` is None.
        axis: the per-channel axis, or None for one per-tensor scale.
        qtype: INT8 or FP8.
    """
    w = weight.astype(np.float32)
    scale = (np.maximum(np.asarray(amax, np.float64), AMAX_FLOOR) / qtype.qmax).astype(np.float32)
    deq = quantize_array(w, scale, axis, qtype).astype(np.float32) * broadcast_scale(scale, axis, w.ndim)
    err = (deq.astype(np.float64) - w) ** 2
    if axis is None or w.ndim == 0:
        return np.asarray(err.sum())
    other = tuple(d for d in range(w.ndim) if d != axis)
    errors: np.ndarray = err.sum(axis=other) if other else err
    return errors


def mse_weight_amax(weight: np.ndarray, axis: int | None, qtype: QType = INT8,
                    steps: int = DEFAULT_STEPS) -> np.ndarray:
    """The per-channel amax minimizing each channel's squared quantization error (see the module docstring).

    Args:
        weight: the float weight.
        axis: the per-channel axis (output channels), or None for one per-tensor range.
        qtype: INT8 or FP8 (the grid search runs the type's own rounding).
        steps: grid points over (0, max|w|]; ties go to the larger range.

    Returns:
        float64 amax, 1-D over `axis` (like scales.weight_amax) or 0-d when `axis` is None;
        all-zero channels keep amax 0.

    Raises:
        ValueError: steps < 1.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    full = weight_amax(weight, axis)
    best = full.copy()
    least = channel_errors(weight, full, axis, qtype)
    for k in range(steps - 1, 0, -1):  # downwards from f = 1, so that ties keep the larger range
        candidate = full * (k / steps)
        errors = channel_errors(weight, candidate, axis, qtype)
        better = errors < least
        best = np.where(better, candidate, best)
        least = np.where(better, errors, least)
    return np.asarray(best, dtype=np.float64)


def weight_range(weight: np.ndarray, axis: int | None, qtype: QType, mode: str) -> np.ndarray:
    """The weight's amax under clipping `mode`: max|w| ("none") or `mse_weight_amax` ("mse")."""
    check_clipping(mode)
    return mse_weight_amax(weight, axis, qtype) if mode == "mse" else weight_amax(weight, axis)
