"""The compiled one-pass kernel gives exactly the numpy path's histograms (the reference)."""

from __future__ import annotations

import numpy as np
import pytest

from trtq.calibrators import histogram
from trtq.calibrators.histogram import HistogramObserver, bin_batch_numpy
from trtq.calibrators.histogram_kernel import bin_values


def _assert_same(values: np.ndarray, num_bins: int = 2048, exponent: int | None = None) -> None:
    reference = bin_batch_numpy(values, num_bins, exponent)
    grown, bins, lo, hi, zeros, bad = bin_values(values, num_bins, exponent)
    assert bad == 0
    assert grown == reference.exponent
    np.testing.assert_array_equal(bins, reference.bins)
    assert (lo, hi, zeros) == (reference.lo, reference.hi, reference.zeros)  # ±0.0 compare equal


def _edges(dtype: type, e: int, num_bins: int) -> np.ndarray:
    """Every bin edge k * 2**e and its neighbours one ulp away, of both signs."""
    k = np.arange(num_bins, dtype=np.float64)
    edges = np.ldexp(k, e).astype(dtype)
    near = np.concatenate([edges, np.nextafter(edges, dtype(np.inf)), np.nextafter(edges, dtype(0))])
    return np.concatenate([near, -near]).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_all_zeros_and_signed_zeros(dtype):
    _assert_same(np.zeros(1000, dtype=dtype))
    _assert_same(np.zeros(1000, dtype=dtype), exponent=-3)
    signed = np.array([0.0, -0.0] * 500, dtype=dtype)
    _assert_same(signed)
    _assert_same(np.concatenate([signed, np.array([-2.5, 1e-3], dtype=dtype), signed]))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("e", [-140, -20, 0, 7])
def test_values_at_exact_bin_edges(dtype, e):
    num_bins = 64
    edges = _edges(dtype, e, num_bins)
    _assert_same(edges, num_bins)
    _assert_same(edges, num_bins, exponent=e)  # the range is exactly right: no growth
    top = np.array([np.ldexp(float(num_bins), e)], dtype=dtype)  # exactly num_bins * 2**e: must grow
    _assert_same(np.concatenate([edges, top]), num_bins, exponent=e)


def test_denormals_of_float32_and_float64():
    tiny32 = np.array([1e-45, 3e-42, -1e-40, 0.0, 7e-39, -1.2e-38], dtype=np.float32)
    _assert_same(tiny32)
    tiny64 = np.array([5e-324, -1e-320, 3e-310, 0.0, 2.2e-308], dtype=np.float64)
    _assert_same(tiny64)  # 2**-e is no float64 here: the kernel scales in two exact steps
    _assert_same(np.concatenate([tiny64, [1e300, -3.0]]))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_exponent_growth_inside_one_batch(dtype):
    rng = np.random.default_rng(3)
    growing = (rng.standard_normal(20_000) * np.logspace(-30, 30, 20_000)).astype(dtype)
    _assert_same(growing)
    _assert_same(growing, exponent=-200)
    _assert_same(growing[::-1].copy())  # largest first: a single growth
    relu = np.maximum(rng.standard_normal(50_000), 0).astype(dtype)
    _assert_same(relu)
    _assert_same(relu, 16, exponent=-10)


def test_nonfinite_values_are_counted_not_binned():
    x = np.array([1.0, np.nan, -np.inf, 2.0, np.inf], dtype=np.float32)
    assert bin_values(x, 2048, None)[5] == 3
    with pytest.raises(ValueError, match="got 3 NaN/Inf"):
        HistogramObserver().update(x)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_observers_equal_with_and_without_the_kernel(monkeypatch, dtype):
    rng = np.random.default_rng(5)
    batches = [(rng.standard_normal(3000) * 10.0 ** k).astype(dtype) for k in (-3, 0, 2, -1)]
    batches.append(np.zeros(100, dtype=dtype))
    compiled = HistogramObserver()
    for x in batches:
        compiled.update(x)
    monkeypatch.setattr(histogram, "compiled_kernel", lambda: None)
    reference = HistogramObserver()
    for x in batches:
        reference.update(x)
    mine, theirs = compiled.to_dict(), reference.to_dict()
    assert mine.keys() == theirs.keys()
    for key in mine:
        np.testing.assert_array_equal(mine[key], theirs[key])
