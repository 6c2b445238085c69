"""Compiled one-pass binning of a batch: the same counts as histogram.bin_batch, outside the GIL
(and channels.ChannelObserver's per-channel counts: the same as channels.channel_counts_numpy).

The numpy path (histogram.bin_batch) reads every chunk several times and
np.bincount holds the GIL, about 2.3 ns per value. This kernel reads each value
once: min, max, zero count, NaN/Inf count and bin index together, growing the
exponent (and re-binning exactly, bin k -> k >> d) the moment a value leaves the
range. Rounding is the numpy path's: v * 2**-e is exact wherever it is >= 1
(scaling up first when 2**-e alone is not a normal float64), and truncation
gives floor(|v| * 2**-e), so the counts are bit-identical (tests compare the two).

The loop has no data-dependent branch except the rare range growth (a branch
on "is zero" mispredicts half the time after ReLU and cost 2.5x), and values
are spread over several sub-histograms by position: runs of values in one bin
(ReLU zeros, small activations) would otherwise wait on the previous increment
of the same counter (a store-to-load chain).

numba compiles it on first use and caches the machine code on disk
(cache=True), so only the very first process pays the compile; nogil=True lets
ONNX Runtime run the next batch on the other core meanwhile. histogram.py
imports this module (and numba, about 0.5 s) on the first batch only, so
commands that bin nothing do not pay for it.
"""

from __future__ import annotations

import math

import numba
import numpy as np

_TINIEST = 5e-324  # the smallest positive float64
_SUBHISTS = 4  # measured: 1 -> 4 halves the time on ReLU outputs, more gives nothing


_jit = numba.njit(nogil=True, cache=True, error_model="numpy")


@_jit
def _range_exponent(amax, num_bins):
    """histogram.range_exponent, compiled: smallest e with amax < num_bins * 2**e."""
    e = math.frexp(amax)[1]
    b = num_bins
    while b > 1:  # e -= floor(log2(num_bins)), as num_bins.bit_length() - 1
        b >>= 1
        e -= 1
    while math.ldexp(amax, -e) >= num_bins:
        e += 1
    while math.ldexp(amax, 1 - e) < num_bins:
        e -= 1
    return e


@_jit
def _coarsen(bins, shift):
    """histogram.coarsen in place: bin k -> k >> shift (every target index is already processed)."""
    shift = min(shift, 62)
    for k in range(1, bins.shape[0]):
        count = bins[k]
        bins[k] = 0
        bins[k >> shift] += count


@_jit
def _scales(e):
    """Two factors whose product is 2**-e, each a normal float64, applied in order (up first: exact)."""
    if -e > 1023:
        return math.ldexp(1.0, 1023), math.ldexp(1.0, -e - 1023)
    return math.ldexp(1.0, -e), 1.0


@_jit
def _bin_values(values, num_bins, exponent, has_exponent, bins, sub):
    """Bin `values` into `bins` (zeroed, int64[num_bins]) using `sub` (zeroed, int64[_SUBHISTS, num_bins]).

    Returns (exponent, has_exponent, lo, hi, zeros, nonfinite); NaN/Inf are counted, not binned.
    """
    lo, hi = math.inf, -math.inf
    zeros = 0
    bad = 0
    e = exponent
    # Before the first non-zero value every non-zero value is out of range, and zero is not.
    limit = math.ldexp(float(num_bins), e) if has_exponent else _TINIEST
    s1, s2 = _scales(e)
    nsub = sub.shape[0]  # a power of two
    for i in range(values.shape[0]):
        v = float(values[i])
        a = abs(v)
        if not a < math.inf:
            bad += 1
            continue
        if v < lo:
            lo = v
        if v > hi:
            hi = v
        zeros += a == 0.0  # no branch: zeros and non-zeros alternate unpredictably after ReLU
        if a >= limit:  # outside the range (or the first non-zero value): grow the exponent
            grown = _range_exponent(a, num_bins)
            if has_exponent:
                for j in range(nsub):
                    for k in range(num_bins):
                        bins[k] += sub[j, k]
                        sub[j, k] = 0
                _coarsen(bins, grown - e)
            e, has_exponent = grown, True
            limit = math.ldexp(float(num_bins), e)
            s1, s2 = _scales(e)
        sub[i & (nsub - 1), np.int64(a * s1 * s2)] += 1
    for j in range(nsub):
        for k in range(num_bins):
            bins[k] += sub[j, k]
    return e, has_exponent, lo, hi, zeros, bad


def bin_values(values: np.ndarray, num_bins: int, exponent: int | None):
    """Run the kernel on the flat float32/float64 array `values`.

    Returns:
        (exponent or None, bins int64[num_bins], lo, hi, zeros, nonfinite count).
    """
    values = np.ascontiguousarray(values)
    bins = np.zeros(num_bins, dtype=np.int64)
    sub = np.zeros((_SUBHISTS, num_bins), dtype=np.int64)
    e, has, lo, hi, zeros, bad = _bin_values(values, num_bins, 0 if exponent is None else exponent,
                                         exponent is not None, bins, sub)
    return (int(e) if has else None), bins, float(lo), float(hi), int(zeros), int(bad)


# channels.py's log2 bins: bin k holds the binary exponent k + _EXP_MIN (np.frexp's), clipped to the ends.
_EXP_MIN, _LOG_BINS = -24, 64
_FLOAT32_BIAS = 126  # np.frexp's exponent of a normal float32 is its biased exponent field minus 126


@_jit
def _channel_counts(bits, absbits, log_bins):
    """channels.ChannelObserver's update of the float32 batch whose bit patterns are `bits` (uint32 [rows,
    channels]): max |x| of each channel as bit patterns into `absbits` (uint32 [channels], zeroed) and the
    counts of each binary exponent into `log_bins` (int64 [_LOG_BINS, channels], zeroed, bin-major so that
    neighbouring channels count into neighbouring memory). Returns the number of NaN/Inf values.

    Integers only: for finite floats of one sign the bit patterns sort as the values do, and the exponent
    field gives np.frexp's exponent; zeros and denormals (exponent field 0, frexp exponent below -125)
    clip to bin 0, as in the numpy path (which puts zeros there explicitly).
    """
    bad = 0
    for i in range(bits.shape[0]):
        for j in range(bits.shape[1]):
            a = bits[i, j] & np.uint32(0x7FFFFFFF)
            field = np.int64(a >> np.uint32(23))
            if field == 255:
                bad += 1
                continue
            if a > absbits[j]:
                absbits[j] = a
            k = min(max(field - _FLOAT32_BIAS - _EXP_MIN, 0), _LOG_BINS - 1)  # no branch for zeros: they clip
            log_bins[k, j] += 1
    return bad


def channel_counts(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Run the per-channel kernel on the float32 matrix `rows` [values, channels].

    Returns:
        (max |x| per channel as float64, int64 [channels, _LOG_BINS] exponent counts, NaN/Inf count).
    """
    bits = np.ascontiguousarray(rows).view(np.uint32)
    absbits = np.zeros(bits.shape[1], dtype=np.uint32)
    log_bins = np.zeros((_LOG_BINS, bits.shape[1]), dtype=np.int64)
    bad = _channel_counts(bits, absbits, log_bins)
    return absbits.view(np.float32).astype(np.float64), np.ascontiguousarray(log_bins.T), int(bad)
