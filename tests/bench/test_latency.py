"""time_runs: warm-up, a run count or a time budget, and percentiles of what was really timed."""

from __future__ import annotations

import time

import pytest

from trtq.errors import ConfigError
from trtq.runtime.latency import time_runs


def test_runs_are_counted_and_the_percentiles_come_from_the_timed_calls():
    calls = []
    delays = iter([0.0] * 3 + [0.002] * 18 + [0.02, 0.02])  # 3 warm-up calls, then 20 timed calls

    def call():
        calls.append(1)
        time.sleep(next(delays))

    stats = time_runs(call, batch=4, warmup=3, runs=20)
    assert len(calls) == 23 and stats.runs == 20 and stats.warmup == 3
    assert 2.0 <= stats.median_ms < 15.0  # 18 of the 20 timed calls slept 2 ms
    assert stats.min_ms >= 2.0 and stats.max_ms >= 20.0
    assert stats.median_ms <= stats.p90_ms <= stats.p99_ms <= stats.max_ms
    assert stats.p99_ms >= 19.0  # the two 20 ms calls are the top 10 %
    assert stats.throughput == pytest.approx(4 / (stats.median_ms / 1e3))
    assert set(stats.to_dict()) >= {"median_ms", "p90_ms", "p99_ms", "throughput", "runs", "batch"}


def test_a_time_budget_stops_after_it_is_spent():
    stats = time_runs(lambda: time.sleep(0.005), batch=1, warmup=0, runs=None, seconds=0.1)
    assert 5 <= stats.runs <= 25 and stats.seconds >= 0.1


@pytest.mark.parametrize("kwargs", [dict(runs=None, seconds=None), dict(runs=5, seconds=1.0), dict(runs=0),
                                    dict(runs=None, seconds=0.0), dict(warmup=-1)])
def test_bad_budgets_are_config_errors(kwargs):
    with pytest.raises(ConfigError):
        time_runs(lambda: None, batch=1, **{"warmup": 0, "runs": 5, **kwargs})
