"""Range algorithms: analytic expectations, brute-force optima, registry and invariances."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from trtq.calibrators.algorithms import estimate_error, round_to_power_of_two
from trtq.calibrators.registry import available_methods, compute_amax, method_parameters
from trtq.calibrators.stats import TensorStats
from trtq.config import CalibrationConfig

HIST_METHODS = ["entropy", "minmax", "percentile", "mse"]


def _stats(x: np.ndarray, batch: int | None = None, **kwargs) -> TensorStats:
    stats = TensorStats(**kwargs)
    batch = batch or max(len(x), 1)
    for start in range(0, len(x), batch):
        stats.update(x[start : start + batch])
    return stats


def _gaussian_mse(amaxes: np.ndarray) -> np.ndarray:
    """E[(Q(X) - X)**2] for X ~ N(0, 1), by numerical integration over a fine grid of |x|."""
    x = np.linspace(0.0, 12.0, 240_001)
    density = 2.0 * np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)
    out = []
    for a in amaxes:
        s = a / 127
        err = (s * np.minimum(np.rint(x / s), 127) - x) ** 2
        out.append(np.trapezoid(err * density, x))
    return np.array(out)


def _sample_mse(x: np.ndarray, amax: float) -> float:
    s = amax / 127
    return float(np.mean((s * np.clip(np.rint(x / s), -127, 127) - x) ** 2))


def test_registry_names_match_the_config_choices():
    field = next(f for f in dataclasses.fields(CalibrationConfig) if f.name == "method")
    assert available_methods() == list(field.metadata["choices"])
    assert method_parameters("percentile") == {"percentile": 99.99}
    assert method_parameters("entropy") == {"num_quantized_bins": 128, "start_bin": 128, "flatten_zero_bin": True}
    assert method_parameters("minmax") == {}


def test_unknown_method_or_parameter_is_an_error_naming_the_valid_ones():
    stats = _stats(np.ones(4))
    with pytest.raises(ValueError, match=r"unknown calibration method 'kl'.*entropy, minmax, percentile, mse, ema"):
        compute_amax("kl", stats)
    with pytest.raises(ValueError, match=r"no parameter percentil .*valid: percentile"):
        compute_amax("percentile", stats, percentil=99.0)
    with pytest.raises(ValueError, match="valid: none"):
        compute_amax("minmax", stats, percentile=99.0)
    with pytest.raises(ValueError, match=r"\(0, 100\]"):
        compute_amax("percentile", stats, percentile=0)
    with pytest.raises(ValueError, match="start_bin"):
        compute_amax("mse", stats, start_bin=0)


def test_uniform_data_minmax_and_percentile():
    rng = np.random.default_rng(0)
    x = rng.uniform(-1.0, 1.0, 1_000_000).astype(np.float32)
    stats = _stats(x, 100_000)
    width = stats.hist.bin_width
    assert compute_amax("minmax", stats) == float(np.abs(x).max())
    assert compute_amax("percentile", stats, percentile=99) == pytest.approx(0.99, abs=width + 2e-3)
    assert compute_amax("percentile", stats, percentile=100) == float(np.abs(x).max())
    assert compute_amax("entropy", stats) > 0.98  # nothing to clip in a uniform distribution


def test_percentile_of_arange_like_pytorch_quantization():
    x = np.arange(100, dtype=np.float32)
    stats = _stats(x)
    assert compute_amax("percentile", stats, percentile=90) == pytest.approx(89, abs=stats.hist.bin_width)
    assert compute_amax("percentile", stats, percentile=50) == pytest.approx(49, abs=stats.hist.bin_width)


def test_percentile_of_a_gaussian():
    x = np.random.default_rng(1).standard_normal(1_000_000)
    # P(|X| <= t) = 0.9999 for t = 3.8906 (two-sided normal quantile)
    assert compute_amax("percentile", _stats(x), percentile=99.99) == pytest.approx(3.8906, rel=0.02)


def test_percentile_counts_exact_zeros_as_a_point_mass():
    x = np.concatenate([np.zeros(600), np.linspace(0.5, 1.0, 400)])
    stats = _stats(x)
    assert compute_amax("percentile", stats, percentile=50) == 0.0
    assert compute_amax("percentile", stats, percentile=80) == pytest.approx(0.75, abs=2 * stats.hist.bin_width)


def test_mse_on_a_gaussian_is_near_the_analytic_optimum():
    x = np.random.default_rng(2).standard_normal(1_000_000)
    amax = compute_amax("mse", _stats(x))
    grid = np.linspace(3.0, 5.0, 201)
    analytic = _gaussian_mse(grid)
    best = grid[np.argmin(analytic)]
    assert abs(amax - best) < 0.2
    assert _gaussian_mse(np.array([amax]))[0] <= 1.01 * analytic.min()


def test_mse_on_a_laplacian_is_near_the_brute_force_sample_optimum():
    x = np.random.default_rng(3).laplace(0.0, 1.0, 200_000)
    amax = compute_amax("mse", _stats(x, 10_000))
    grid = np.linspace(2.0, float(np.abs(x).max()), 300)
    errors = np.array([_sample_mse(x, a) for a in grid])
    assert _sample_mse(x, amax) <= 1.01 * errors.min()
    assert abs(amax - grid[np.argmin(errors)]) < 0.1 * grid[np.argmin(errors)]


def test_entropy_on_a_gaussian_clips_the_far_tail():
    # The KL curve is flat near the max (differences ~1e-7 nats), so on one sample the last
    # candidate can win by noise: ask for clipping on most samples, not on every one.
    clipped = 0
    for seed in range(6):
        stats = _stats(np.random.default_rng(seed).standard_normal(1_000_000))
        amax = compute_amax("entropy", stats)
        assert 3.5 < amax <= stats.hist.amax
        clipped += amax < stats.hist.amax
    assert clipped >= 5


def _relu_like(zero_fraction: float, n_nonzero: int = 60_000) -> tuple[np.ndarray, np.ndarray]:
    """(half-Gaussian |N(0, 1)| values, the same values with exact zeros making up zero_fraction of all)."""
    rng = np.random.default_rng(11)
    half = np.abs(rng.standard_normal(n_nonzero)).astype(np.float32)
    zeros = np.zeros(round(n_nonzero * zero_fraction / (1.0 - zero_fraction)), dtype=np.float32)
    mixed = np.concatenate([zeros, half])
    rng.shuffle(mixed)
    return half, mixed


@pytest.mark.parametrize("zero_fraction", [0.5, 0.7, 0.95])
def test_entropy_threshold_is_not_shrunk_by_exact_zeros(zero_fraction):
    # ReLU outputs and padded sequences: most values are exact zeros (exact in INT8 at any scale).
    # The threshold of the non-zero half-Gaussian must not depend on how many zeros come with it.
    half, mixed = _relu_like(zero_fraction)
    without, with_zeros = compute_amax("entropy", _stats(half)), compute_amax("entropy", _stats(mixed))
    assert 3.0 < without < 5.0
    assert with_zeros == pytest.approx(without, rel=0.05)
    # The histogram searched as it is (the published TensorRT description, trtq before the fix):
    # bin 0 dominates the KL and the threshold collapses towards the smallest candidate.
    plain = compute_amax("entropy", _stats(mixed), flatten_zero_bin=False)
    assert plain < 0.6 * without


def test_entropy_with_many_zeros_keeps_the_error_near_the_mse_optimum():
    _, mixed = _relu_like(0.7)
    stats = _stats(mixed)
    best = estimate_error(compute_amax("mse", stats), stats.hist)
    assert estimate_error(compute_amax("entropy", stats), stats.hist) < 1.5 * best
    assert estimate_error(compute_amax("entropy", stats, flatten_zero_bin=False), stats.hist) > 5 * best


def test_ema_method_reads_the_moving_average_observer():
    stats = _stats(np.array([-4.0, 1.0, 2.0, 3.0]), batch=2, ema_constant=0.5)
    assert compute_amax("ema", stats) == pytest.approx(max(abs(0.5 * -4 + 0.5 * 2), 0.5 * 1 + 0.5 * 3))
    with pytest.raises(ValueError, match="ema_constant"):
        compute_amax("ema", _stats(np.ones(3), ema_constant=None))


@pytest.mark.parametrize("method", available_methods())
def test_all_zero_and_empty_statistics_give_zero(method):
    assert compute_amax(method, _stats(np.zeros(1000, dtype=np.float32))) == 0.0
    assert compute_amax(method, TensorStats()) == 0.0


def test_every_histogram_method_is_independent_of_batch_size():
    rng = np.random.default_rng(6)
    x = (rng.laplace(size=2000) * np.linspace(0.01, 3.0, 2000)).astype(np.float32)  # growing range
    runs = {batch: _stats(x, batch) for batch in (1, 7, 32)}
    for method in HIST_METHODS:
        values = {batch: compute_amax(method, stats) for batch, stats in runs.items()}
        assert len(set(values.values())) == 1, (method, values)
    ema = {compute_amax("ema", stats) for stats in runs.values()}
    assert len(ema) == 3  # documented: the moving average depends on batching


def test_round_to_power_of_two():
    assert round_to_power_of_two(0.0) == 0.0
    assert round_to_power_of_two(1.0) == 1.0
    assert round_to_power_of_two(1.5) == 2.0
    assert round_to_power_of_two(3.0) == 4.0
    assert round_to_power_of_two(0.3) == 0.5
    assert round_to_power_of_two(2.0**-140) == 2.0**-140
    assert round_to_power_of_two(2.0**-140 * 1.01) == 2.0**-139
    for bad in (-1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match="finite"):
            round_to_power_of_two(bad)


def test_estimate_error_ranks_mse_first_and_matches_the_noise_model():
    rng = np.random.default_rng(7)
    stats = _stats(rng.standard_t(4, 300_000))
    errors = {m: estimate_error(compute_amax(m, stats), stats.hist) for m in HIST_METHODS}
    assert errors["mse"] <= 1.001 * min(errors.values())
    uniform = _stats(rng.uniform(-1.0, 1.0, 300_000))
    amax = uniform.hist.amax
    assert estimate_error(amax, uniform.hist) == pytest.approx((amax / 127) ** 2 / 12, rel=0.01)
    with pytest.raises(ValueError, match="finite"):
        estimate_error(-1.0, uniform.hist)
