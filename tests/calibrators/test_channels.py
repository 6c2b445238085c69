"""ChannelObserver: per-channel max |x| and log2 histogram of the last axis, exact and mergeable."""

from __future__ import annotations

import numpy as np
import pytest

from trtq.calibrators import TensorStats, load_observers, save_observers
from trtq.calibrators.channels import EXP_MIN, NUM_BINS, ChannelObserver


def _data(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((12, 7, 5)).astype(np.float32)
    x[..., 2] *= 40.0  # an outlier channel
    x[0, 0, 0] = 0.0
    return x


def test_absmax_and_bins_per_channel():
    x = _data()
    obs = ChannelObserver()
    obs.update(x)
    np.testing.assert_array_equal(obs.absmax, np.abs(x).reshape(-1, 5).max(axis=0))
    assert obs.log_bins.shape == (5, NUM_BINS) and obs.count == x.size
    assert obs.log_bins.sum(axis=1).tolist() == [84] * 5
    assert obs.log_bins[0, 0] == 1  # the zero
    # 1.5 lies in [2^0, 2^1): exponent 1 by frexp
    one = ChannelObserver()
    one.update(np.array([[1.5]]))
    assert one.log_bins[0, 1 - EXP_MIN] == 1
    ms = ChannelObserver()
    ms.update(np.full((4, 1), 3.0))  # [2, 4): mean square 7/12 * 16 = 9.33, true value 9
    assert ms.mean_square()[0] == pytest.approx(7 / 12 * 16)


def test_merge_is_exact_and_independent_of_batching():
    x = _data(1)
    whole = ChannelObserver()
    whole.update(x)
    for split in ([3, 9], [1, 2, 11], [6]):
        parts = [ChannelObserver() for _ in range(len(split) + 1)]
        for part, chunk in zip(parts, np.split(x, split), strict=True):
            part.update(chunk)
        merged = ChannelObserver()
        for part in reversed(parts):
            merged.merge(part)
        np.testing.assert_array_equal(merged.absmax, whole.absmax)
        np.testing.assert_array_equal(merged.log_bins, whole.log_bins)
        assert merged.count == whole.count


def test_rejects_bad_batches_and_round_trips(tmp_path):
    obs = ChannelObserver()
    obs.update(np.ones((2, 3)))
    with pytest.raises(ValueError, match="3 channels"):
        obs.update(np.ones((2, 4)))
    with pytest.raises(ValueError, match="finite"):
        obs.update(np.array([[1.0, np.inf, 0.0]]))
    assert obs.count == 6
    stats = TensorStats(num_bins=64, ema_constant=None, channels=True)
    stats.update(_data())
    save_observers(tmp_path / "s.npz", {"x": stats})
    again = load_observers(tmp_path / "s.npz")[0]["x"]
    np.testing.assert_array_equal(again.channels.log_bins, stats.channels.log_bins)
    np.testing.assert_array_equal(again.channels.absmax, stats.channels.absmax)
    with pytest.raises(ValueError, match="per-channel"):
        stats.merge(TensorStats(num_bins=64, ema_constant=None))


def _adversarial32() -> np.ndarray:
    """float32 [rows, 9]: zeros of both signs, denormals, exact powers of two (bin edges) and their
    neighbours, the largest finite value, an outlier channel, negative values."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((257, 9)).astype(np.float32)
    x[:, 0] = 0.0
    x[::2, 1] = -0.0
    x[:, 2] = np.array([1e-45, -3e-42, 7e-39, -1.1754942e-38, 1.1754944e-38] * 52)[:257].astype(np.float32)
    edges = np.ldexp(np.float32(1.0), np.arange(-30, 45)).astype(np.float32)
    near = np.concatenate([edges, np.nextafter(edges, np.float32(0)), np.nextafter(edges, np.float32(np.inf))])
    x[:, 3] = np.resize(np.concatenate([near, -near]), 257)
    x[5, 4] = np.finfo(np.float32).max
    x[6, 4] = -np.finfo(np.float32).max
    x[:, 5] *= 3e4  # an outlier channel
    x[:, 6] = -np.abs(x[:, 6])
    return x


def test_compiled_kernel_equals_numpy_reference():
    from trtq.calibrators.channels import channel_counts_numpy
    from trtq.calibrators.histogram_kernel import _EXP_MIN, _LOG_BINS, channel_counts

    assert (_EXP_MIN, _LOG_BINS) == (EXP_MIN, NUM_BINS)
    x = _adversarial32()
    absmax, log_bins = channel_counts_numpy(x)
    k_absmax, k_log_bins, bad = channel_counts(x)
    assert bad == 0
    np.testing.assert_array_equal(k_absmax, absmax)
    np.testing.assert_array_equal(k_log_bins, log_bins)
    assert k_log_bins.dtype == np.int64 and k_absmax.dtype == np.float64
    assert log_bins[0].tolist() == [257] + [0] * (NUM_BINS - 1)  # every zero in bin 0
    assert log_bins[2, 0] == 257  # denormals too
    assert log_bins[4, NUM_BINS - 1] == 2  # float32 max: beyond the last bin
    # a transposed (non-contiguous) batch and one of three axes give the same as the reference
    t = np.ascontiguousarray(x.T).T
    np.testing.assert_array_equal(channel_counts(t)[1], log_bins)
    cube = x[:256].reshape(8, 32, 9)
    obs = ChannelObserver()
    obs.update(cube)
    np.testing.assert_array_equal(obs.log_bins, channel_counts_numpy(cube)[1])
    np.testing.assert_array_equal(obs.absmax, channel_counts_numpy(cube)[0])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_compiled_kernel_counts_nonfinite_and_update_changes_nothing(bad):
    from trtq.calibrators.histogram_kernel import channel_counts

    x = _adversarial32()
    obs = ChannelObserver()
    obs.update(x)
    before = (obs.absmax.copy(), obs.log_bins.copy(), obs.count)
    y = x.copy()
    y[3, 1], y[100, 7] = bad, bad
    assert channel_counts(y)[2] == 2
    with pytest.raises(ValueError, match="2 NaN/Inf"):
        obs.update(y)
    np.testing.assert_array_equal(obs.absmax, before[0])
    np.testing.assert_array_equal(obs.log_bins, before[1])
    assert obs.count == before[2]


def test_float64_and_float16_batches_match_float32_bins():
    x = _adversarial32()[:, 5:]  # normal float32 values: exact in float64, and the same exponents
    ref = ChannelObserver()
    ref.update(x)
    wide = ChannelObserver()
    wide.update(x.astype(np.float64))  # the numpy path
    np.testing.assert_array_equal(wide.log_bins, ref.log_bins)
    np.testing.assert_array_equal(wide.absmax, ref.absmax)
    half = np.array([[0.5, -2.0], [1e-5, 0.0]], dtype=np.float16)
    h, f = ChannelObserver(), ChannelObserver()
    h.update(half)
    f.update(half.astype(np.float64))
    np.testing.assert_array_equal(h.log_bins, f.log_bins)
