"""--pow2: power-of-two INT8 scales in the cache, its sidecar and the Q/DQ model."""

from __future__ import annotations

import json
import math

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from click.testing import CliRunner

from tests.image_models import conv_classifier, image_args, save
from trtq.cache import read_cache
from trtq.calibrators import round_to_power_of_two_scale
from trtq.cli import main
from trtq.config import QuantizeConfig
from trtq.errors import ConfigError
from trtq.qdq import quantize_model
from trtq.qdq.pow2 import is_power_of_two, qdq_scales
from trtq.qdq.scales import power_of_two_scale


def test_amax_is_rounded_up_to_127_times_a_power_of_two():
    assert round_to_power_of_two_scale(127.0) == 127.0  # scale 1
    assert round_to_power_of_two_scale(127.5) == 254.0  # scale 2
    assert round_to_power_of_two_scale(1.0) == 127.0 / 64  # scale 2^-6 = 0.015625 >= 1/127
    assert round_to_power_of_two_scale(0.0) == 0.0
    for amax in np.random.default_rng(0).uniform(1e-6, 1e4, 200):
        rounded = round_to_power_of_two_scale(float(amax))
        assert amax <= rounded < 2 * amax
        assert is_power_of_two(np.float32(rounded / 127.0))
    with pytest.raises(ValueError):
        round_to_power_of_two_scale(-1.0)


def test_scales_are_rounded_up_to_powers_of_two():
    scale = np.array([0.75, 1.0, 1e-3, 3.0, 2.0**-20 * 1.01], np.float32)
    assert power_of_two_scale(scale).tolist() == [1.0, 1.0, 2.0**-9, 4.0, 2.0**-19]
    assert is_power_of_two(np.array([1.0, 0.5, 2.0**-30, 3.0, 0.0, -2.0])).tolist() == [
        True, True, True, False, False, False]


def _calibrate(model, photos, cache, *extra):
    args = ["-q", "calibrate", str(model), "--calib", str(photos), "--cache", str(cache), "--method", "percentile",
            *image_args(), "--batch-size", "4", *extra]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    return result.output


def test_pow2_cache_and_qdq_model_have_power_of_two_scales(tmp_path, photo_dir):
    model = save(conv_classifier(), tmp_path / "cls.onnx")
    plain, pow2 = tmp_path / "plain.cache", tmp_path / "pow2.cache"
    _calibrate(model, photo_dir, plain)
    _calibrate(model, photo_dir, pow2, "--pow2")
    a, b = read_cache(plain), read_cache(pow2)
    assert a.amax.keys() == b.amax.keys() and a.amax
    for name, amax in a.amax.items():
        # The TensorRT cache stores the scale amax / 127 as a float32: exactly 2^k, covering the plain range.
        assert is_power_of_two(np.float32(b.amax[name] / 127.0)), (name, b.amax[name])
        assert amax <= b.amax[name] * (1 + 1e-6) and b.amax[name] < 2 * amax * (1 + 1e-6)
    assert json.loads((tmp_path / "pow2.cache.json").read_text())["provenance"]["algorithm_params"]["pow2"] is True
    # The reuse check sees it: the pow2 cache is not reused for a plain run (and says why).
    again = _calibrate(model, photo_dir, pow2)
    assert "its parameters differ (pow2 True -> unset)" in again

    qdq = quantize_model(onnx.load(str(model)), b.amax, QuantizeConfig(pow2=True)).model
    scales = qdq_scales(qdq)
    assert len(scales) >= 4  # activations and per-channel weights of the Conv and the Gemm
    assert all(is_power_of_two(v).all() for v in scales.values()), scales
    plain_qdq = quantize_model(onnx.load(str(model)), a.amax, QuantizeConfig()).model
    assert not all(is_power_of_two(v).all() for v in qdq_scales(plain_qdq).values())
    # The pow2 model runs and stays close to FP32 (its ranges are at most 2x wider).
    x = np.random.default_rng(1).uniform(0, 1, (4, 3, 32, 32)).astype(np.float32)
    run = {name: ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
           for name, m in (("fp32", onnx.load(str(model))), ("pow2", qdq))}
    err = float(np.sum((run["pow2"] - run["fp32"]) ** 2))
    assert 10 * math.log10(float(np.sum(run["fp32"] ** 2)) / max(err, 1e-30)) > 20


def test_pow2_is_refused_with_fp8_and_with_power_of_two(tmp_path):
    model = conv_classifier()
    with pytest.raises(ConfigError, match="--pow2"):
        quantize_model(model, {"x": 1.0}, QuantizeConfig(precision="fp8", pow2=True))
    from trtq.calibration.ranges import ranges_from_stats
    from trtq.config import CalibrationConfig

    with pytest.raises(ConfigError, match="two different ways"):
        ranges_from_stats({}, CalibrationConfig(power_of_two=True), pow2=True)


def test_build_refuses_pow2_with_fp8_before_calibrating(tmp_path, monkeypatch):
    from trtq.errors import EXIT_USAGE
    from trtq.pipeline import calibrate as calibrate_module

    model = save(conv_classifier(), tmp_path / "cls.onnx")
    data = tmp_path / "x.npy"
    np.save(data, np.random.default_rng(0).uniform(0, 1, (5, 3, 32, 32)).astype(np.float32))
    monkeypatch.setattr(calibrate_module, "collect_statistics", lambda *a, **k: pytest.fail("calibrated"))
    result = CliRunner().invoke(main, ["-q", "build", str(model), "--calib", str(data), "-o", str(tmp_path / "o"),
                                       "--pow2", "--precision", "fp8"])
    assert result.exit_code == EXIT_USAGE and "--pow2" in result.output
