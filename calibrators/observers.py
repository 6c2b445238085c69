"""Streaming statistics observers: the Observer protocol, min/max observers and NaN/Inf helpers.

An observer sees one batch of a tensor at a time (`update`), keeps a summary
whose size does not grow with the number of samples, can absorb another
observer of the same kind (`merge`), and round-trips through a dict of numpy
arrays and scalars (`to_dict`/`from_dict`) so that sets of observers can be
stored in one .npz file (see storage.py).

Observers refuse NaN/Inf with a ValueError: the caller decides whether such
values are an error or are dropped (`count_nonfinite`, `finite_values`).
"""

from __future__ import annotations

from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np

Scalar = float | int | str
ObserverDict = dict[str, np.ndarray | Scalar]


@runtime_checkable
class Observer(Protocol):
    """What every observer offers; `kind` names it in serialized dicts."""

    kind: ClassVar[str]

    @property
    def count(self) -> int:
        """Number of values seen."""
        ...

    def update(self, x: np.ndarray) -> None:
        """Add the values of one batch (any shape); ValueError if any is NaN/Inf."""
        ...

    def merge(self, other: Any) -> None:
        """Absorb `other` in place; ValueError unless it has the same type and settings."""
        ...

    def to_dict(self) -> ObserverDict:
        """The state as numpy arrays and scalars, including a 'type' entry equal to `kind`."""
        ...

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Any:
        """Rebuild an observer from `to_dict()` output (0-d arrays are accepted for scalars)."""
        ...


def count_nonfinite(x: np.ndarray) -> int:
    """Number of NaN and ±Inf elements of `x` (0 for integer and boolean arrays)."""
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.inexact):
        return 0
    return int(x.size - np.count_nonzero(np.isfinite(x)))


def finite_values(x: np.ndarray) -> np.ndarray:
    """The finite elements of `x` as a 1-D array (a flattened view's copy)."""
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.inexact):
        return x.reshape(-1)
    finite: np.ndarray = x[np.isfinite(x)]
    return finite


def as_values(x: np.ndarray) -> np.ndarray:
    """`x` as a real floating-point array that observers can bin exactly.

    float32/float64 pass through; float16 is widened to float32 (exact);
    integers and booleans become float64.

    Raises:
        ValueError: `x` is complex or not numeric.
    """
    x = np.asarray(x)
    if x.dtype in (np.float32, np.float64):
        return x
    if x.dtype == np.float16:
        return x.astype(np.float32)
    if np.issubdtype(x.dtype, np.integer) or x.dtype == np.bool_:
        return x.astype(np.float64)
    raise ValueError(f"observers need real numbers, got an array of dtype {x.dtype}")


def batch_range(x: np.ndarray) -> tuple[float, float]:
    """Exact (min, max) of a non-empty float array.

    Raises:
        ValueError: `x` holds NaN or ±Inf (NaN propagates through min/max, so this costs no extra pass).
    """
    lo, hi = float(x.min()), float(x.max())
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise_nonfinite(count_nonfinite(x))
    return lo, hi


def raise_nonfinite(count: int) -> None:
    """The ValueError observers raise for `count` NaN/Inf values."""
    raise ValueError(f"observers accept finite values only, got {count} NaN/Inf; "
                     "filter them with finite_values() first")


def require_same(kind: str, mine: dict[str, Any], theirs: dict[str, Any]) -> None:
    """Raise ValueError if two observers' settings differ."""
    if mine != theirs:
        raise ValueError(f"cannot merge {kind} observers with different settings: {mine} vs {theirs}")


def check_type(d: dict[str, Any], kind: str) -> None:
    """Raise ValueError unless the serialized dict `d` is of type `kind`."""
    found = str(d.get("type", ""))
    if found != kind:
        raise ValueError(f"expected a serialized '{kind}' observer, got type '{found}'")


class MinMaxObserver:
    """Global min and max of every value seen (exact, order independent)."""

    kind: ClassVar[str] = "minmax"

    def __init__(self) -> None:
        self.min = float("inf")
        self.max = float("-inf")
        self._count = 0

    @property
    def count(self) -> int:
        return self._count

    @property
    def amax(self) -> float:
        """Symmetric range max(|min|, |max|); 0.0 before any value."""
        return max(-self.min, self.max) if self._count else 0.0

    def update(self, x: np.ndarray) -> None:
        x = as_values(x)
        if x.size == 0:
            return
        lo, hi = batch_range(x)
        self.min, self.max = min(self.min, lo), max(self.max, hi)
        self._count += int(x.size)

    def merge(self, other: MinMaxObserver) -> None:
        if type(other) is not MinMaxObserver:
            raise ValueError(f"cannot merge a {type(other).__name__} into a MinMaxObserver")
        self.min, self.max = min(self.min, other.min), max(self.max, other.max)
        self._count += other.count

    def to_dict(self) -> ObserverDict:
        return {"type": self.kind, "min": self.min, "max": self.max, "count": self._count}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MinMaxObserver:
        check_type(d, cls.kind)
        obs = cls()
        obs.min, obs.max, obs._count = float(d["min"]), float(d["max"]), int(d["count"])
        return obs


class EmaMinMaxObserver:
    """Moving average of each sample's min and max.

    A sample is a row of the first (batch) axis. The first sample sets the
    averages; every later one moves them by avg = (1 - c) * avg + c * sample_stat.
    ONNX Runtime's `MinMaxCalibrater(moving_average=True, averaging_constant=0.01)`
    and torch.ao's `MovingAverageMinMaxObserver` take one step per *batch*, so their
    result depends on the batch size; this one equals theirs at batch size 1 and
    is the same for any batch size (README: the same inputs give the same cache).
    It still depends on the order of the samples. A batch's steps are applied at
    once in closed form, avg_n = (1 - c)^n avg_0 + sum_i c (1 - c)^(n - i) v_i, in
    float64, so batch sizes agree to float64 rounding (far below a float32 scale's).

    `merge` is necessarily approximate: it averages the two observers' averages
    weighted by how many values each saw. Merging is commutative but neither
    associative nor equal to having seen all batches in one observer.

    Args:
        constant: averaging constant c in (0, 1]; 1 keeps only the last batch.
    """

    kind: ClassVar[str] = "ema_minmax"

    def __init__(self, constant: float = 0.01) -> None:
        if not 0.0 < constant <= 1.0:
            raise ValueError(f"EMA constant must be in (0, 1], got {constant}")
        self.constant = float(constant)
        self.min = 0.0
        self.max = 0.0
        self._count = 0
        self.updates = 0

    @property
    def count(self) -> int:
        return self._count

    @property
    def amax(self) -> float:
        """Symmetric range max(|avg min|, |avg max|); 0.0 before any value."""
        return max(abs(self.min), abs(self.max)) if self._count else 0.0

    def update(self, x: np.ndarray) -> None:
        """One step per row of axis 0 (a 0-d array is one sample)."""
        x = as_values(x)
        if x.size == 0:
            return
        batch_range(x)  # refuses NaN/Inf before anything changes
        rows = x.reshape(x.shape[0] if x.ndim else 1, -1)
        lo, hi = rows.min(axis=1).astype(np.float64), rows.max(axis=1).astype(np.float64)
        if self.updates == 0:
            self.min, self.max = float(lo[0]), float(hi[0])
            lo, hi = lo[1:], hi[1:]
        self.min, self.max = self._steps(self.min, lo), self._steps(self.max, hi)
        self._count += int(x.size)
        self.updates += int(rows.shape[0])

    def _steps(self, avg: float, values: np.ndarray) -> float:
        """`avg` after one moving-average step per value, in closed form."""
        # One step at a time, not a closed form: the same float operations in the same order whatever
        # the batches or micro-batches the samples came in, so the result is bit-identical for any split.
        keep, c = 1.0 - self.constant, self.constant
        for value in values.tolist():
            avg = keep * avg + c * value
        return avg

    def merge(self, other: EmaMinMaxObserver) -> None:
        if type(other) is not EmaMinMaxObserver:
            raise ValueError(f"cannot merge a {type(other).__name__} into an EmaMinMaxObserver")
        require_same(self.kind, {"constant": self.constant}, {"constant": other.constant})
        if other.count == 0:
            return
        if self._count == 0:
            self.min, self.max = other.min, other.max
        else:
            total = self._count + other.count
            self.min = (self._count * self.min + other.count * other.min) / total
            self.max = (self._count * self.max + other.count * other.max) / total
        self._count += other.count
        self.updates += other.updates

    def to_dict(self) -> ObserverDict:
        return {"type": self.kind, "constant": self.constant, "min": self.min, "max": self.max,
                "count": self._count, "updates": self.updates}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EmaMinMaxObserver:
        check_type(d, cls.kind)
        obs = cls(float(d["constant"]))
        obs.min, obs.max = float(d["min"]), float(d["max"])
        obs._count, obs.updates = int(d["count"]), int(d["updates"])
        return obs
