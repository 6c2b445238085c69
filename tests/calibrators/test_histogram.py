"""HistogramObserver: exact power-of-two binning, invariance to batching and merge order."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from trtq.calibrators.histogram import HistogramObserver, coarsen, range_exponent


def _expected_exponent(amax: float, num_bins: int) -> int:
    """Smallest e with amax < num_bins * 2**e, checked in exact rational arithmetic."""

    def fits(e: int) -> bool:
        return Fraction(amax) < num_bins * Fraction(2) ** e

    e = math.floor(math.log2(amax))
    while not fits(e):
        e += 1
    while fits(e - 1):
        e -= 1
    return e


def _direct_histogram(x: np.ndarray, num_bins: int) -> tuple[int, np.ndarray]:
    """floor(|x| / 2**e) counted directly in float64 (division by a power of two is exact)."""
    v = np.abs(x.astype(np.float64)).ravel()
    e = _expected_exponent(float(v.max()), num_bins)
    index = np.floor(v / 2.0**e).astype(np.int64)
    return e, np.bincount(index, minlength=num_bins)


def _feed(data: np.ndarray, batch: int, num_bins: int = 2048) -> HistogramObserver:
    obs = HistogramObserver(num_bins)
    for start in range(0, len(data), batch):
        obs.update(data[start : start + batch])
    return obs


def _assert_same(a: HistogramObserver, b: HistogramObserver) -> None:
    assert a.exponent == b.exponent
    np.testing.assert_array_equal(a.bins, b.bins)
    assert (a.count, a.zero_count, a.min, a.max) == (b.count, b.zero_count, b.min, b.max)


def _growing_data(rng: np.random.Generator, n: int = 3000) -> np.ndarray:
    """Magnitudes growing over 12 orders so the range is re-binned many times, with exact zeros."""
    scale = np.logspace(-6, 6, n)
    x = (rng.standard_normal(n) * scale).astype(np.float32)
    x[rng.random(n) < 0.1] = 0.0
    return x


def test_bins_are_floor_of_abs_over_power_of_two_width():
    rng = np.random.default_rng(1)
    x = rng.laplace(0.0, 0.7, size=(50, 300)).astype(np.float32)
    obs = HistogramObserver()
    obs.update(x)
    e, expected = _direct_histogram(x, 2048)
    assert obs.exponent == e and obs.bin_width == 2.0**e
    np.testing.assert_array_equal(obs.bins, expected)
    assert obs.amax == float(np.abs(x).max())
    assert obs.count == x.size and obs.zero_count == 0
    # The range is the smallest power-of-two multiple: the max lies in the upper half of the bins.
    assert 1024 <= np.flatnonzero(obs.bins)[-1] < 2048


def test_chunked_binning_of_a_large_tensor_matches_direct_counts():
    rng = np.random.default_rng(2)
    x = rng.standard_normal(1_500_000).astype(np.float32)  # more than one internal chunk
    obs = HistogramObserver(512)
    obs.update(x)
    e, expected = _direct_histogram(x, 512)
    assert obs.exponent == e
    np.testing.assert_array_equal(obs.bins, expected)


def test_growing_range_rebins_exactly():
    rng = np.random.default_rng(3)
    x = _growing_data(rng)
    obs = _feed(x, 100)
    e, expected = _direct_histogram(x, 2048)
    assert obs.exponent == e
    np.testing.assert_array_equal(obs.bins, expected)
    assert obs.zero_count == int(np.sum(x == 0))


@pytest.mark.parametrize("num_bins", [2048, 1000, 3])
def test_same_data_in_batches_of_1_7_32_gives_identical_histograms(num_bins):
    x = _growing_data(np.random.default_rng(4))
    one, seven, many = (_feed(x, b, num_bins) for b in (1, 7, 32))
    _assert_same(one, seven)
    _assert_same(one, many)
    _assert_same(one, _feed(x, len(x), num_bins))


def test_merge_is_associative_and_equals_one_observer():
    rng = np.random.default_rng(5)
    parts = [rng.standard_normal(1000) * 1e-3, rng.standard_normal(700) * 10.0, rng.standard_normal(900) * 1e4]
    parts[1][:50] = 0.0

    def fresh(i: int) -> HistogramObserver:
        return _feed(parts[i], 64)

    left = fresh(0)
    right = fresh(1)
    right.merge(fresh(2))
    left.merge(right)  # a + (b + c)
    other = fresh(0)
    other.merge(fresh(1))
    other.merge(fresh(2))  # (a + b) + c
    reverse = fresh(2)
    reverse.merge(fresh(1))
    reverse.merge(fresh(0))  # c + b + a
    single = _feed(np.concatenate(parts), 333)
    for merged in (left, other, reverse):
        _assert_same(merged, single)


def test_merge_checks_type_and_bins():
    with pytest.raises(ValueError, match="different settings"):
        HistogramObserver(2048).merge(HistogramObserver(1024))
    with pytest.raises(ValueError, match="cannot merge"):
        HistogramObserver().merge(object())


def test_all_zero_tensor_then_nonzero_values():
    obs = HistogramObserver()
    obs.update(np.zeros((3, 4), dtype=np.float32))
    obs.update(np.array([-0.0]))
    assert obs.exponent is None and obs.amax == 0.0 and obs.bin_width == 0.0
    assert obs.bins[0] == obs.count == obs.zero_count == 13
    obs.update(np.array([5.0, -0.25]))
    assert obs.bins[0] == 13 and obs.zero_count == 13 and obs.count == 15
    _assert_same(obs, _feed(np.concatenate([np.zeros(13), [5.0, -0.25]]), 15))


def test_float16_float32_float64_and_extreme_magnitudes_bin_identically():
    values = np.array([0.0, 1e-7, -3.5, 65504.0, 2.0**-24, 0.1], dtype=np.float16)
    hists = []
    for dtype in (np.float16, np.float32, np.float64):
        obs = HistogramObserver()
        obs.update(values.astype(dtype))
        hists.append(obs)
    _assert_same(hists[0], hists[1])
    _assert_same(hists[0], hists[2])
    extreme = np.array([1e-45, -1e-40, 3e-38, 1e30, -3.4e38], dtype=np.float32)  # subnormals to float32 max
    _assert_same(_feed(extreme, 1), _feed(extreme[::-1], 2))
    e, expected = _direct_histogram(extreme, 2048)
    assert _feed(extreme, 5).exponent == e
    np.testing.assert_array_equal(_feed(extreme, 5).bins, expected)


def test_nonfinite_input_raises_and_leaves_state_unchanged():
    obs = HistogramObserver()
    obs.update(np.array([1.0, 2.0]))
    before = obs.to_dict()
    with pytest.raises(ValueError, match="finite"):
        obs.update(np.array([1e6, np.nan]))
    after = obs.to_dict()
    assert after.keys() == before.keys()
    assert all(np.array_equal(after[k], before[k]) for k in before)


def test_range_exponent_and_coarsen_helpers():
    for amax in (1e-300, 0.3, 1.0, 2047.0, 2048.0, 2049.0, 1e300):
        e = range_exponent(amax, 2048)
        assert amax < 2048 * math.ldexp(1.0, e) and amax >= 2048 * math.ldexp(1.0, e - 1)
    bins = np.arange(10, dtype=np.int64)
    np.testing.assert_array_equal(coarsen(bins, 1), [1, 5, 9, 13, 17, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(coarsen(bins, 2), [6, 22, 17, 0, 0, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(coarsen(bins, 70), [45] + [0] * 9)


def test_dict_round_trip_and_validation():
    obs = _feed(_growing_data(np.random.default_rng(6)), 500)
    _assert_same(HistogramObserver.from_dict(obs.to_dict()), obs)
    empty = HistogramObserver.from_dict(HistogramObserver(16).to_dict())
    assert empty.count == 0 and empty.exponent is None and "exponent" not in HistogramObserver(16).to_dict()
    d = obs.to_dict()
    with pytest.raises(ValueError, match="non-negative integers"):
        HistogramObserver.from_dict({**d, "bins": d["bins"][:-1]})
    with pytest.raises(ValueError, match="inconsistent"):
        HistogramObserver.from_dict({**d, "count": d["count"] + 1})
    with pytest.raises(ValueError, match="outside its range"):
        HistogramObserver.from_dict({**d, "exponent": d["exponent"] - 1})
    with pytest.raises(ValueError, match="num_bins"):
        HistogramObserver(1)
