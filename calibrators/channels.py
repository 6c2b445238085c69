"""Per-input-channel statistics of a MatMul/Gemm activation: what SmoothQuant needs.

SmoothQuant (Xiao et al. 2023, "SmoothQuant: Accurate and Efficient Post-Training Quantization for
Large Language Models", §4) migrates the difficulty of quantizing activations with outlier
channels into the weights, per input channel j: x_j / s_j, W_j * s_j, with
s_j = max|x_j|^alpha / max|W_j|^(1 - alpha). It needs max|x_j| per channel (the last axis of a
MatMul's activation, the contraction axis); choosing alpha by the layer's output error also needs
how the values of each channel are spread, which a histogram of log2|x| per channel gives.

Both parts are exact and independent of batching: the maximum is order-free, and every value
lands in the bin of its binary exponent (`np.frexp`, no rounding), so counts only add up.
Merging two observers gives bit for bit what one observer of all the values would hold.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from trtq.calibrators import histogram
from trtq.calibrators.observers import ObserverDict, as_values, batch_range, check_type, raise_nonfinite

# log2 bins: bin i holds |x| in [2**(e-1), 2**e) with e = i + EXP_MIN; bin 0 also holds every
# smaller magnitude and zeros, the last bin every larger one (float32 activations beyond 2**40
# do not occur in models worth quantizing, and such values would overflow INT8 ranges anyway).
EXP_MIN, NUM_BINS = -24, 64


class ChannelObserver:
    """Per-channel max |x| and log2|x| histogram over the last axis of every batch.

    Attributes:
        absmax: float64 [channels], max |x| of each channel (zeros before any value).
        log_bins: int64 [channels, NUM_BINS], counts of each channel's binary exponents.
    """

    kind: ClassVar[str] = "channel_stats"

    def __init__(self) -> None:
        self.absmax = np.zeros(0, np.float64)
        self.log_bins = np.zeros((0, NUM_BINS), np.int64)
        self._count = 0

    @property
    def count(self) -> int:
        """Number of values seen (all channels together)."""
        return self._count

    @property
    def channels(self) -> int:
        return len(self.absmax)

    def update(self, x: np.ndarray) -> None:
        """Add one batch; its last axis is the channel axis.

        Raises:
            ValueError: NaN/Inf values, a 0-d array, or another channel count than before.
        """
        x = as_values(x)
        if x.ndim == 0:
            raise ValueError("per-channel statistics need an array with a channel (last) axis")
        if x.size == 0:
            return
        kernel = compiled_kernel() if x.dtype == np.float32 else None
        absmax, log_bins = channel_counts_numpy(x) if kernel is None else _checked(kernel(x.reshape(-1, x.shape[-1])))
        self._ensure(len(absmax))
        np.maximum(self.absmax, absmax, out=self.absmax)
        self.log_bins += log_bins
        self._count += int(x.size)

    def _ensure(self, channels: int) -> None:
        if self.channels == 0 and self._count == 0:
            self.absmax = np.zeros(channels, np.float64)
            self.log_bins = np.zeros((channels, NUM_BINS), np.int64)
        elif channels != self.channels:
            raise ValueError(f"per-channel statistics of {self.channels} channels cannot take a batch of "
                             f"{channels} channels")

    def merge(self, other: ChannelObserver) -> None:
        if type(other) is not ChannelObserver:
            raise ValueError(f"cannot merge a {type(other).__name__} into a ChannelObserver")
        if other.count == 0:
            return
        self._ensure(other.channels)
        np.maximum(self.absmax, other.absmax, out=self.absmax)
        self.log_bins += other.log_bins
        self._count += other.count

    def mean_square(self) -> np.ndarray:
        """Approximate E[x_j^2] per channel from the log2 bins (exact to a factor of 2 per value)."""
        per_channel = self.log_bins.sum(axis=1)
        square = 7.0 / 12.0 * np.exp2(2.0 * (np.arange(NUM_BINS) + EXP_MIN))  # mean of x^2 over [2^(e-1), 2^e)
        return (self.log_bins @ square) / np.maximum(per_channel, 1)

    def to_dict(self) -> ObserverDict:
        return {"type": self.kind, "absmax": self.absmax, "log_bins": self.log_bins, "count": self._count}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ChannelObserver:
        check_type(d, cls.kind)
        obs = cls()
        obs.absmax = np.asarray(d["absmax"], np.float64).reshape(-1).copy()
        obs.log_bins = np.asarray(d["log_bins"], np.int64).reshape(len(obs.absmax), NUM_BINS).copy()
        obs._count = int(d["count"])
        return obs


def channel_counts_numpy(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(max |x| per channel as float64, int64 [channels, NUM_BINS] counts of binary exponents) of the
    last axis of `x`: the reference the compiled kernel (histogram_kernel.channel_counts) is tested against.

    Raises:
        ValueError: `x` holds NaN or ±Inf.
    """
    batch_range(x)
    rows = np.abs(x.reshape(-1, x.shape[-1]))
    exponent = np.frexp(rows)[1]
    index = np.clip(exponent - EXP_MIN, 0, NUM_BINS - 1)
    index[rows == 0] = 0  # frexp(0) has exponent 0; zeros belong with the smallest magnitudes
    index += np.arange(rows.shape[1], dtype=index.dtype) * NUM_BINS
    counts = np.bincount(index.reshape(-1), minlength=rows.shape[1] * NUM_BINS).reshape(rows.shape[1], NUM_BINS)
    return rows.max(axis=0).astype(np.float64), counts.astype(np.int64)


@functools.cache
def compiled_kernel() -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, int]] | None:
    """histogram_kernel.channel_counts (float32 only), or None when numba is unavailable (histogram.py warns)."""
    if histogram.compiled_kernel() is None:
        return None
    from trtq.calibrators import histogram_kernel

    return histogram_kernel.channel_counts


def _checked(counted: tuple[np.ndarray, np.ndarray, int]) -> tuple[np.ndarray, np.ndarray]:
    absmax, log_bins, bad = counted
    if bad:
        raise_nonfinite(bad)
    return absmax, log_bins


def bin_magnitudes() -> np.ndarray:
    """A representative |x| of each log2 bin (the middle of [2^(e-1), 2^e))."""
    return 0.75 * np.exp2(np.arange(NUM_BINS) + EXP_MIN)
