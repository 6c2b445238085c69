"""Expected INT8 quantization error from a histogram: closed forms against direct computation."""

from __future__ import annotations

import numpy as np
import pytest

from trtq.calibrators.histogram import HistogramObserver
from trtq.calibrators.mse import _rounding_integral, edge_errors, expected_mse, value_bins


def _hist(x: np.ndarray, num_bins: int = 2048) -> HistogramObserver:
    obs = HistogramObserver(num_bins)
    obs.update(x)
    return obs


def _sample_mse(x: np.ndarray, amax: float) -> float:
    """Quantize the samples themselves: s * clip(round(x / s), -127, 127)."""
    if amax == 0:
        return float(np.mean(x * x))
    s = amax / 127
    q = s * np.clip(np.rint(x / s), -127, 127)
    return float(np.mean((q - x) ** 2))


@pytest.mark.parametrize("u", [0.0, 0.3, 0.5, 0.77, 1.7, 12.25, 126.9, 127.0])
def test_rounding_integral_matches_numerical_integration(u):
    t = np.linspace(0.0, u, 2_000_001)
    numeric = np.trapezoid((t - np.rint(t)) ** 2, t) if u > 0 else 0.0
    assert _rounding_integral(np.array(u)) == pytest.approx(numeric, rel=1e-6, abs=1e-12)


def test_expected_error_matches_quantizing_the_samples():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(1_000_000)
    hist = _hist(x)
    amaxes = np.array([0.0, 0.5, 1.0, 2.0, 3.9, 4.5, float(np.abs(x).max())])
    expected = np.array([_sample_mse(x, a) for a in amaxes])
    np.testing.assert_allclose(expected_mse(hist, amaxes), expected, rtol=0.01)


def test_point_masses_are_exact():
    x = np.array([0.5, -0.5] * 10 + [0.0] * 20)  # max on a bin's lower edge: zero-width last bin
    hist = _hist(x)
    err = expected_mse(hist, [0.5, 0.25, 0.0, 1.0])
    assert err[0] == pytest.approx(0.0, abs=1e-20)  # 0.5 = 127 steps exactly; zeros are exact
    assert err[1] == pytest.approx(0.5 * 0.25**2)  # half the values clipped by 0.25
    assert err[2] == pytest.approx(0.5 * 0.25)  # amax 0: every value becomes 0
    s = 1.0 / 127
    assert err[3] == pytest.approx(0.5 * (0.5 - s * round(0.5 / s)) ** 2)


def test_no_data_or_zeros_only_has_no_error():
    assert expected_mse(HistogramObserver(), [0.0, 1.0]).tolist() == [0.0, 0.0]
    assert expected_mse(_hist(np.zeros(10)), [0.0, 1.0]).tolist() == [0.0, 0.0]


@pytest.mark.parametrize("kind", ["gaussian", "relu", "discrete", "max on edge"])
def test_fast_edge_path_equals_general_formula(kind):
    rng = np.random.default_rng(1)
    x = {
        "gaussian": rng.standard_normal(100_000),
        "relu": np.maximum(rng.laplace(size=100_000), 0.0),
        "discrete": rng.integers(0, 256, 50_000) / 255.0,
        "max on edge": np.append(rng.uniform(0, 4, 10_000), [4.0] * 50),
    }[kind]
    hist = _hist(x)
    counts, edges = value_bins(hist)
    start = 100
    fast = edge_errors(counts, edges, start) / hist.count
    general = expected_mse(hist, edges[start:-1])
    np.testing.assert_allclose(fast, general, rtol=1e-9)


def test_value_bins_end_at_the_exact_max_and_leave_zeros_out():
    x = np.array([0.0, 0.0, 1.0, 3.0])
    counts, edges = value_bins(_hist(x))
    assert edges[-1] == 3.0 and counts.sum() == 2 and counts[0] == 0
