"""Real TensorRT engines on a GPU (skipped where TensorRT or a CUDA GPU is absent).

Runs on the self-hosted GPU runners (.github/workflows/gpu.yml): T4 with
TensorRT 10.16 (explicit and implicit paths) and A100 with TensorRT 11 (explicit
path; the implicit path must fail clearly). The engine's outputs are compared
with ONNX Runtime FP32 on the original model.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from tests.engine.models import conv_classifier
from trtq.calibrators.trt_calibrators import make_trt_calibrator
from trtq.config import QuantizeConfig
from trtq.engine import ShapeRange, build_engine, has_implicit_quantization, trt_runner, trt_version
from trtq.errors import MissingDependencyError
from trtq.onnx_model.model import fingerprint, save_model
from trtq.qdq import quantize_model

pytestmark = [pytest.mark.trt, pytest.mark.gpu]

SHAPE = (4, 3, 16, 16)
RANGE = ShapeRange("x", (1, 3, 16, 16), SHAPE, (8, 3, 16, 16))


def _batches(count: int, seed: int) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [{"x": rng.standard_normal(SHAPE).astype(np.float32)} for _ in range(count)]


def _run_fp32(model: onnx.ModelProto, feed: dict[str, np.ndarray], outputs: list[str] | None = None):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(outputs, feed)


def _amax(model: onnx.ModelProto, batches: list[dict[str, np.ndarray]]) -> dict[str, float]:
    """max |x| of every float tensor over the batches (minmax calibration, for the test's Q/DQ model)."""
    exposed = onnx.ModelProto()
    exposed.CopyFrom(model)
    names = ["x", *[out for node in model.graph.node for out in node.output]]
    known = {o.name for o in exposed.graph.output}
    exposed.graph.output.extend(onnx.helper.make_empty_tensor_value_info(n) for n in names if n not in known)
    amax = dict.fromkeys(names, 0.0)
    for batch in batches:
        for name, value in zip(names, _run_fp32(exposed, batch, names), strict=True):
            amax[name] = max(amax[name], float(np.abs(value).max()))
    return amax


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _engine_output(engine_path, feed: dict[str, np.ndarray]) -> np.ndarray:
    with trt_runner(engine_path) as runner:
        return np.asarray(runner.infer(feed)["y"])


@pytest.fixture(scope="module")
def fp32_model() -> onnx.ModelProto:
    return conv_classifier(batch="N")


@pytest.fixture(scope="module")
def fp32_path(tmp_path_factory, fp32_model):
    path = tmp_path_factory.mktemp("models") / "model.onnx"
    save_model(fp32_model, path)
    return path


def test_explicit_qdq_engine_matches_onnxruntime(tmp_path, fp32_model):
    result = quantize_model(fp32_model, _amax(fp32_model, _batches(4, seed=1)), QuantizeConfig())
    assert result.report.quantized, "the test model must get Q/DQ nodes"
    qdq_path = tmp_path / "model.qdq.onnx"
    save_model(result.model, qdq_path)
    engine, timing = tmp_path / "model.engine", tmp_path / "timing.cache"

    info = build_engine(qdq_path, engine, profiles=[RANGE], workspace_mb=256, timing_cache_path=timing,
                        fingerprint=fingerprint(fp32_model))

    feed = _batches(1, seed=2)[0]
    (expected,) = _run_fp32(fp32_model, feed)
    assert _cosine(_engine_output(engine, feed), expected) > 0.99
    sidecar = json.loads(info.sidecar_path.read_text())
    assert sidecar["tensorrt_version"] == trt_version() and sidecar["mode"] == "explicit"
    assert sidecar["device"]["name"] and sidecar["device"]["compute_capability"]
    assert timing.stat().st_size > 0
    again = build_engine(qdq_path, engine, profiles=[RANGE], timing_cache_path=timing)
    assert again.timing_cache_loaded


def test_implicit_calibration_writes_a_cache_that_the_next_build_reuses(tmp_path, fp32_path, fp32_model):
    if not has_implicit_quantization(trt_version()):
        pytest.skip("implicit INT8 exists only in TensorRT 10.x")
    store: dict[str, bytes] = {}
    engine = tmp_path / "model.engine"
    with make_trt_calibrator("entropy", _batches(6, seed=3), lambda: store.get("cache"),
                             lambda data: store.update(cache=data), ["x"], shapes={"x": SHAPE}) as calib:
        info = build_engine(fp32_path, engine, mode="implicit", profiles=[RANGE], calibrator=calib)
    assert calib.error is None and calib.batches_served == 6
    assert store["cache"].startswith(b"TRT-") and info.calibration["cache_written"]
    feed = _batches(1, seed=4)[0]
    (expected,) = _run_fp32(fp32_model, feed)
    assert _cosine(_engine_output(engine, feed), expected) > 0.99

    def no_batches():
        raise AssertionError("TensorRT asked for batches although a valid cache was offered")
        yield

    with make_trt_calibrator("entropy", no_batches(), lambda: store["cache"], lambda data: None, ["x"]) as calib:
        info = build_engine(fp32_path, tmp_path / "cached.engine", mode="implicit", profiles=[RANGE],
                            calibrator=calib)
    assert calib.error is None and calib.batches_served == 0
    assert info.calibration["cache_used"]


def test_trt11_refuses_implicit_calibration_clearly(tmp_path, fp32_path):
    if has_implicit_quantization(trt_version()):
        pytest.skip("TensorRT 10.x still has implicit INT8")
    with pytest.raises(MissingDependencyError, match="TensorRT 11"):
        make_trt_calibrator("entropy", [], lambda: None, lambda data: None, ["x"])
    with pytest.raises(MissingDependencyError, match="removed in TensorRT 11"):
        build_engine(fp32_path, tmp_path / "m.engine", mode="implicit", profiles=[RANGE], calibrator=object())
