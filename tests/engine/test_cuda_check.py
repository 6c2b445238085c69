"""A CUDA driver too old for the installed wheels is named, with what to install (issue 16 item 3)."""

from __future__ import annotations

import sys

import pytest

from tests.engine.models import conv_classifier
from tests.fake_trt import FakeCudart, fake_trt
from trtq.engine import ShapeRange, build_engine, cuda_check, gpu_available
from trtq.errors import MissingDependencyError
from trtq.onnx_model.model import save_model

T4 = (("Tesla T4", 7, 5),)


@pytest.fixture()
def wheels(monkeypatch):
    """Pretend the TensorRT wheels of a given CUDA major are installed."""
    def use(major):
        monkeypatch.setattr(cuda_check, "tensorrt_cuda_major", lambda: major)
    return use


def test_versions_of_a_working_machine(wheels):
    wheels(12)
    status = cuda_check.cuda_status(FakeCudart(devices=T4, driver=12080, runtime=12090))
    assert (status.driver, status.runtime, status.needed_major, status.devices) == ("12.8", "12.9", 12, 1)
    assert status.problem is None


def test_cuda13_wheels_on_a_cuda12_driver_say_to_install_tensorrt10_or_upgrade(wheels):
    wheels(13)
    status = cuda_check.cuda_status(FakeCudart(devices=T4, driver=12080, runtime=13000))
    assert status.problem == ("the NVIDIA driver supports CUDA 12.8 but the installed TensorRT/cuda-python "
                              "need CUDA 13")
    assert "trtq[tensorrt10]" in status.fix and "R580" in status.fix


def test_cuda12_tensorrt_with_cuda_python_13_on_a_cuda12_driver_is_a_mismatch_too(wheels):
    wheels(12)
    status = cuda_check.cuda_status(FakeCudart(devices=T4, driver=12040, runtime=13000))
    assert status.needed_major == 13 and "CUDA 12.4" in status.problem


def test_no_driver_and_no_device_are_told_apart(wheels):
    wheels(12)
    assert cuda_check.cuda_status(FakeCudart(driver=0, runtime=12090)).problem == "no NVIDIA driver found"
    assert cuda_check.cuda_status(FakeCudart(driver=12080, runtime=12090)).problem == "no CUDA device"


def test_gpu_available_names_the_mismatch_instead_of_no_device(monkeypatch, wheels):
    wheels(13)
    monkeypatch.setitem(sys.modules, "tensorrt", fake_trt("11.4.0.106"))
    monkeypatch.setitem(sys.modules, "cuda.bindings.runtime", FakeCudart(devices=T4, driver=12080, runtime=13000))
    ok, why = gpu_available()
    assert not ok and why.startswith("the NVIDIA driver supports CUDA 12.8") and "trtq[tensorrt10]" in why


def test_a_builder_that_cannot_be_created_is_one_line_with_the_fix_not_a_type_error(monkeypatch, tmp_path, wheels):
    wheels(13)
    monkeypatch.setitem(sys.modules, "tensorrt", fake_trt("11.4.0.106", builder_fails=True))
    monkeypatch.setitem(sys.modules, "cuda.bindings.runtime", FakeCudart(devices=T4, driver=12080, runtime=13000))
    save_model(conv_classifier(), tmp_path / "m.onnx")
    with pytest.raises(MissingDependencyError) as info:
        build_engine(tmp_path / "m.onnx", tmp_path / "m.engine",
                     profiles=[ShapeRange("x", (1, 3, 16, 16), (1, 3, 16, 16), (1, 3, 16, 16))])
    assert "cannot create a builder: the NVIDIA driver supports CUDA 12.8" in info.value.message
    assert "trtq[tensorrt10]" in info.value.hint
    assert not (tmp_path / "m.engine").exists()
