"""MSE-optimal per-channel weight ranges: analytic cases, brute force, and the quantizer hook."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import numpy_helper

from tests.qdq import models
from tests.qdq.helpers import activation_amax, random_feeds, run, sqnr_db
from trtq.config import QuantizeConfig
from trtq.errors import ConfigError
from trtq.qdq import quantize_model
from trtq.qdq.scales import FP8, INT8
from trtq.qdq.weight_clipping import channel_errors, mse_weight_amax


def _int8_error(w: np.ndarray, amax: float) -> float:
    """Independent INT8 fake quantization (round half to even, clip to [-128, 127]): summed squared error."""
    s = np.float32(amax / 127)
    q = np.clip(np.rint(w.astype(np.float32) / s), -128, 127) * s
    return float(np.sum((q.astype(np.float64) - w) ** 2))


def test_weights_on_the_int8_grid_keep_their_max():
    # w = k * s for k = -127..127: at amax = 127 s every weight is exact, any smaller range clips.
    w = (np.arange(-127, 128, dtype=np.float32) * 0.01).reshape(1, -1)
    amax = mse_weight_amax(w, axis=0)
    assert amax.shape == (1,)
    assert amax[0] == pytest.approx(1.27, rel=1e-6)


def test_heavy_tailed_channel_is_clipped_to_the_brute_force_optimum():
    # Student-t with 3 degrees of freedom: 64k weights whose largest ones sit far out in a populated tail.
    rng = np.random.default_rng(0)
    w = rng.standard_t(3, (1, 65536)).astype(np.float32)
    top = float(np.abs(w).max())
    amax = float(mse_weight_amax(w, axis=0)[0])
    grid = np.linspace(0.5, 1.0, 501) * top  # 10x finer than the 100-step search
    errors = np.array([_int8_error(w, a) for a in grid])
    assert amax < 0.95 * top
    assert _int8_error(w, amax) <= 1.01 * errors.min()
    assert _int8_error(w, amax) < 0.9 * _int8_error(w, top)
    assert float(channel_errors(w, np.array([amax]), 0)[0]) == pytest.approx(_int8_error(w, amax), rel=1e-6)


def test_channels_are_searched_independently_along_the_axis():
    # ConvTranspose-like layout, channels on axis 1: channel 0 on the INT8 grid, channel 1 heavy-tailed.
    rng = np.random.default_rng(1)
    w = np.empty((3, 2, 64, 64), np.float32)
    w[:, 0] = (np.resize(np.arange(-127, 128), 3 * 64 * 64) * 0.02).reshape(3, 64, 64)
    w[:, 1] = rng.standard_t(3, (3, 64, 64))
    amax = mse_weight_amax(w, axis=1)
    tops = np.abs(w).max(axis=(0, 2, 3))
    assert amax.shape == (2,)
    assert amax[0] == pytest.approx(tops[0], rel=1e-6)
    assert amax[1] < tops[1]
    assert amax[1] == mse_weight_amax(w[:, 1:], axis=1)[0]
    whole = mse_weight_amax(w, axis=None)
    assert whole.shape == () and 0 < float(whole) <= tops.max()


def test_never_worse_than_max_and_zero_channels_stay_zero():
    rng = np.random.default_rng(2)
    w = rng.standard_normal((6, 8, 3, 3)).astype(np.float32)
    w[3] = 0.0
    for qtype in (INT8, FP8):
        amax = mse_weight_amax(w, axis=0, qtype=qtype)
        full = np.abs(w).max(axis=(1, 2, 3))
        assert amax[3] == 0.0
        assert np.all(amax <= full)
        assert np.all(channel_errors(w, amax, 0, qtype) <= channel_errors(w, full, 0, qtype))
    with pytest.raises(ValueError, match="steps"):
        mse_weight_amax(w, 0, steps=0)


def test_quantizer_uses_clipped_weight_scales():
    model = models.depthwise(seed=3)
    feeds = random_feeds(model, seed=4, count=2)
    amax = activation_amax(model, feeds)
    result = quantize_model(model, amax, QuantizeConfig(weight_clipping="mse"))
    inits = {t.name: numpy_helper.to_array(t) for t in result.model.graph.initializer}
    w = inits["pw"]
    expected = (np.maximum(mse_weight_amax(w, axis=0), 1e-8) / 127).astype(np.float32)
    np.testing.assert_array_equal(inits["pw_scale"], expected)
    # Pre-quantized INT8 weights hold the same values the Q/DQ pair computes.
    stored = quantize_model(model, amax, QuantizeConfig(weight_clipping="mse", weights="int8")).model
    qdq_out, int8_out = run(result.model, feeds[0])[0], run(stored, feeds[0])[0]
    np.testing.assert_allclose(int8_out, qdq_out, rtol=1e-5, atol=1e-5)
    fp32_out = run(model, feeds[0])[0]
    assert sqnr_db(fp32_out, qdq_out) > 25.0


def test_unknown_clipping_mode_is_a_config_error():
    model = models.depthwise()
    amax = activation_amax(model, random_feeds(model, seed=0))
    with pytest.raises(ConfigError, match="weight clipping 'l2'"):
        quantize_model(model, amax, QuantizeConfig(weight_clipping="l2"))
