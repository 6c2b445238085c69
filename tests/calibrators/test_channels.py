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
