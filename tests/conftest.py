"""Shared fixtures; skips `trt`/`gpu` tests cleanly where TensorRT or a GPU is absent."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from tests import assets

# Parser fuzzing (tests/reliability/test_fuzz_parsers.py): a fast, derandomized profile for every run and
# CI, and a long random one by hand: python -m pytest tests/reliability --hypothesis-profile trtq-long
settings.register_profile("trtq-fast", max_examples=25, deadline=None, derandomize=True, database=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("trtq-long", max_examples=2_000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("trtq-fast")


def _has_tensorrt() -> bool:
    try:
        import tensorrt  # noqa: F401
    except Exception:
        return False
    return True


def _has_gpu() -> bool:
    if importlib.util.find_spec("cuda") is None:
        return False
    try:
        from cuda.bindings import runtime as cudart

        err, count = cudart.cudaGetDeviceCount()
        return int(err) == 0 and count > 0
    except Exception:
        return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    trt_ok, gpu_ok = _has_tensorrt(), _has_gpu()
    for item in items:
        if item.get_closest_marker("trt") and not trt_ok:
            item.add_marker(pytest.mark.skip(reason="TensorRT is not installed"))
        if item.get_closest_marker("gpu") and not gpu_ok:
            item.add_marker(pytest.mark.skip(reason="no CUDA GPU"))


@pytest.fixture(scope="session")
def ocr_detector() -> Path:
    return assets.ocr_model(assets.OCR_DETECTOR)


@pytest.fixture(scope="session")
def ocr_recognizer() -> Path:
    return assets.ocr_model(assets.OCR_RECOGNIZER)


@pytest.fixture(scope="session")
def ocr_classifier() -> Path:
    return assets.ocr_model(assets.OCR_CLASSIFIER)


@pytest.fixture()
def photo_dir(tmp_path: Path) -> Path:
    """A temp folder with real colour photos copied in."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for src in assets.color_photos():
        shutil.copy(src, folder / src.name)
    return folder
