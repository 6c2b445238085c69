"""Expected squared error of symmetric INT8 quantization, computed from an |x| histogram.

Quantizing v with range amax (scale s = amax / 127) gives s * clip(round(v / s), -127, 127).
Its error is the rounding error (v - s * round(v / s))**2 for |v| <= amax and the
clipping error (|v| - amax)**2 beyond (the two agree on [amax, amax + s/2]).

The histogram is read as: exact zeros are a point mass with no error; the other
values are spread uniformly inside their bin; the last non-empty bin ends at the
exact max |x| (not at its bin edge), so no mass is invented above the max. Under
that model the expected error is exact, not sampled at bin centres: the integral
of the rounding error has a closed form (see `_rounding_integral`), and so has
the clipping error. pytorch-quantization's `_compute_amax_mse` instead rounds bin
centres, which is biased when bins and quantization steps are of similar width.
"""

from __future__ import annotations

import numpy as np

from trtq.calibrators.histogram import HistogramObserver

INT8_MAX = 127
# Candidate rows evaluated at once: bounds temporaries to a few MB for 2048 bins.
_ROWS = 256
# Candidates per block of the fast path: small blocks stay in cache and skip most columns k >= i.
_BLOCK = 32


def value_bins(hist: HistogramObserver) -> tuple[np.ndarray, np.ndarray]:
    """(counts, edges) of the non-zero values: bins up to the last non-empty one.

    counts[0] excludes exact zeros; edges has len(counts) + 1 entries and its last
    one is the exact max |x|. Both are empty when there is no non-zero value.
    """
    counts = hist.bins.astype(np.float64)
    counts[0] -= hist.zero_count
    occupied = np.flatnonzero(counts)
    if occupied.size == 0:
        return np.zeros(0), np.zeros(0)
    n = int(occupied[-1]) + 1
    edges = np.arange(n + 1, dtype=np.float64) * hist.bin_width
    edges[n] = hist.amax
    return counts[:n], edges


def expected_mse(hist: HistogramObserver, amaxes: np.ndarray | float) -> np.ndarray:
    """Mean squared INT8 quantization error over all values seen, for each amax.

    Args:
        hist: the tensor's histogram.
        amaxes: candidate ranges (>= 0), same units as the values.

    Returns:
        float64 array, one mean squared error (units of x squared) per amax; zeros if no data.
    """
    amaxes = np.atleast_1d(np.asarray(amaxes, dtype=np.float64))
    counts, edges = value_bins(hist)
    out = np.zeros(len(amaxes))
    if counts.size == 0:
        return out
    for start in range(0, len(amaxes), _ROWS):
        out[start : start + _ROWS] = _error_sums(counts, edges, amaxes[start : start + _ROWS])
    return out / hist.count


def _error_sums(counts: np.ndarray, edges: np.ndarray, amax: np.ndarray) -> np.ndarray:
    a = amax[:, None]
    s = np.where(a > 0, a / INT8_MAX, 1.0)  # amax 0: nothing is inside, the scale is unused
    rounding = s**3 * np.diff(_rounding_integral(np.minimum(edges, a) / s), axis=1)
    clipping = np.diff((np.maximum(edges, a) - a) ** 3, axis=1) / 3.0
    width = np.diff(edges)
    flat = width > 0
    per_bin = np.empty((len(amax), len(counts)))
    per_bin[:, flat] = (rounding[:, flat] + clipping[:, flat]) / width[flat]
    # A zero-width bin (the max sits on its lower edge) is a point mass at that edge.
    v = edges[:-1][~flat]
    inside = s * np.round(v / s)
    per_bin[:, ~flat] = np.where(v <= a, (v - inside) ** 2, (v - a) ** 2)
    sums: np.ndarray = per_bin @ counts
    return sums


def _rounding_integral(u: np.ndarray) -> np.ndarray:
    """Integral of (t - round(t))**2 dt from 0 to u, for u >= 0.

    Each unit interval centred on an integer contributes 1/12, and the part from
    round(u) to u adds (u - round(u))**3 / 3; the formula is continuous at half
    integers, so the tie rule of np.rint does not matter.
    """
    whole = np.rint(u)
    frac = u - whole
    integral: np.ndarray = whole / 12.0 + frac * frac * frac / 3.0
    return integral


def edge_errors(counts: np.ndarray, edges: np.ndarray, start: int) -> np.ndarray:
    """Summed squared errors (not divided by the count) for amax = edges[i], i in [start, len(counts)).

    The fast path of `_error_sums` for candidates on regular bin edges, where bins
    below i are wholly inside the range and bins from i on are wholly clipped:
    - clipping: sum_{k>=i} h_k E[(v - a)**2] with E[v] and E[v**2] of a uniform bin,
      i.e. three suffix sums, O(n) for all candidates;
    - rounding: s**3 / w * sum_{k<i} h_k (g(u_{k+1}) - g(u_k)), u_k = 127 k / i, which by
      summation by parts is s**3 / w * (g(127) h_{i-1} + sum_{0<k<i} g(u_k) (h_{k-1} - h_k)),
      evaluated for blocks of candidates over columns k < i only.
    """
    n = len(counts)
    lo, hi = edges[:-1], edges[1:]
    first = np.arange(start, n)
    a = edges[first]
    tail0, tail1, tail2 = (_suffix_sums(counts * m) for m in (1.0, lo + hi, (hi * hi + hi * lo + lo * lo) / 3.0))
    clipping = tail2[first] - a * tail1[first] + a * a * tail0[first]

    steps = np.concatenate(([0.0], counts[:-1] - counts[1:]))  # h_{k-1} - h_k
    k = np.arange(n, dtype=np.float64)
    rounding = (INT8_MAX / 12.0) * counts[first - 1]
    for block in range(0, len(first), _BLOCK):
        i = first[block : block + _BLOCK]
        m = int(i[-1])
        g = _rounding_integral(k[None, :m] * (INT8_MAX / i[:, None]))
        g[k[None, :m] >= i[:, None]] = 0.0
        rounding[block : block + _BLOCK] += g @ steps[:m]
    width = edges[1] - edges[0]
    rounding *= width * width * (first / INT8_MAX) ** 3
    total: np.ndarray = clipping + rounding
    return total


def _suffix_sums(v: np.ndarray) -> np.ndarray:
    return np.concatenate((np.cumsum(v[::-1])[::-1], [0.0]))


def mse_amax(hist: HistogramObserver, start_bin: int = 128) -> float:
    """The amax minimizing `expected_mse`, searched over bin edges start_bin.. and the exact max.

    Returns 0.0 when there is no non-zero value.
    """
    counts, edges = value_bins(hist)
    if counts.size == 0:
        return 0.0
    start = max(1, min(start_bin, len(counts)))
    # Regular edges through the fast path; the exact max (last, possibly short bin) through the general one.
    errors = np.concatenate((edge_errors(counts, edges, start) / hist.count, expected_mse(hist, edges[-1])))
    return float(edges[start + int(np.argmin(errors))])
