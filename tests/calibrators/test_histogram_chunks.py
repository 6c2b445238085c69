"""HistogramObserver's one-pass chunked binning: the range grows chunk by chunk within one batch,
exactly as if the whole batch had been binned at the final exponent."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from trtq.calibrators import histogram
from trtq.calibrators.histogram import HistogramObserver, bin_batch


def _direct(x: np.ndarray, num_bins: int) -> tuple[int, np.ndarray]:
    """(smallest e with max|x| < num_bins * 2**e, counts of floor(|x| / 2**e)), in exact arithmetic."""
    v = np.abs(x.astype(np.float64)).ravel()
    amax = Fraction(float(v.max()))
    e = math.floor(math.log2(float(v.max())))
    while not amax < num_bins * Fraction(2) ** e:
        e += 1
    while amax < num_bins * Fraction(2) ** (e - 1):
        e -= 1
    index = np.array([math.floor(Fraction(float(a)) / Fraction(2) ** e) for a in v], dtype=np.int64)
    return e, np.bincount(index, minlength=num_bins)


@pytest.fixture
def small_chunks(monkeypatch):
    """Chunks of 1000 values, so that small arrays exercise the chunk boundaries."""
    monkeypatch.setattr(histogram, "_CHUNK", 1000)


def test_range_growing_from_chunk_to_chunk_gives_the_direct_histogram(small_chunks):
    rng = np.random.default_rng(0)
    # First chunk all zeros (exponent still undefined), then magnitudes growing by 10 orders.
    x = np.concatenate([np.zeros(1000), rng.standard_normal(6500) * np.logspace(-5, 5, 6500)]).astype(np.float32)
    part = bin_batch(x, 2048, None)
    e, expected = _direct(x, 2048)
    assert part.exponent == e
    np.testing.assert_array_equal(part.bins, expected)
    assert (part.lo, part.hi, part.zeros) == (float(x.min()), float(x.max()), 1000)


def test_exponent_only_grows_from_the_observer_state(small_chunks):
    obs = HistogramObserver(64)
    obs.update(np.array([100.0], dtype=np.float32))  # exponent for 100 with 64 bins: 2**1 wide bins
    small = np.full(2500, 0.75, dtype=np.float32)  # would need a much smaller exponent on its own
    obs.update(small)
    e, expected = _direct(np.concatenate([[100.0], small]).astype(np.float32), 64)
    assert obs.exponent == e == 1
    np.testing.assert_array_equal(obs.bins, expected)


def test_nan_in_a_late_chunk_leaves_the_state_unchanged(small_chunks):
    obs = HistogramObserver()
    obs.update(np.linspace(-1.0, 1.0, 3000, dtype=np.float32))
    before = obs.to_dict()
    bad = np.linspace(0.0, 1e6, 5000, dtype=np.float32)  # grows the range in its early chunks
    bad[4500] = np.inf
    bad[4600] = np.nan
    with pytest.raises(ValueError, match="got 2 NaN/Inf"):
        obs.update(bad)
    after = obs.to_dict()
    assert all(np.array_equal(after[k], before[k]) for k in before)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_scales_outside_the_dtype_range_fall_back_to_exact_ldexp(dtype):
    # Subnormal float32 values: the scale 2**-e (about 2**143) is not a float32, so ldexp does the scaling.
    tiny = np.array([1e-45, 3e-42, -1e-40, 0.0, 7e-39], dtype=np.float32).astype(dtype)
    obs = HistogramObserver()
    obs.update(tiny)
    e, expected = _direct(tiny, 2048)
    assert obs.exponent == e
    np.testing.assert_array_equal(obs.bins, expected)


def test_observers_updated_from_several_threads_at_once_match_serial_updates(small_chunks):
    # Binning reuses per-thread scratch buffers; numpy releases the GIL inside them, so shared
    # buffers would mix up the threads' chunks.
    import threading

    rng = np.random.default_rng(11)
    data = [(rng.standard_normal(25_000) * 10.0 ** k).astype(np.float32) for k in range(-2, 2)]
    serial = []
    for x in data:
        obs = HistogramObserver()
        for part in np.array_split(x, 5):
            obs.update(part)
        serial.append(obs)
    threaded = [HistogramObserver() for _ in data]

    def feed(obs: HistogramObserver, x: np.ndarray) -> None:
        for _ in range(10):  # many passes, so the threads overlap for a while
            for part in np.array_split(x, 5):
                obs.update(part)

    threads = [threading.Thread(target=feed, args=(obs, x)) for obs, x in zip(threaded, data, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for one, three in zip(serial, threaded, strict=True):
        assert three.exponent == one.exponent and three.count == 10 * one.count
        np.testing.assert_array_equal(three.bins, 10 * one.bins)
