"""`auto`: per tensor, the range algorithm whose amax gives the least expected INT8 error.

Every candidate (minmax, entropy, percentile, mse) reads the same |x| histogram, and
`estimate_error` (mse.py's exact error model: rounding inside the range, clipping beyond
it) scores any amax on that histogram, so one calibration pass ranks all methods for
every tensor without running the model again.

How the winner is picked: the candidates whose error is within `tolerance` (relative) of
the least error are near-equal, and among those the one with the *largest* amax wins.
Clipping less costs almost nothing on the calibration data in that case and is safer on
data the calibration did not see, where values beyond the calibrated range are clipped.

Default tolerance 2 % (0.09 dB of SQNR): for uniform data the error-optimal range is
0.8 % better than max|x| in theory, so minmax should win there, and sampling noise moves
that gap by about half a percent.

What squared error implies for outliers: clipping a value v to amax costs (v - amax)**2,
so a single huge value is clipped only if it is rare enough. With n standard normal values
and one value M >> 1, keeping it (amax = M) rounds the bulk to 0 at a cost of ~1 per
value, clipping it costs ~M**2 / n per value: for M = 1000 it is clipped when n > 10**6.

Note: the `mse` method minimizes this very error over the histogram's bin edges, so it
always has (up to its grid, about one bin width) the least error. `auto` therefore
differs from `mse` only where a candidate with a larger amax is within the tolerance
(e.g. minmax on a tensor without outliers), or where percentile's threshold, which is
interpolated between edges, is slightly better. Its value is in that tie-break and in
the per-tensor table of what every method would have cost (`choose_methods`), which the
report shows.

    choice = choose_method(stats)
    choice.method, choice.amax, choice.errors["minmax"] / choice.errors[choice.method]
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from trtq.calibrators import algorithms
from trtq.calibrators.stats import TensorStats

# Histogram methods auto compares; ema is left out: it depends on batching and has no histogram error.
AUTO_CANDIDATES = ("minmax", "entropy", "percentile", "mse")
DEFAULT_TOLERANCE = 0.02
_CANDIDATES = {"minmax": algorithms.minmax, "entropy": algorithms.entropy, "percentile": algorithms.percentile,
               "mse": algorithms.mse}


@dataclass(frozen=True)
class MethodChoice:
    """What `auto` chose for one tensor and what every candidate would have cost.

    Attributes:
        method: the chosen candidate.
        amax: its amax (tensor units).
        errors: candidate -> expected mean squared INT8 error (tensor units squared).
        amaxes: candidate -> amax.
    """

    method: str
    amax: float
    errors: dict[str, float]
    amaxes: dict[str, float]

    def relative_errors(self) -> dict[str, float]:
        """candidate -> its error / the chosen method's error (1.0 where both are 0, inf where only it is)."""
        best = self.errors[self.method]
        return {m: (e / best if best > 0 else (1.0 if e == 0 else math.inf)) for m, e in self.errors.items()}

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "amax": self.amax, "errors": dict(self.errors), "amaxes": dict(self.amaxes)}


def choose_method(stats: TensorStats, *, percentile: float = 99.99, tolerance: float = DEFAULT_TOLERANCE,
                  candidates: Sequence[str] = AUTO_CANDIDATES) -> MethodChoice:
    """Score every candidate's amax on the tensor's histogram and pick one (see the module docstring).

    Args:
        stats: the tensor's statistics.
        percentile: parameter of the percentile candidate.
        tolerance: relative error margin within which candidates count as equal (>= 0).
        candidates: histogram methods to compare, in order of preference among exact ties.

    Returns:
        The choice; all-zero or empty statistics give the first candidate with amax 0.0.

    Raises:
        ValueError: an unknown or non-histogram candidate, no candidate, or a bad tolerance/percentile.
    """
    _check(tolerance, candidates)
    amaxes = {m: float(_CANDIDATES[m](stats, **({"percentile": percentile} if m == "percentile" else {})))
              for m in candidates}
    errors = {m: algorithms.estimate_error(a, stats.hist) for m, a in amaxes.items()}
    best = min(errors.values())
    near = [m for m in candidates if errors[m] <= best * (1.0 + tolerance)]
    method = max(near, key=lambda m: amaxes[m])  # max() keeps the first of equal amaxes
    return MethodChoice(method, amaxes[method], errors, amaxes)


def auto(stats: TensorStats, *, percentile: float = 99.99, tolerance: float = 0.02) -> float:
    """Per tensor, the amax of the histogram method with the least expected error (see auto.py).

    Args:
        percentile: parameter of the percentile candidate.
        tolerance: candidates within this relative error of the best count as equal; the
            largest amax among them wins (clip no more than the error justifies).
    """
    return choose_method(stats, percentile=percentile, tolerance=tolerance).amax


def choose_methods(stats: Mapping[str, TensorStats], *, percentile: float = 99.99,
                   tolerance: float = DEFAULT_TOLERANCE,
                   candidates: Sequence[str] = AUTO_CANDIDATES) -> dict[str, MethodChoice]:
    """`choose_method` for every tensor, in the mapping's order (for the report)."""
    return {name: choose_method(s, percentile=percentile, tolerance=tolerance, candidates=candidates)
            for name, s in stats.items()}


def method_counts(choices: Mapping[str, MethodChoice]) -> dict[str, int]:
    """How many tensors each method won, most frequent first."""
    counts: dict[str, int] = {}
    for choice in choices.values():
        counts[choice.method] = counts.get(choice.method, 0) + 1
    return dict(sorted(counts.items(), key=lambda item: -item[1]))


def _check(tolerance: float, candidates: Sequence[str]) -> None:
    if not (isinstance(tolerance, int | float) and math.isfinite(tolerance) and tolerance >= 0):
        raise ValueError(f"tolerance must be a finite number >= 0, got {tolerance!r}")
    if not candidates:
        raise ValueError("auto needs at least one candidate method")
    for m in candidates:
        if m not in AUTO_CANDIDATES:
            raise ValueError(f"auto cannot compare method '{m}' (valid: {', '.join(AUTO_CANDIDATES)})")
