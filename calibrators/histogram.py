"""Histogram of |x| with power-of-two bin widths: exact, mergeable, independent of batching.

The histogram covers [0, num_bins * 2**e) with an integer exponent e, so the bin
width is 2**e and the bin of a value is floor(|x| * 2**-e). Scaling by a power
of two is exact in binary floating point, so every element lands in the same
bin whatever batch it arrives in. When a value exceeds the range, e grows by d
and bin k becomes bin k >> d (adjacent bins are summed), which is exactly the
binning the larger e would have given. The exponent is always the smallest
that covers the largest |x| seen, so the final histogram is a function of the
multiset of values only: batch size, chunking and merge order do not change it
(ONNX Runtime's and ModelOpt's histograms fix their edges on the first batch
and do depend on them; see PEERS.md). A consequence: the last non-empty bin
is always in the upper half of the bins (at least num_bins/2 bins are used).

TensorRT also grows its histogram range by powers of two (TENSORRT.md §5 [4]).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from trtq.calibrators.observers import ObserverDict, as_values, batch_range, check_type, require_same

# Elements binned per step: the chunk and its temporaries (~1 MB for float32) stay in a
# core's L2 cache, so the several passes over each chunk cost one read of the tensor from memory.
_CHUNK = 1 << 16


def range_exponent(amax: float, num_bins: int) -> int:
    """Smallest integer e with amax < num_bins * 2**e, for amax > 0."""
    e = math.frexp(amax)[1] - (num_bins.bit_length() - 1)
    while math.ldexp(amax, -e) >= num_bins:
        e += 1
    while math.ldexp(amax, 1 - e) < num_bins:
        e -= 1
    return e


def coarsen(bins: np.ndarray, shift: int) -> np.ndarray:
    """Re-bin for an exponent larger by `shift`: old bin k goes to new bin k >> shift (exact)."""
    if shift <= 0:
        return bins
    n = len(bins)
    if shift >= n.bit_length():
        out = np.zeros_like(bins)
        out[0] = bins.sum()
        return out
    merged = np.add.reduceat(bins, np.arange(0, n, 1 << shift))
    out = np.zeros_like(bins)
    out[: len(merged)] = merged
    return out


def _scale_into(values: np.ndarray, exponent: int, out: np.ndarray) -> None:
    """out = |values| * 2**-exponent, exactly wherever the result is >= 1 (the only place it matters)."""
    np.abs(values, out=out)
    info = np.finfo(out.dtype)
    if info.minexp <= -exponent < info.maxexp:  # 2**-exponent is a normal number: multiplying is exact
        np.multiply(out, out.dtype.type(math.ldexp(1.0, -exponent)), out=out)
    else:
        np.ldexp(out, -exponent, out=out)


def _add_counts(counts: np.ndarray, chunk: np.ndarray, exponent: int, scaled: np.ndarray,
                index: np.ndarray) -> None:
    """counts[floor(|v| * 2**-exponent)] += 1 for every v of `chunk` (scaled/index: scratch of its size)."""
    _scale_into(chunk, exponent, scaled)
    np.copyto(index, scaled, casting="unsafe")  # truncation == floor for values >= 0
    np.add.at(counts, index, 1)  # in numpy 2 faster than bincount (and it needs no result array)


def bin_counts(values: np.ndarray, exponent: int, num_bins: int) -> np.ndarray:
    """Counts of floor(|v| * 2**-exponent) for the flat float array `values` (all < num_bins * 2**exponent)."""
    counts = np.zeros(num_bins, dtype=np.int64)
    size = min(_CHUNK, values.size)
    scaled = np.empty(size, dtype=values.dtype)
    index = np.empty(size, dtype=np.intp)
    for start in range(0, values.size, _CHUNK):
        chunk = values[start : start + _CHUNK]
        _add_counts(counts, chunk, exponent, scaled[: chunk.size], index[: chunk.size])
    return counts


@dataclass
class BatchHistogram:
    """One batch binned on its own: what HistogramObserver.update adds to its state.

    Attributes:
        exponent: range exponent of `bins` (None: only zeros so far).
        bins: counts per bin.
        lo, hi: exact min and max of the batch.
        zeros: number of exact zeros (and -0.0).
    """

    exponent: int | None
    bins: np.ndarray
    lo: float = float("inf")
    hi: float = float("-inf")
    zeros: int = 0


def bin_batch(values: np.ndarray, num_bins: int, exponent: int | None) -> BatchHistogram:
    """Histogram of the flat float array `values` at the smallest exponent >= `exponent` covering it.

    One pass over the data, chunk by chunk: each chunk's min/max/zeros are taken
    while it is in cache and the exponent grows (re-binning exactly) whenever a
    chunk exceeds the range, which gives the same counts as binning everything
    at the final exponent.

    Raises:
        ValueError: `values` holds NaN or ±Inf (nothing is changed anywhere).
    """
    part = BatchHistogram(exponent, np.zeros(num_bins, dtype=np.int64))
    size = min(_CHUNK, values.size)
    scaled = np.empty(size, dtype=values.dtype)
    index = np.empty(size, dtype=np.intp)
    for start in range(0, values.size, _CHUNK):
        chunk = values[start : start + _CHUNK]
        lo, hi = float(chunk.min()), float(chunk.max())
        if not (math.isfinite(lo) and math.isfinite(hi)):  # NaN propagates through min/max
            batch_range(values)  # raises with the count of NaN/Inf in the whole batch
        part.lo, part.hi = min(part.lo, lo), max(part.hi, hi)
        amax = max(-lo, hi)
        if amax > 0.0 and (part.exponent is None or math.ldexp(amax, -part.exponent) >= num_bins):
            grown = range_exponent(amax, num_bins)
            if part.exponent is not None:
                part.bins = coarsen(part.bins, grown - part.exponent)
            part.exponent = grown
        part.zeros += int(np.count_nonzero(chunk == 0))
        if part.exponent is None:  # all zeros so far: bin 0 whatever the exponent
            part.bins[0] += chunk.size
        else:
            _add_counts(part.bins, chunk, part.exponent, scaled[: chunk.size], index[: chunk.size])
    return part


class HistogramObserver:
    """Histogram of |x| over [0, num_bins * 2**exponent), plus exact min, max, count and zero count.

    Exact zeros (and -0.0) are counted in bin 0 and also in `zero_count`, so
    algorithms can treat them as the point mass they are. Before any non-zero
    value the exponent is undefined (None); all-zero data leaves it so.

    Args:
        num_bins: number of bins (>= 2); 2048 as TensorRT and pytorch-quantization.
    """

    kind: ClassVar[str] = "histogram"

    def __init__(self, num_bins: int = 2048) -> None:
        if isinstance(num_bins, bool) or not isinstance(num_bins, int | np.integer) or num_bins < 2:
            raise ValueError(f"num_bins must be an integer >= 2, got {num_bins!r}")
        self.num_bins = int(num_bins)
        self.exponent: int | None = None
        self.bins = np.zeros(self.num_bins, dtype=np.int64)
        self._count = 0
        self.zero_count = 0
        self.min = float("inf")
        self.max = float("-inf")

    @property
    def count(self) -> int:
        return self._count

    @property
    def amax(self) -> float:
        """Exact max |x| seen; 0.0 before any value."""
        return max(-self.min, self.max) if self._count else 0.0

    @property
    def bin_width(self) -> float:
        """2**exponent, or 0.0 while no non-zero value has been seen."""
        return 0.0 if self.exponent is None else math.ldexp(1.0, self.exponent)

    @property
    def edges(self) -> np.ndarray:
        """The num_bins + 1 bin edges (all 0.0 while the exponent is undefined)."""
        return np.arange(self.num_bins + 1, dtype=np.float64) * self.bin_width

    def update(self, x: np.ndarray) -> None:
        """Add every element of `x` (any shape). Raises ValueError on NaN/Inf, leaving the state unchanged."""
        values = as_values(x).reshape(-1)
        if values.size == 0:
            return
        part = bin_batch(values, self.num_bins, self.exponent)
        if part.exponent is not None:  # never below self.exponent: binning started from it
            self._grow_to(part.exponent)
        self.bins += part.bins
        self._count += int(values.size)
        self.zero_count += part.zeros
        self.min, self.max = min(self.min, part.lo), max(self.max, part.hi)

    def merge(self, other: HistogramObserver) -> None:
        """Add `other`'s counts after bringing both to the larger exponent (exact)."""
        if type(other) is not HistogramObserver:
            raise ValueError(f"cannot merge a {type(other).__name__} into a HistogramObserver")
        require_same(self.kind, {"num_bins": self.num_bins}, {"num_bins": other.num_bins})
        theirs = other.bins
        if other.exponent is not None:
            theirs = coarsen(other.bins, self._grow_to(other.exponent) - other.exponent)
        self.bins += theirs
        self._count += other.count
        self.zero_count += other.zero_count
        self.min, self.max = min(self.min, other.min), max(self.max, other.max)

    def _grow_to(self, exponent: int) -> int:
        """Raise the exponent to at least `exponent` (re-binning exactly); returns the new exponent."""
        if self.exponent is None:  # only bin 0 (zeros) can be occupied: valid at any exponent
            self.exponent = exponent
        elif exponent > self.exponent:
            self.bins = coarsen(self.bins, exponent - self.exponent)
            self.exponent = exponent
        return self.exponent

    def to_dict(self) -> ObserverDict:
        d: ObserverDict = {"type": self.kind, "num_bins": self.num_bins, "bins": self.bins.copy(),
                           "count": self._count, "zero_count": self.zero_count, "min": self.min, "max": self.max}
        if self.exponent is not None:
            d["exponent"] = self.exponent
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> HistogramObserver:
        """Rebuild from `to_dict()` output. Raises ValueError if the fields are inconsistent."""
        check_type(d, cls.kind)
        obs = cls(int(d["num_bins"]))
        bins = np.asarray(d["bins"])
        if bins.shape != (obs.num_bins,) or not np.issubdtype(bins.dtype, np.integer) or (bins < 0).any():
            raise ValueError(f"histogram bins must be {obs.num_bins} non-negative integers, "
                             f"got {bins.dtype} of shape {bins.shape}")
        obs.bins = bins.astype(np.int64)
        obs._count, obs.zero_count = int(d["count"]), int(d["zero_count"])
        obs.min, obs.max = float(d["min"]), float(d["max"])
        obs.exponent = int(d["exponent"]) if "exponent" in d else None
        obs._validate()
        return obs

    def _validate(self) -> None:
        if int(self.bins.sum()) != self._count or not 0 <= self.zero_count <= self.bins[0]:
            raise ValueError(f"histogram counts are inconsistent: bins sum {int(self.bins.sum())}, "
                             f"count {self._count}, zero count {self.zero_count}")
        amax = self.amax
        if self.exponent is None and amax > 0.0:
            raise ValueError(f"histogram has max |x| {amax} but no range exponent")
        if self.exponent is not None and math.ldexp(amax, -self.exponent) >= self.num_bins:
            raise ValueError(f"histogram max |x| {amax} lies outside its range (exponent {self.exponent})")
