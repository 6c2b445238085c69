"""TensorStats: the observers one calibrated tensor gets, updated together in one pass.

One HistogramObserver always (it serves minmax, entropy, percentile and mse,
so methods can be compared without re-running the model) and, unless disabled,
one EmaMinMaxObserver for the batch-dependent `ema` method.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from trtq.calibrators.histogram import HistogramObserver
from trtq.calibrators.observers import (
    EmaMinMaxObserver,
    ObserverDict,
    check_type,
    count_nonfinite,
    finite_values,
)

__all__ = ["TensorStats", "count_nonfinite", "finite_values"]

_HIST = "hist."
_EMA = "ema."


class TensorStats:
    """The statistics of one tensor; an Observer itself (update/merge/to_dict/from_dict/count).

    Args:
        num_bins: bins of the |x| histogram.
        ema_constant: averaging constant of the moving-average min/max, or None to skip it
            (then the `ema` method is unavailable for this tensor).
    """

    kind: ClassVar[str] = "tensor_stats"

    def __init__(self, num_bins: int = 2048, ema_constant: float | None = 0.01) -> None:
        self.hist = HistogramObserver(num_bins)
        self.ema = None if ema_constant is None else EmaMinMaxObserver(ema_constant)

    @property
    def count(self) -> int:
        """Number of values seen."""
        return self.hist.count

    def update(self, x: np.ndarray) -> None:
        """Update every observer with one batch. Raises ValueError on NaN/Inf (filter first)."""
        self.hist.update(x)  # validates x before the EMA observer changes
        if self.ema is not None:
            self.ema.update(x)

    def merge(self, other: TensorStats) -> None:
        """Merge observer by observer; ValueError if the settings differ."""
        if type(other) is not TensorStats:
            raise ValueError(f"cannot merge a {type(other).__name__} into TensorStats")
        if (self.ema is None) != (other.ema is None):
            raise ValueError("cannot merge TensorStats with and without the moving-average (ema) observer")
        self.hist.merge(other.hist)
        if self.ema is not None and other.ema is not None:
            self.ema.merge(other.ema)

    def to_dict(self) -> ObserverDict:
        d: ObserverDict = {"type": self.kind}
        d.update({_HIST + k: v for k, v in self.hist.to_dict().items()})
        if self.ema is not None:
            d.update({_EMA + k: v for k, v in self.ema.to_dict().items()})
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TensorStats:
        check_type(d, cls.kind)
        stats = cls.__new__(cls)
        stats.hist = HistogramObserver.from_dict(_strip(d, _HIST))
        ema = _strip(d, _EMA)
        stats.ema = EmaMinMaxObserver.from_dict(ema) if ema else None
        return stats


def _strip(d: dict[str, Any], prefix: str) -> dict[str, Any]:
    return {k[len(prefix):]: v for k, v in d.items() if k.startswith(prefix)}
