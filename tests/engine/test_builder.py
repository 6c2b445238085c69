"""build_engine's control flow on a fake tensorrt module (TensorRT 10 and 11 paths), on CPU.

The fake (tests/fake_trt.py) records what the builder asked for; the real API
names are checked against the real bindings in test_trt_api_names.py, and the
real build runs in test_engine_gpu.py on GPU runners.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from tests.engine.models import conv_classifier
from tests.fake_trt import FakeCudart, fake_trt
from trtq.calibrators.trt_calibrators import make_trt_calibrator
from trtq.engine import ShapeRange, build_engine, sidecar_path
from trtq.errors import ConfigError, DataError, MissingDependencyError, ModelError, TrtqError
from trtq.onnx_model.model import fingerprint, save_model

RANGE = ShapeRange("x", (1, 3, 16, 16), (4, 3, 16, 16), (8, 3, 16, 16))


@pytest.fixture()
def model_path(tmp_path):
    path = tmp_path / "model.onnx"
    save_model(conv_classifier(), path)
    return path


def _use(monkeypatch, trt):
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    return trt


def _calibrator(trt, batches, store: dict, names=("x",)):
    return make_trt_calibrator("entropy", batches, lambda: store.get("cache"), lambda data: store.update(cache=data),
                               list(names), shapes={"x": RANGE.opt}, trt_module=trt, cudart_module=FakeCudart())


def test_trt11_builds_a_strongly_typed_network_and_writes_engine_sidecar_and_timing_cache(monkeypatch, tmp_path,
                                                                                          model_path):
    trt = _use(monkeypatch, fake_trt("11.4.0.106"))
    out, cache = tmp_path / "out" / "model.engine", tmp_path / "timing.cache"
    info = build_engine(model_path, out, profiles=[RANGE], workspace_mb=64, timing_cache_path=cache,
                        fingerprint=fingerprint(conv_classifier()))
    flags, config = trt.built[0]
    assert flags == 0  # TensorRT 11: create_network() without flags, strongly typed anyway
    assert out.read_bytes() == b"ENGINE:0"
    assert config.pools == {trt.MemoryPoolType.WORKSPACE: 64 * 2**20}
    assert config.profiles[0].shapes == {"x": (RANGE.min, RANGE.opt, RANGE.max)}
    assert cache.read_bytes() == b"+tactics" and not info.timing_cache_loaded
    sidecar = json.loads(sidecar_path(out).read_text())
    assert sidecar["tensorrt_version"] == "11.4.0.106"
    assert sidecar["mode"] == "explicit" and sidecar["precision"] == "int8"
    assert sidecar["profiles"] == [{"input": "x", "min": [1, 3, 16, 16], "opt": [4, 3, 16, 16], "max": [8, 3, 16, 16]}]
    assert sidecar["source_model"]["fingerprint"]["graph"] == fingerprint(conv_classifier()).graph
    assert sidecar["timing_cache"] == {"path": str(cache), "loaded": False}
    assert sidecar["calibration"] is None

    again = build_engine(model_path, out, profiles=[RANGE], timing_cache_path=cache)
    assert again.timing_cache_loaded and cache.read_bytes() == b"+tactics+tactics"


def test_timing_cache_from_another_gpu_is_replaced(monkeypatch, tmp_path, model_path):
    _use(monkeypatch, fake_trt("11.4.0.106"))
    cache = tmp_path / "timing.cache"
    cache.write_bytes(b"OTHER-GPU")
    info = build_engine(model_path, tmp_path / "m.engine", profiles=[RANGE], timing_cache_path=cache)
    assert not info.timing_cache_loaded
    assert cache.read_bytes() == b"+tactics"


def test_trt10_explicit_uses_the_strongly_typed_flag_and_no_precision_flags(monkeypatch, tmp_path, model_path):
    trt = _use(monkeypatch, fake_trt("10.16.1.11"))
    build_engine(model_path, tmp_path / "m.engine", profiles=[RANGE])
    flags, config = trt.built[0]
    assert flags == 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    assert config.flags == set() and config.int8_calibrator is None


def test_trt10_implicit_calibrates_once_then_reuses_the_cache(monkeypatch, tmp_path, model_path):
    trt = _use(monkeypatch, fake_trt("10.16.1.11"))
    rng = np.random.default_rng(0)
    batches = [{"x": rng.standard_normal((4, 3, 16, 16)).astype(np.float32)} for _ in range(3)]
    batches.insert(1, {"x": np.zeros((2, 3, 16, 16), np.float32)})  # not the OPT shape: skipped
    store: dict = {}
    with _calibrator(trt, batches, store) as calib:
        info = build_engine(model_path, tmp_path / "m.engine", mode="implicit", profiles=[RANGE], calibrator=calib,
                            fp16_fallback=True)
    flags, config = trt.built[0]
    assert flags == 0  # weakly typed
    assert config.flags == {trt.BuilderFlag.INT8, trt.BuilderFlag.FP16}
    assert config.int8_calibrator is calib and config.calibration_profile is config.profiles[0]
    assert info.calibration == {"kind": "entropy", "batches": 3, "batches_skipped": 1, "cache_used": False,
                                "cache_written": True}
    assert store["cache"].startswith(b"TRT-")

    def must_not_run():
        raise AssertionError("get_batch called although the cache was accepted")
        yield

    with _calibrator(trt, must_not_run(), store) as calib:
        info = build_engine(model_path, tmp_path / "m.engine", mode="implicit", profiles=[RANGE], calibrator=calib)
    assert calib.error is None
    assert info.calibration["cache_used"] and info.calibration["batches"] == 0
    assert json.loads(info.sidecar_path.read_text())["calibration"]["cache_used"] is True


def test_calibration_errors_surface_from_the_build(monkeypatch, tmp_path, model_path):
    trt = _use(monkeypatch, fake_trt("10.16.1.11"))
    calib = _calibrator(trt, [{"y": np.zeros((4, 3, 16, 16), np.float32)}], {})
    with pytest.raises(DataError, match="input 'x'"):
        build_engine(model_path, tmp_path / "m.engine", mode="implicit", profiles=[RANGE], calibrator=calib)
    assert not (tmp_path / "m.engine").exists()


def test_implicit_mode_is_refused_on_trt11(monkeypatch, tmp_path, model_path):
    _use(monkeypatch, fake_trt("11.4.0.106"))
    with pytest.raises(MissingDependencyError, match="removed in TensorRT 11") as info:
        build_engine(model_path, tmp_path / "m.engine", mode="implicit", calibrator=object())
    assert "Q/DQ" in info.value.hint


def test_parser_errors_name_the_node(monkeypatch, tmp_path, model_path):
    _use(monkeypatch, fake_trt("11.4.0.106", unsupported=("Conv",)))
    with pytest.raises(ModelError) as info:
        build_engine(model_path, tmp_path / "m.engine", profiles=[RANGE])
    assert "node 'conv_1' (Conv): no importer registered" in info.value.message
    assert "node 'conv_2' (Conv)" in info.value.message
    assert not (tmp_path / "m.engine").exists()


def test_failed_build_reports_tensorrt_errors_and_leaves_no_file(monkeypatch, tmp_path, model_path):
    _use(monkeypatch, fake_trt("11.4.0.106", fail_build=True))
    with pytest.raises(TrtqError, match="Error Code 4: no implementation for node conv"):
        build_engine(model_path, tmp_path / "m.engine", profiles=[RANGE])
    assert list(tmp_path.glob("m.engine*")) == []


def test_profiles_must_match_the_network_inputs(monkeypatch, tmp_path, model_path):
    _use(monkeypatch, fake_trt("11.4.0.106"))
    with pytest.raises(ConfigError, match="input\\(s\\) x have dynamic shapes"):
        build_engine(model_path, tmp_path / "m.engine")
    with pytest.raises(ConfigError, match="inputs the network does not have: image"):
        build_engine(model_path, tmp_path / "m.engine", profiles=[RANGE, ShapeRange("image", (1,), (1,), (1,))])


def test_fixed_shape_model_needs_no_profile(monkeypatch, tmp_path):
    trt = _use(monkeypatch, fake_trt("11.4.0.106"))
    path = tmp_path / "fixed.onnx"
    save_model(conv_classifier(batch=2), path)
    info = build_engine(path, tmp_path / "m.engine")
    assert trt.built[0][1].profiles == [] and info.profiles == ()


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"mode": "fast"}, "mode 'fast'"),
    ({"workspace_mb": 0}, "workspace_mb is 0"),
    ({"mode": "implicit"}, "needs a calibrator"),
    ({"fp16_fallback": True}, "implicit mode only"),
])
def test_argument_errors_come_before_tensorrt(monkeypatch, tmp_path, model_path, kwargs, match):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(ConfigError, match=match):
        build_engine(model_path, tmp_path / "m.engine", **kwargs)


def test_missing_model_and_missing_tensorrt(monkeypatch, tmp_path, model_path):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(ModelError, match="does not exist"):
        build_engine(tmp_path / "nope.onnx", tmp_path / "m.engine")
    with pytest.raises(MissingDependencyError) as info:
        build_engine(model_path, tmp_path / "m.engine")
    assert info.value.hint == "pip install 'trtq[tensorrt]'"
