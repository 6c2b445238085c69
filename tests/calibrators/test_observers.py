"""MinMax and moving-average observers, NaN/Inf helpers."""

from __future__ import annotations

import numpy as np
import pytest

from trtq.calibrators.observers import (
    EmaMinMaxObserver,
    MinMaxObserver,
    Observer,
    as_values,
    count_nonfinite,
    finite_values,
)


def test_minmax_tracks_exact_global_extremes_across_batches():
    rng = np.random.default_rng(0)
    batches = [rng.normal(loc, 1.0, size=(4, 5)).astype(np.float32) for loc in (-3.0, 0.0, 5.0)]
    obs = MinMaxObserver()
    for b in batches:
        obs.update(b)
    every = np.concatenate([b.ravel() for b in batches])
    assert obs.min == float(every.min()) and obs.max == float(every.max())
    assert obs.count == every.size
    assert obs.amax == float(np.abs(every).max())


def test_minmax_merge_equals_one_observer_and_empty_gives_zero_amax():
    a, b, both = MinMaxObserver(), MinMaxObserver(), MinMaxObserver()
    a.update(np.array([-2.0, 1.0]))
    b.update(np.array([0.5, 3.0, 4.0]))
    both.update(np.array([-2.0, 1.0, 0.5, 3.0, 4.0]))
    a.merge(b)
    assert (a.min, a.max, a.count) == (both.min, both.max, both.count) == (-2.0, 4.0, 5)
    assert MinMaxObserver().amax == 0.0
    with pytest.raises(ValueError, match="EmaMinMaxObserver"):
        a.merge(EmaMinMaxObserver())


def test_ema_first_batch_sets_then_moves_by_the_constant():
    obs = EmaMinMaxObserver(constant=0.25)
    obs.update(np.array([-1.0, 2.0]))
    assert (obs.min, obs.max) == (-1.0, 2.0)
    obs.update(np.array([-5.0, 6.0, 0.0]))
    # avg = 0.75 * avg + 0.25 * batch
    assert obs.min == pytest.approx(0.75 * -1.0 + 0.25 * -5.0)
    assert obs.max == pytest.approx(0.75 * 2.0 + 0.25 * 6.0)
    assert obs.amax == pytest.approx(3.0)
    assert (obs.count, obs.updates) == (5, 2)


def test_ema_merge_weights_by_value_counts_and_checks_the_constant():
    a, b = EmaMinMaxObserver(0.1), EmaMinMaxObserver(0.1)
    a.update(np.full(30, 3.0))
    b.update(np.array([-1.0] * 10))
    a.merge(b)
    assert a.max == pytest.approx((30 * 3.0 + 10 * -1.0) / 40)
    assert a.min == pytest.approx((30 * 3.0 + 10 * -1.0) / 40)
    assert (a.count, a.updates) == (40, 2)
    empty = EmaMinMaxObserver(0.1)
    empty.merge(a)
    assert (empty.min, empty.max, empty.count) == (a.min, a.max, a.count)
    with pytest.raises(ValueError, match="different settings"):
        a.merge(EmaMinMaxObserver(0.2))
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        EmaMinMaxObserver(0.0)


@pytest.mark.parametrize("cls", [MinMaxObserver, EmaMinMaxObserver])
def test_observers_reject_nonfinite_values_and_stay_unchanged(cls):
    obs = cls()
    obs.update(np.array([1.0, -2.0]))
    before = obs.to_dict()
    for bad in (np.nan, np.inf, -np.inf):
        with pytest.raises(ValueError, match="finite"):
            obs.update(np.array([0.5, bad], dtype=np.float32))
    assert obs.to_dict() == before


@pytest.mark.parametrize("cls", [MinMaxObserver, EmaMinMaxObserver])
def test_dict_round_trip_and_protocol(cls):
    obs = cls()
    obs.update(np.arange(-3, 7, dtype=np.int32))
    assert isinstance(obs, Observer)
    again = cls.from_dict(obs.to_dict())
    assert again.to_dict() == obs.to_dict()
    assert all(isinstance(v, float | int | str) for v in obs.to_dict().values())
    with pytest.raises(ValueError, match="expected a serialized"):
        cls.from_dict({**obs.to_dict(), "type": "histogram"})


def test_empty_batches_are_ignored():
    for obs in (MinMaxObserver(), EmaMinMaxObserver()):
        obs.update(np.zeros((0, 3), dtype=np.float32))
        assert obs.count == 0 and obs.amax == 0.0


def test_count_nonfinite_and_finite_values():
    x = np.array([[1.0, np.nan, -np.inf], [np.inf, 0.0, -2.5]], dtype=np.float32)
    assert count_nonfinite(x) == 3
    np.testing.assert_array_equal(finite_values(x), np.array([1.0, 0.0, -2.5], dtype=np.float32))
    assert count_nonfinite(np.arange(5)) == 0
    assert finite_values(np.arange(4).reshape(2, 2)).tolist() == [0, 1, 2, 3]


def test_as_values_widens_exactly_and_refuses_complex():
    half = np.array([0.1, 65504.0], dtype=np.float16)
    assert as_values(half).dtype == np.float32
    np.testing.assert_array_equal(as_values(half).astype(np.float16), half)
    assert as_values(np.array([1, 2], dtype=np.int8)).dtype == np.float64
    with pytest.raises(ValueError, match="complex"):
        as_values(np.array([1j]))
