"""TensorStats: the histogram and moving-average observers of one tensor, updated together."""

from __future__ import annotations

import numpy as np
import pytest

from trtq.calibrators.observers import Observer
from trtq.calibrators.stats import TensorStats, count_nonfinite, finite_values


def test_update_feeds_both_observers():
    stats = TensorStats(num_bins=256, ema_constant=0.5)
    stats.update(np.array([-1.0, 0.0, 2.0], dtype=np.float32))
    stats.update(np.array([4.0]))
    assert isinstance(stats, Observer)
    assert stats.count == stats.hist.count == stats.ema.count == 4
    assert stats.hist.amax == 4.0 and stats.hist.zero_count == 1
    assert stats.ema.max == pytest.approx(0.5 * 2.0 + 0.5 * 4.0)


def test_ema_can_be_disabled_and_then_does_not_merge_with_ema():
    plain = TensorStats(ema_constant=None)
    plain.update(np.ones(3))
    assert plain.ema is None
    with pytest.raises(ValueError, match="moving-average"):
        plain.merge(TensorStats())
    with pytest.raises(ValueError, match="different settings"):
        TensorStats(num_bins=128).merge(TensorStats(num_bins=256))


def test_nonfinite_batch_changes_nothing():
    stats = TensorStats()
    stats.update(np.array([1.0, -1.0]))
    with pytest.raises(ValueError, match="finite"):
        stats.update(np.array([3.0, np.inf]))
    assert stats.count == stats.ema.count == 2 and stats.ema.max == 1.0
    x = np.array([3.0, np.inf, np.nan, -5.0])
    assert count_nonfinite(x) == 2
    stats.update(finite_values(x))
    assert stats.hist.amax == 5.0


def test_merge_and_dict_round_trip():
    rng = np.random.default_rng(0)
    a, b = TensorStats(), TensorStats()
    a.update(rng.standard_normal(1000))
    b.update(rng.standard_normal(500) * 3.0)
    a.merge(b)
    assert a.count == 1500 and a.ema.count == 1500
    again = TensorStats.from_dict(a.to_dict())
    np.testing.assert_array_equal(again.hist.bins, a.hist.bins)
    assert again.hist.exponent == a.hist.exponent
    assert again.ema.to_dict() == a.ema.to_dict()
    no_ema = TensorStats.from_dict(TensorStats(ema_constant=None).to_dict())
    assert no_ema.ema is None
