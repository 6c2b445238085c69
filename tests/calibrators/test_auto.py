"""`auto`: per-tensor method choice from the histogram's expected error, on analytic cases."""

from __future__ import annotations

import numpy as np
import pytest

from trtq.calibrators.algorithms import estimate_error
from trtq.calibrators.auto import AUTO_CANDIDATES, choose_method, choose_methods, method_counts
from trtq.calibrators.registry import available_methods, compute_amax, method_parameters
from trtq.calibrators.stats import TensorStats


def _stats(x: np.ndarray, batch: int = 50_000) -> TensorStats:
    stats = TensorStats(ema_constant=None)
    for start in range(0, len(x), batch):
        stats.update(x[start : start + batch])
    return stats


def test_auto_is_registered_with_its_parameters():
    assert "auto" in available_methods()
    assert method_parameters("auto") == {"percentile": 99.99, "tolerance": 0.02}
    assert set(AUTO_CANDIDATES) == {"minmax", "entropy", "percentile", "mse"}


def _bulk_error(x: np.ndarray, width: float, n: int) -> float:
    """E[X^2] of |x| as the histogram model reads it: bins `width` wide, values uniform within a bin."""
    counts, edges = np.histogram(np.abs(x), bins=np.arange(0.0, np.abs(x).max() + 2 * width, width))
    lo, hi = edges[:-1], edges[1:]
    return float(np.sum(counts * (lo * lo + lo * hi + hi * hi) / 3)) / n


@pytest.mark.parametrize(("n", "clipped"), [(4_000_000, True), (200_000, False)])
def test_one_huge_outlier_is_clipped_when_it_is_rare_enough(n, clipped):
    # Standard normal values and one value of 1000. With amax 1000 (minmax) the INT8 step is 7.9, so (but
    # for a few values beyond half a step) the whole bulk rounds to 0: error ~ E[X^2] ~ 1, read from bins
    # 0.5 wide (2048 bins up to 1000). With amax ~4 the bulk is fine and the outlier alone costs
    # (1000 - 4)^2 / n: 0.25 for n = 4M (clip), 5.0 for n = 200k (keep: squared error weighs it heavily).
    x = np.random.default_rng(0).standard_normal(n)
    x[123] = 1000.0
    stats = _stats(x, 1_000_000)
    choice = choose_method(stats)
    bulk = _bulk_error(np.delete(x, 123), 0.5, n)
    assert choice.amaxes["minmax"] == 1000.0
    assert choice.errors["minmax"] == pytest.approx(bulk, rel=0.01)
    assert choice.errors["percentile"] == pytest.approx((1000.0 - choice.amaxes["percentile"]) ** 2 / n, rel=0.02)
    if clipped:
        # mse searches from bin 128 up, i.e. amax >= 64 here: outlier clipping + bulk rounding at step 64/127.
        assert choice.amaxes["mse"] == 64.0
        assert choice.errors["mse"] == pytest.approx(936.0**2 / n + (64.0 / 127) ** 2 / 12, rel=0.01)
        assert choice.method == "mse" and choice.errors["mse"] < 0.3 * choice.errors["minmax"]
    else:
        assert choice.method in ("minmax", "entropy", "mse") and choice.amax >= 999.5
    assert compute_amax("auto", stats) == choice.amax


def test_uniform_data_gives_minmax():
    # |X| uniform on [0, 1]: error a * (a/127)^2/12 + (1-a)^3/3 is least at 1 - a = sqrt(3/193548) = 0.0039,
    # where it is 0.8 % below the error at a = 1: within the 2 % tolerance, so the larger range (minmax) wins.
    x = np.random.default_rng(1).uniform(-1.0, 1.0, 400_000)
    stats = _stats(x)
    choice = choose_method(stats)
    assert choice.method == "minmax"
    assert choice.amax == float(np.abs(x).max())
    assert choice.errors["minmax"] == pytest.approx((choice.amax / 127) ** 2 / 12, rel=0.01)
    assert choice.errors["minmax"] <= 1.01 * min(choice.errors.values())


def test_zero_tolerance_takes_the_least_error_and_ties_keep_candidate_order():
    x = np.random.default_rng(2).laplace(0.0, 1.0, 300_000)
    stats = _stats(x)
    choice = choose_method(stats, tolerance=0.0)
    assert choice.errors[choice.method] == min(choice.errors.values())
    assert choice.method in ("mse", "percentile")  # the error-minimizing search, or an interpolated threshold
    assert choice.relative_errors()[choice.method] == 1.0
    assert choice.relative_errors()["minmax"] > 1.5  # a Laplacian's max is far in the tail
    zeros = choose_method(_stats(np.zeros(1000)))
    assert (zeros.method, zeros.amax) == ("minmax", 0.0)


def test_errors_are_estimate_error_of_each_candidates_amax():
    x = np.random.default_rng(3).standard_t(3, 100_000)
    stats = _stats(x)
    choice = choose_method(stats, percentile=99.9)
    assert choice.amaxes["percentile"] == compute_amax("percentile", stats, percentile=99.9)
    for method, amax in choice.amaxes.items():
        assert choice.errors[method] == estimate_error(amax, stats.hist)


def test_choice_does_not_depend_on_batching():
    x = np.random.default_rng(4).laplace(size=20_000) * np.linspace(0.1, 3.0, 20_000)
    choices = {batch: choose_method(_stats(x, batch)) for batch in (7, 1000, 20_000)}
    assert len({(c.method, c.amax) for c in choices.values()}) == 1


def test_choose_methods_and_counts_for_the_report():
    rng = np.random.default_rng(5)
    outlier = rng.standard_normal(50_000)
    outlier[0] = 500.0
    stats = {"uniform": _stats(rng.uniform(-2, 2, 50_000)), "outlier": _stats(outlier),
             "uniform2": _stats(rng.uniform(-1, 1, 50_000))}
    choices = choose_methods(stats)
    assert list(choices) == ["uniform", "outlier", "uniform2"]
    assert choices["uniform"].method == "minmax" and choices["uniform2"].method == "minmax"
    assert choices["outlier"].method != "minmax"
    counts = method_counts(choices)
    assert counts["minmax"] == 2 and sum(counts.values()) == 3
    assert choices["uniform"].to_dict()["method"] == "minmax"


def test_bad_parameters_are_errors():
    stats = _stats(np.ones(10))
    with pytest.raises(ValueError, match="tolerance"):
        choose_method(stats, tolerance=-0.1)
    with pytest.raises(ValueError, match="cannot compare method 'ema'"):
        choose_method(stats, candidates=("minmax", "ema"))
    with pytest.raises(ValueError, match="at least one"):
        choose_method(stats, candidates=())
    with pytest.raises(ValueError, match="no parameter"):
        compute_amax("auto", stats, candidates=("minmax",))
