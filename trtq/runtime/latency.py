"""Timing one inference call: warm-up, then a fixed number of runs or a time budget.

    stats = time_runs(lambda: session.run(None, feed), warmup=10, runs=100, batch=8)
    stats.median_ms, stats.p90_ms, stats.p99_ms, stats.throughput

Each run is timed alone with time.perf_counter_ns (wall clock, as a caller of the model sees it).
Percentiles use numpy's linear interpolation; with fewer than 100 runs p99 is close to the maximum,
so the result carries the run count. Throughput is samples per second at the median latency
(batch / median), the number a steady serving loop gets; the mean is kept as well.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from trtq.errors import ConfigError


@dataclass(frozen=True)
class LatencyStats:
    """Latency of one (model, backend, batch size) in milliseconds, and its throughput in samples/s."""

    batch: int
    runs: int
    warmup: int
    median_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    min_ms: float
    max_ms: float
    seconds: float  # wall time of the timed runs

    @property
    def throughput(self) -> float:
        """Samples per second at the median latency."""
        return self.batch / (self.median_ms / 1e3) if self.median_ms > 0 else float("inf")

    def to_dict(self) -> dict[str, Any]:
        return {"batch": self.batch, "runs": self.runs, "warmup": self.warmup,
                "median_ms": round(self.median_ms, 6), "p90_ms": round(self.p90_ms, 6),
                "p99_ms": round(self.p99_ms, 6), "mean_ms": round(self.mean_ms, 6), "min_ms": round(self.min_ms, 6),
                "max_ms": round(self.max_ms, 6), "throughput": round(self.throughput, 3),
                "seconds": round(self.seconds, 3)}


def check_budget(warmup: int, runs: int | None, seconds: float | None) -> None:
    """Raise ConfigError unless warmup >= 0 and exactly one positive budget (runs or seconds) is set."""
    if warmup < 0:
        raise ConfigError(f"--warmup must be >= 0, got {warmup}")
    if (runs is None) == (seconds is None):
        raise ConfigError("give either --runs N or --seconds S", hint="e.g. --runs 100, or --seconds 5")
    if runs is not None and runs < 1:
        raise ConfigError(f"--runs must be >= 1, got {runs}")
    if seconds is not None and not seconds > 0:
        raise ConfigError(f"--seconds must be > 0, got {seconds}")


def time_runs(call: Callable[[], Any], *, batch: int, warmup: int = 10, runs: int | None = 100,
              seconds: float | None = None, min_runs: int = 3) -> LatencyStats:
    """Call `call` `warmup` times untimed, then time `runs` calls, or as many as fit in `seconds`.

    Args:
        call: one inference (its result is dropped).
        batch: samples per call, for the throughput.
        warmup: untimed calls first (session and allocator warm-up, TensorRT's lazy init).
        runs: a fixed number of timed calls; None with `seconds`.
        seconds: a time budget for the timed calls; at least `min_runs` run whatever it says.
        min_runs: fewest timed calls under a time budget.

    Raises:
        ConfigError: see check_budget.
    """
    check_budget(warmup, runs, seconds)
    for _ in range(warmup):
        call()
    times: list[int] = []
    start = time.perf_counter_ns()
    deadline = start + int(seconds * 1e9) if seconds is not None else None
    while True:
        t0 = time.perf_counter_ns()
        call()
        t1 = time.perf_counter_ns()
        times.append(t1 - t0)
        if runs is not None and len(times) >= runs:
            break
        if deadline is not None and t1 >= deadline and len(times) >= min_runs:
            break
    ms = np.asarray(times, dtype=np.float64) / 1e6
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return LatencyStats(batch, len(times), warmup, float(p50), float(p90), float(p99), float(ms.mean()),
                        float(ms.min()), float(ms.max()), (time.perf_counter_ns() - start) / 1e9)
