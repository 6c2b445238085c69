"""Issue 13.2, 13.3, 13.5, 13.6: no other model's cache is applied or overwritten, a reused cache is
re-headed for the asked TensorRT version, and ema caches do not depend on the batch size."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from tests.reliability.models import matmul_chain, matmul_model, npy_folder, save
from trtq.cli import main
from trtq.errors import EXIT_BAD_INPUT


def _invoke(*args):
    return CliRunner().invoke(main, ["-q", *args])


@pytest.fixture()
def chain(tmp_path):
    rng = np.random.default_rng(1)
    data = npy_folder(tmp_path / "data", [rng.normal(size=4) for _ in range(8)])
    return save(matmul_chain(), tmp_path / "chain.onnx"), data


def test_a_trt_cache_naming_one_tensor_is_refused_by_quantize(chain, tmp_path):
    model, _ = chain
    cache = tmp_path / "other.cache"  # TensorRT-written (no sidecar), another model sharing only 'x'
    cache.write_text("TRT-8601-EntropyCalibration2\nx: 3c010a14\nconv1: 3c23d70a\n")
    result = _invoke("quantize", str(model), "--cache", str(cache), "-o", str(tmp_path / "q.onnx"))
    assert result.exit_code == EXIT_BAD_INPUT, result.output
    assert "names only 1 of the model's 4 quantizable tensors" in result.output
    assert not (tmp_path / "q.onnx").exists()
    forced = _invoke("quantize", str(model), "--cache", str(cache), "-o", str(tmp_path / "q.onnx"), "--force")
    assert forced.exit_code == 0 and "used anyway (--force)" in forced.output


def test_a_trt_cache_of_this_model_is_accepted(chain, tmp_path):
    model, _ = chain
    cache = tmp_path / "same.cache"
    cache.write_text("TRT-8601-EntropyCalibration2\n" + "".join(f"{n}: 3c010a14\n" for n in ("x", "r0", "r1", "r2")))
    result = _invoke("quantize", str(model), "--cache", str(cache), "-o", str(tmp_path / "q.onnx"))
    assert result.exit_code == 0, result.output


def test_save_stats_never_overwrites_another_models_cache(chain, tmp_path):
    model, data = chain
    other = save(matmul_model(), tmp_path / "other.onnx")
    cache = tmp_path / "shared.cache"
    assert _invoke("calibrate", str(other), "--calib", str(data), "--cache", str(cache), "--method", "minmax",
                   "--workers", "0").exit_code == 0
    before = cache.read_bytes(), (tmp_path / "shared.cache.json").read_bytes()
    args = ["calibrate", str(model), "--calib", str(data), "--cache", str(cache), "--method", "minmax",
            "--workers", "0", "--save-stats", str(tmp_path / "s.npz")]
    result = _invoke(*args)
    assert result.exit_code == EXIT_BAD_INPUT and "refusing to overwrite" in result.output, result.output
    assert (cache.read_bytes(), (tmp_path / "shared.cache.json").read_bytes()) == before
    assert _invoke(*args, "--force").exit_code == 0
    assert cache.read_bytes() != before[0]


def test_a_reused_cache_is_reheaded_for_the_asked_trt_version(chain, tmp_path):
    model, data = chain
    cache = tmp_path / "c.cache"
    args = ["calibrate", str(model), "--calib", str(data), "--cache", str(cache), "--method", "minmax",
            "--workers", "0"]
    assert _invoke(*args, "--trt-version", "8.6.1").exit_code == 0
    assert cache.read_text().startswith("TRT-8601-")
    scales = cache.read_text().splitlines()[1:]
    result = _invoke(*args, "--trt-version", "10.16.1")
    assert result.exit_code == 0 and "reused" in result.output
    assert cache.read_text().startswith("TRT-101601-") and cache.read_text().splitlines()[1:] == scales
    assert "reused" in _invoke(*args, "--trt-version", "10.16.1").output  # the sidecar followed


def test_ema_caches_do_not_depend_on_the_batch_size(chain, tmp_path):
    model, data = chain
    caches = []
    for batch in (1, 3, 8):
        cache = tmp_path / f"b{batch}.cache"
        assert _invoke("calibrate", str(model), "--calib", str(data), "--cache", str(cache), "--method", "ema",
                       "--ema-constant", "0.3", "--batch-size", str(batch), "--workers", "0").exit_code == 0
        caches.append(cache.read_bytes())
    assert caches[0] == caches[1] == caches[2]
