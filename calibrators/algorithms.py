"""Range algorithms: named, pure functions from a tensor's statistics to a symmetric amax.

Every algorithm takes a `TensorStats` (the histogram, always present, and the
optional moving-average min/max) plus keyword parameters, and returns amax as a
float in the tensor's units (the INT8 scale is amax / 127). All but `ema` read
the same histogram, so methods can be compared without running the model again.

A tensor that was all zeros, or that saw no value at all, gets amax 0.0 from
every method; the caller decides what to do with it (e.g. skip it in the cache).

    amax = percentile(stats, percentile=99.9)

Each registers itself in registry.py (with its metadata) at the end of this module; auto, which compares these
functions, is auto.py.
"""

from __future__ import annotations

import math

import numpy as np

from trtq.calibrators.entropy import entropy_bin
from trtq.calibrators.histogram import HistogramObserver
from trtq.calibrators.mse import expected_mse, mse_amax
from trtq.calibrators.registry import register_algorithm
from trtq.calibrators.stats import TensorStats


def minmax(stats: TensorStats) -> float:
    """Exact max |x| over everything seen (from the tracked min/max, not bin edges)."""
    return stats.hist.amax


def entropy(stats: TensorStats, *, num_quantized_bins: int = 128, start_bin: int = 128,
            flatten_zero_bin: bool = True) -> float:
    """TensorRT EntropyCalibration2: the threshold minimizing KL(P || Q) (see entropy.py).

    Args:
        num_quantized_bins: levels Q is merged into (128 for INT8).
        start_bin: smallest number of bins kept.
        flatten_zero_bin: search with bin 0 set to bin 1's count, as pytorch-quantization does,
            so that many exact zeros (ReLU outputs, padding) do not shrink the threshold;
            False searches the histogram as the published TensorRT algorithm describes.

    Returns:
        The threshold i * bin_width of the best candidate i, i.e. the upper edge of the
        last bin kept, as pytorch-quantization (`bin_edges[i]`); the GTC 2017 slides put it
        at (i + 0.5) * bin_width. Capped at the exact max |x|. When fewer than start_bin
        bins are occupied there is nothing to search and the max is returned.
    """
    _check_positive(num_quantized_bins=num_quantized_bins, start_bin=start_bin)
    hist = stats.hist
    best = entropy_bin(hist.bins, num_quantized_bins, start_bin, flatten_zero_bin=flatten_zero_bin)
    if best is None:
        return hist.amax
    return min(best * hist.bin_width, hist.amax)


def percentile(stats: TensorStats, *, percentile: float = 99.99) -> float:
    """Smallest threshold t such that at least `percentile` % of |x| are <= t.

    Exact zeros count as the point mass at 0 they are; inside a bin the values are
    taken as uniformly spread, so t is interpolated linearly within the bin that
    crosses the percentile. Capped at the exact max |x| (percentile 100 gives the max).
    """
    if not 0.0 < percentile <= 100.0:
        raise ValueError(f"percentile must be in (0, 100], got {percentile}")
    hist = stats.hist
    target = hist.count * percentile / 100.0
    if hist.count == 0 or target <= hist.zero_count or hist.exponent is None:
        return 0.0
    counts = hist.bins.astype(np.float64)
    counts[0] -= hist.zero_count
    below = hist.zero_count + np.concatenate(([0.0], np.cumsum(counts)))  # values < k * width, k = 0..n
    k = int(np.searchsorted(below[1:], target, side="left"))
    k = min(k, hist.num_bins - 1)  # float rounding at percentile 100
    fraction = (target - below[k]) / counts[k] if counts[k] > 0 else 1.0
    return min((k + min(max(fraction, 0.0), 1.0)) * hist.bin_width, hist.amax)


def mse(stats: TensorStats, *, start_bin: int = 128) -> float:
    """The amax minimizing the expected squared INT8 error (rounding + clipping), see mse.py.

    Candidates are the bin edges from `start_bin` on and the exact max |x|.
    """
    _check_positive(start_bin=start_bin)
    return mse_amax(stats.hist, start_bin)


def ema(stats: TensorStats) -> float:
    """max(|avg min|, |avg max|) of the moving-average observer; depends on batching."""
    if stats.ema is None:
        raise ValueError("method 'ema' needs TensorStats created with an ema_constant (it was None)")
    return stats.ema.amax


# The built-in methods, in the order the config lists them; auto's tie-break order is minmax, entropy,
# percentile, mse (the smaller amax first among exact ties, see auto.py).
register_algorithm("entropy", header="EntropyCalibration2", auto_candidate=True, auto_priority=1)(entropy)
register_algorithm("minmax", uses_bins=False, header="MinMaxCalibration", auto_candidate=True,
                   auto_priority=0)(minmax)
register_algorithm("percentile", config=("percentile",), auto_candidate=True, auto_priority=2)(percentile)
register_algorithm("mse", auto_candidate=True, auto_priority=3)(mse)
register_algorithm("ema", statistics="ema", uses_bins=False, config=("ema_constant",))(ema)


def round_to_power_of_two(amax: float) -> float:
    """Round amax up to the next power of two, 2**ceil(log2 amax); 0 stays 0.

    Raises:
        ValueError: amax is negative, NaN or infinite.
    """
    if not (math.isfinite(amax) and amax >= 0.0):
        raise ValueError(f"amax must be finite and >= 0, got {amax}")
    if amax == 0.0:
        return 0.0
    mantissa, exponent = math.frexp(amax)  # amax = mantissa * 2**exponent, 0.5 <= mantissa < 1
    return amax if mantissa == 0.5 else math.ldexp(1.0, exponent)


def round_to_power_of_two_scale(amax: float, qmax: float = 127.0) -> float:
    """Round amax up so that the scale amax / qmax is a power of two: qmax * 2**ceil(log2(amax / qmax)).

    The power-of-two convention for fixed-point accelerators (PACT2-style): the scale, which such
    hardware applies as a bit shift, is exactly 2**k, and amax = 127 * 2**k is what TensorRT's
    scale = amax / 127 maps to it (round_to_power_of_two instead makes amax itself 2**k, whose
    scale 2**k / 127 is no power of two). 0 stays 0.

    Raises:
        ValueError: amax is negative, NaN or infinite, or qmax is not positive.
    """
    if not (math.isfinite(amax) and amax >= 0.0) or not qmax > 0.0:
        raise ValueError(f"amax must be finite and >= 0 and qmax > 0, got amax {amax}, qmax {qmax}")
    return qmax * round_to_power_of_two(amax / qmax) if amax > 0.0 else 0.0


def estimate_error(method_amax: float, hist: HistogramObserver) -> float:
    """Expected mean squared INT8 error over the histogram's values with range `method_amax`.

    The same model as the `mse` method (mse.py), so methods can be compared on one scale.

    Raises:
        ValueError: method_amax is negative, NaN or infinite.
    """
    if not (math.isfinite(method_amax) and method_amax >= 0.0):
        raise ValueError(f"amax must be finite and >= 0, got {method_amax}")
    return float(expected_mse(hist, method_amax)[0])


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
