"""Entropy calibration: the vectorized search against a plain per-candidate loop."""

from __future__ import annotations

import numpy as np
import pytest

from trtq.calibrators.entropy import TIE_ATOL, entropy_bin, entropy_divergences
from trtq.calibrators.histogram import HistogramObserver


def reference_kl(bins: np.ndarray, i: int, num_levels: int = 128) -> float:
    """KL(P || Q) for keeping i bins, written out step by step as in the GTC 2017 talk."""
    h = np.asarray(bins, dtype=np.float64)
    p = h[:i].copy()
    p[i - 1] += h[i:].sum()  # outliers go to the last kept bin
    level = np.arange(i) * num_levels // i  # bin k -> level floor(k * L / i)
    level_mass = np.bincount(level, weights=h[:i], minlength=num_levels)
    level_nonempty = np.bincount(level, weights=h[:i] > 0, minlength=num_levels)
    # Each level's mass spread evenly over its non-empty bins; empty bins stay 0.
    q = np.where(h[:i] > 0, level_mass[level] / np.maximum(level_nonempty[level], 1), 0.0)
    p /= p.sum()
    q /= q.sum()
    if np.any((p > 0) & (q == 0)):
        return np.inf
    keep = p > 0
    return float(np.sum(p[keep] * np.log(p[keep] / q[keep])))


def reference_entropy_bin(bins: np.ndarray, num_levels: int = 128, start_bin: int = 128,
                          flatten_zero_bin: bool = True) -> int | None:
    """The loop search; like entropy_bin (and pytorch-quantization's `_compute_amax_entropy`, which
    does `bins[0] = bins[1]`), bin 0 is first set to bin 1's count unless flatten_zero_bin is False."""
    bins = np.array(bins)
    if flatten_zero_bin:
        bins[0] = bins[1]
    nonzero = np.flatnonzero(bins)
    if nonzero.size == 0 or nonzero[-1] + 1 < start_bin:
        return None
    n = int(nonzero[-1]) + 1
    kls = [reference_kl(bins[:n], i, num_levels) for i in range(start_bin, n + 1)]
    best = min(kls)
    return max(i for i, kl in zip(range(start_bin, n + 1), kls, strict=True) if kl <= best + TIE_ATOL)


def _observed(x: np.ndarray, num_bins: int = 2048) -> np.ndarray:
    obs = HistogramObserver(num_bins)
    obs.update(x)
    return obs.bins


def _histograms() -> list[tuple[str, np.ndarray]]:
    rng = np.random.default_rng(7)
    n = 200_000
    relu = np.maximum(rng.standard_normal(n), 0.0)
    outliers = np.concatenate([rng.standard_normal(n), rng.uniform(20, 60, 30)])
    out = [
        ("gaussian", _observed(rng.standard_normal(n))),
        ("laplacian", _observed(rng.laplace(size=n))),
        ("relu", _observed(relu)),
        ("gaussian+outliers", _observed(outliers)),
        ("exponential", _observed(rng.exponential(size=n))),
        ("image levels k/255", _observed(rng.integers(0, 256, n) / 255.0)),
        ("few samples", _observed(rng.standard_normal(300))),
        ("student-t", _observed(rng.standard_t(3, size=n), 1024)),
    ]
    for k in range(8):
        size = int(rng.integers(130, 1200))
        counts = rng.integers(0, 10 ** int(rng.integers(1, 7)), size) * (rng.random(size) < rng.uniform(0.2, 1))
        counts[-1] = max(counts[-1], 1)
        out.append((f"random {k}", counts))
    for k in range(24):  # smooth shapes with Poisson noise, holes and a zero spike: interior minima
        size = int(rng.integers(300, 2049))
        x = np.arange(size) / size
        shape = [np.exp(-x / rng.uniform(0.02, 0.3)), np.exp(-((x / rng.uniform(0.05, 0.4)) ** 2)),
                 (x + 0.01) ** -rng.uniform(1, 3)][k % 3]
        counts = rng.poisson(shape / shape.max() * 10 ** rng.uniform(2, 6))
        counts[rng.random(size) < rng.uniform(0, 0.3)] = 0
        counts[0] += int(rng.integers(0, 2)) * counts.sum()
        counts[-1] = max(counts[-1], int(rng.integers(1, 5)))
        out.append((f"noisy shape {k}", counts))
    return out


HISTOGRAMS = _histograms()


@pytest.mark.parametrize(("label", "bins"), HISTOGRAMS, ids=[label for label, _ in HISTOGRAMS])
def test_vectorized_search_picks_the_same_bin_as_the_loop(label, bins):
    assert entropy_bin(bins) == reference_entropy_bin(bins)
    assert entropy_bin(bins, flatten_zero_bin=False) == reference_entropy_bin(bins, flatten_zero_bin=False)


def test_zero_bin_is_searched_as_tall_as_its_neighbour():
    rng = np.random.default_rng(12)
    bins = _observed(np.abs(rng.standard_normal(100_000)))
    spiked = bins.copy()
    spiked[0] += 10 * bins.sum()  # many exact zeros
    assert entropy_bin(spiked) == entropy_bin(bins)
    assert entropy_bin(spiked, flatten_zero_bin=False) < entropy_bin(bins) // 2
    unchanged = bins.copy()
    entropy_bin(spiked)
    np.testing.assert_array_equal(bins, unchanged)  # the caller's histogram is not modified


def test_divergences_match_the_loop_values():
    rng = np.random.default_rng(8)
    bins = _observed(rng.laplace(size=50_000), 512)
    n = int(np.flatnonzero(bins)[-1]) + 1
    candidates = np.arange(128, n + 1)
    expected = np.array([reference_kl(bins[:n], i) for i in candidates])
    got = entropy_divergences(bins[:n], candidates)
    finite = np.isfinite(expected)
    assert np.array_equal(np.isfinite(got), finite) and not finite.all()
    np.testing.assert_allclose(got[finite], expected[finite], rtol=1e-9, atol=1e-12)


def test_other_level_counts_and_start_bins_match_the_loop():
    rng = np.random.default_rng(9)
    bins = _observed(rng.standard_normal(20_000), 256)
    for levels, start in ((16, 16), (64, 100), (128, 200)):
        assert entropy_bin(bins, levels, start) == reference_entropy_bin(bins, levels, start)


def test_level_assignment_is_pytorch_quantizations_digitize():
    # pytorch-quantization: np.digitize(range(i), np.linspace(0, i, L + 1)) - 1
    for i in range(128, 2049, 37):
        digitized = np.digitize(np.arange(i), np.linspace(0, i, 129)) - 1
        np.testing.assert_array_equal(digitized, np.arange(i) * 128 // i)


def test_no_candidate_when_too_few_bins_or_no_data():
    assert entropy_bin(np.zeros(2048, dtype=np.int64)) is None
    short = np.zeros(2048, dtype=np.int64)
    short[:100] = 5
    assert entropy_bin(short) is None


def test_uniform_data_keeps_the_whole_range():
    rng = np.random.default_rng(10)
    bins = _observed(rng.uniform(0, 1, 500_000))
    n = int(np.flatnonzero(bins)[-1]) + 1
    assert entropy_bin(bins) >= n - 2
