"""TensorStats: the observers one calibrated tensor gets, updated together in one pass.

One HistogramObserver always (it serves minmax, entropy, percentile and mse,
so methods can be compared without re-running the model), unless disabled,
one EmaMinMaxObserver for the batch-dependent `ema` method, and, when asked for
(the activation inputs of MatMul/Gemm), one ChannelObserver for SmoothQuant.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from trtq.calibrators.channels import ChannelObserver
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
_CHANNELS = "chan."


class TensorStats:
    """The statistics of one tensor; an Observer itself (update/merge/to_dict/from_dict/count).

    Args:
        num_bins: bins of the |x| histogram.
        ema_constant: averaging constant of the moving-average min/max, or None to skip it
            (then the `ema` method is unavailable for this tensor).
        channels: also keep per-channel statistics of the last axis (ChannelObserver).
    """

    kind: ClassVar[str] = "tensor_stats"

    def __init__(self, num_bins: int = 2048, ema_constant: float | None = 0.01, channels: bool = False) -> None:
        self.hist = HistogramObserver(num_bins)
        self.ema = None if ema_constant is None else EmaMinMaxObserver(ema_constant)
        self.channels = ChannelObserver() if channels else None

    @property
    def count(self) -> int:
        """Number of values seen."""
        return self.hist.count

    def update(self, x: np.ndarray) -> None:
        """Update every observer with one batch. Raises ValueError on NaN/Inf (filter first).

        A batch may come in parts (micro-batches): no observer depends on the split, the histogram
        by construction and the moving average because it takes one step per sample, not per batch.
        """
        self.hist.update_with_range(x)  # validates x before the EMA observer changes
        if self.ema is not None:
            self.ema.update(x)
        if self.channels is not None and np.ndim(x) >= 2:  # a flattened (NaN-filtered) batch has no channels
            self.channels.update(x)

    def merge(self, other: TensorStats) -> None:
        """Merge observer by observer; ValueError if the settings differ."""
        if type(other) is not TensorStats:
            raise ValueError(f"cannot merge a {type(other).__name__} into TensorStats")
        if (self.ema is None) != (other.ema is None):
            raise ValueError("cannot merge TensorStats with and without the moving-average (ema) observer")
        if (self.channels is None) != (other.channels is None):
            raise ValueError("cannot merge TensorStats with and without per-channel statistics")
        self.hist.merge(other.hist)
        if self.ema is not None and other.ema is not None:
            self.ema.merge(other.ema)
        if self.channels is not None and other.channels is not None:
            self.channels.merge(other.channels)

    def to_dict(self) -> ObserverDict:
        d: ObserverDict = {"type": self.kind}
        d.update({_HIST + k: v for k, v in self.hist.to_dict().items()})
        if self.ema is not None:
            d.update({_EMA + k: v for k, v in self.ema.to_dict().items()})
        if self.channels is not None:
            d.update({_CHANNELS + k: v for k, v in self.channels.to_dict().items()})
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TensorStats:
        check_type(d, cls.kind)
        stats = cls.__new__(cls)
        stats.hist = HistogramObserver.from_dict(_strip(d, _HIST))
        ema = _strip(d, _EMA)
        stats.ema = EmaMinMaxObserver.from_dict(ema) if ema else None
        channels = _strip(d, _CHANNELS)
        stats.channels = ChannelObserver.from_dict(channels) if channels else None
        return stats


def _strip(d: dict[str, Any], prefix: str) -> dict[str, Any]:
    return {k[len(prefix):]: v for k, v in d.items() if k.startswith(prefix)}
