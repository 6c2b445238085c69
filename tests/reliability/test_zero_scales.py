"""Issue 13.4: a zero or non-finite scale is never written or applied, and NaN outputs never score perfectly."""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest
from click.testing import CliRunner

from tests.reliability.models import matmul_model, npy_folder, save
from trtq.accuracy.gates import Gates, check_gates
from trtq.accuracy.metrics import ErrorSums, OutputAccumulator
from trtq.cache import CalibrationTable, read_cache
from trtq.cache.files import serialize_table
from trtq.cli import main
from trtq.errors import EXIT_BAD_INPUT, CacheError


def _calibrate(tmp_path, model, arrays, *extra):
    path = save(model, tmp_path / "m.onnx")
    data = npy_folder(tmp_path / "data", arrays)
    cache = tmp_path / "m.cache"
    result = CliRunner().invoke(main, ["-q", "calibrate", str(path), "--calib", str(data), "--cache", str(cache),
                                       "--method", "minmax", "--workers", "0", *extra])
    return result, cache


def test_all_nan_data_with_ignore_is_an_error_not_a_zero_cache(tmp_path):
    result, cache = _calibrate(tmp_path, matmul_model(), [np.full(4, np.nan)] * 3, "--nan-policy", "ignore")
    assert result.exit_code == EXIT_BAD_INPUT, result.output
    assert "had no finite value" in result.output and len(result.output.strip().splitlines()) == 1
    assert not cache.exists()


def test_a_constant_zero_tensor_gets_a_positive_scale_and_a_true_warning(tmp_path):
    rng = np.random.default_rng(0)
    result, cache = _calibrate(tmp_path, matmul_model(zero_branch=True), [rng.normal(size=4) for _ in range(3)])
    assert result.exit_code == 0, result.output
    assert "constant zero" in result.output and "'z0'" in result.output
    scales = {}
    for line in cache.read_text().splitlines()[1:]:
        name, hexbits = line.rsplit(": ", 1)
        scales[name] = struct.unpack(">f", bytes.fromhex(hexbits))[0]
    assert all(s > 0 and math.isfinite(s) for s in scales.values()), scales
    assert read_cache(cache).amax["x"] > 0.1  # a real tensor keeps its real range


@pytest.mark.parametrize("fmt", ["trt", "json", "ort"])
def test_writers_refuse_a_zero_scale(fmt):
    with pytest.raises(CacheError, match="finite and positive"):
        serialize_table(CalibrationTable({"a": 1.0, "b": 0.0}), fmt)


def test_a_cache_with_a_zero_scale_is_refused_by_quantize(tmp_path):
    model = save(matmul_model(), tmp_path / "m.onnx")
    cache = tmp_path / "m.cache"
    cache.write_text("TRT-8601-EntropyCalibration2\nx: 3c010a14\nm: 00000000\n")
    result = CliRunner().invoke(main, ["quantize", str(model), "--cache", str(cache), "--force"])
    assert result.exit_code == EXIT_BAD_INPUT and "'m' (0.0)" in result.output


def test_nan_outputs_are_no_perfect_score():
    nan = np.full((2, 4), np.nan, np.float32)
    sums = ErrorSums()
    sums.update(nan, nan)
    assert math.isnan(sums.sqnr_db) and math.isnan(sums.cosine)
    acc = OutputAccumulator("y")
    acc.update(nan, nan, samples=2)
    metrics = acc.result()
    assert math.isnan(metrics.sqnr_db) and math.isnan(metrics.cosine)
    assert metrics.to_dict()["sqnr_db"] == "nan"


def test_a_gate_on_nan_metrics_fails():
    from trtq.accuracy.compare import ComparisonResult

    nan = np.full((2, 4), np.nan, np.float32)
    acc = OutputAccumulator("y")
    acc.update(nan, nan, samples=2)
    result = ComparisonResult("ref.onnx", "cand.onnx", "onnx", 2, 1, 0.0, {"y": acc.result()})
    failures = check_gates(result, Gates(min_sqnr=20.0, min_cosine=0.9))
    assert len(failures) == 2 and "nan" in failures[0].message
