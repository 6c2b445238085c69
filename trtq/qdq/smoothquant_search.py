"""SmoothQuant's migration strength alpha, chosen per layer from calibration statistics.

For one activation X [.., C] read by MatMul/Gemm layers with weights W (stacked along the output
axis, [C, N]), smoothing by s (x_j / s_j, W_j * s_j; Xiao et al. 2023, eq. 4) with
s_j = max|x_j|^alpha / max|W_j|^(1 - alpha) leaves X @ W unchanged in exact arithmetic and moves
quantization difficulty from the activation to the weights. Which alpha is best depends on the
layer (the paper uses 0.5 for most models and 0.75-0.85 for some), so trtq estimates, for every
candidate alpha and for no smoothing at all, the mean squared error one token's output gets from
INT8 quantization, and keeps the smallest:

    activation noise:  sum_j e_j(A) * ||s_j W_j||^2      e_j: error of channel j's values (x/s)
                                                          quantized per tensor with amax A
    weight noise:      sum_j E[(x_j/s_j)^2] * sum_k d_k^2/12    d_k = max_j |s_j W_jk| / 127
                                                                 (per-output-channel weights)

e_j comes from the channel's log2 histogram (ChannelObserver): values v below d/2 round to zero
(error v^2), values up to A get rounding noise d^2/12 (d = A/127), values beyond A are clipped
(error (v - A)^2). With smoothing, A is max_j max|x_j|/s_j, the exact max of x / s (the paper's
static per-tensor scale); clipping candidates below it were tried and rejected: the log2 bins are
too coarse to price clipping, and the estimate then chose ranges that measured worse. Without
smoothing, the better of the calibrated amax of X and its max is used.

The floor on s. Eq. 4 also *amplifies* the quiet channels (small max|x_j|, small s_j), and the
static range of x / s is the calibration data's max: a channel quiet on the calibration data but
not on new data then exceeds it many times over. GELU outputs (the FFN's second MatMul) are such
tensors, their outliers come with particular tokens, not fixed channels as in LayerNorm outputs:
on all-mpnet-base-v2 (200 calibration sentences, 200 held out), the held-out sentences' max of
x / s exceeded the range 4.2-5.3x at the 99th percentile in 4 of 12 layers (LayerNorm outputs:
<= 1.0x), and the worst held-out sentence lost most of its accuracy there. Keeping every s_j at
least half the median s (channels are still divided down to flatten the outliers, but never
multiplied up past the typical channel) raised that sentence's pooled cosine 0.942 -> 0.967 and
the worst over all 0.9152 -> 0.9288 with the mean unchanged (0.9885); a floor at the median
itself cost the mean (0.9866), and smoothing only LayerNorm outputs, or none, collapses the model
(pooled cosine 0.70, 0.69: the GELU outputs need smoothing).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from trtq.calibrators.channels import ChannelObserver, bin_magnitudes

ALPHAS = tuple(round(0.05 * k, 2) for k in range(21))
_SCALE_LIMIT = 1e4  # s stays in [1/limit, limit]: dead channels (max |x| or |W| of 0) get s = 1
SCALE_FLOOR = 0.5  # no channel is divided by less than half the median s: see the module docstring
QMAX = 127.0


@dataclass(frozen=True)
class SmoothingChoice:
    """What the search found for one activation.

    Attributes:
        alpha: the chosen migration strength, or None when not smoothing is best.
        scales: s per input channel (None when not smoothing).
        amax: the activation range to quantize x / s with (or x, when not smoothing).
        error: estimated output error per token with the choice.
        error_plain: the same estimate without smoothing.
    """

    alpha: float | None
    scales: np.ndarray | None
    amax: float
    error: float
    error_plain: float


def smoothing_scales(absmax: np.ndarray, weight_max: np.ndarray, alpha: float) -> np.ndarray:
    """s_j = max|x_j|^alpha / max|W_j|^(1 - alpha) (SmoothQuant eq. 4), at least SCALE_FLOOR times the
    median s of the live channels; 1 for dead channels."""
    live = (absmax > 0) & (weight_max > 0)
    s = np.ones_like(absmax, dtype=np.float64)
    s[live] = absmax[live] ** alpha / weight_max[live] ** (1.0 - alpha)
    if live.any():
        s[live] = np.maximum(s[live], SCALE_FLOOR * np.median(s[live]))
    return np.clip(s, 1.0 / _SCALE_LIMIT, _SCALE_LIMIT)


def choose_smoothing(channels: ChannelObserver, weights: np.ndarray, amax: float,
                     alphas: tuple[float, ...] = ALPHAS) -> SmoothingChoice:
    """The alpha (or no smoothing) with the smallest estimated output error.

    Args:
        channels: per-channel statistics of the activation X.
        weights: [C, N] every consumer's weight, input channel first, stacked along N.
        amax: the calibrated range of X (used without smoothing).
        alphas: candidates; a single one forces that alpha (no comparison with no smoothing).
    """
    weights = np.asarray(weights, np.float64)
    weight_max = np.abs(weights).max(axis=1)
    plain_amax, plain_error = _best_amax(channels, weights, np.ones(channels.channels), extra=amax)
    best = SmoothingChoice(None, None, plain_amax, plain_error, plain_error)
    for alpha in alphas:
        s = smoothing_scales(channels.absmax, weight_max, alpha)
        a, error = _best_amax(channels, weights, s)
        if error < best.error or len(alphas) == 1:
            best = SmoothingChoice(alpha, s, a, error, plain_error)
    return best


def _best_amax(channels: ChannelObserver, weights: np.ndarray, s: np.ndarray,
               extra: float | None = None) -> tuple[float, float]:
    """(amax, estimated error) of x / s quantized at its max, or at `extra` if that is estimated better."""
    peak = float(np.max(channels.absmax / s))
    if peak <= 0:
        return 0.0, 0.0
    candidates = [peak] + ([extra] if extra is not None and extra > 0 else [])
    errors = [output_error(channels, weights, s, float(a)) for a in candidates]
    k = int(np.argmin(errors))
    return float(candidates[k]), float(errors[k])


def output_error(channels: ChannelObserver, weights: np.ndarray, s: np.ndarray, amax: float) -> float:
    """Estimated squared output error per token of X @ W with x / s quantized at amax and s * W per
    output channel (see the module docstring)."""
    counts = channels.log_bins.astype(np.float64)
    tokens = np.maximum(counts.sum(axis=1, keepdims=True), 1.0)
    v = bin_magnitudes()[None, :] / s[:, None]  # [C, bins] representative |x / s|
    step = amax / QMAX
    err = np.where(v > amax, (v - amax) ** 2, np.where(v < step / 2, v ** 2, step ** 2 / 12.0))
    activation_error = (counts * err).sum(axis=1) / tokens[:, 0]  # e_j
    scaled = weights * s[:, None]
    act_term = float(activation_error @ (scaled ** 2).sum(axis=1))
    weight_step = np.abs(scaled).max(axis=0) / QMAX  # d_k
    mean_square = channels.mean_square() / s ** 2
    weight_term = float(mean_square.sum() * (weight_step ** 2).sum() / 12.0)
    return act_term + weight_term


def outlier_ratio(channels: ChannelObserver) -> float:
    """max_j max|x_j| / median_j max|x_j|: how far the largest channel stands out (0 if no data)."""
    live = channels.absmax[channels.absmax > 0]
    if live.size == 0:
        return 0.0
    return float(live.max() / np.median(live))
