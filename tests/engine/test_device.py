"""gpu_available() says why an engine cannot be built here."""

from __future__ import annotations

import sys

from tests.fake_trt import FakeCudart, fake_trt
from trtq.engine.device import DeviceInfo, device_info, gpu_available


def test_without_tensorrt(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    assert gpu_available() == (False, "TensorRT is not installed")


def test_without_cuda_python(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", fake_trt())
    monkeypatch.setitem(sys.modules, "cuda.bindings.runtime", None)
    assert gpu_available() == (False, "cuda-python missing")
    assert device_info() is None


def test_without_a_device(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", fake_trt())
    monkeypatch.setitem(sys.modules, "cuda.bindings.runtime", FakeCudart())
    assert gpu_available() == (False, "no CUDA device")
    assert device_info() is None


def test_with_a_device(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", fake_trt())
    monkeypatch.setitem(sys.modules, "cuda.bindings.runtime", FakeCudart(devices=(("NVIDIA A100-SXM4-40GB", 8, 0),)))
    assert gpu_available() == (True, "NVIDIA A100-SXM4-40GB")
    assert device_info() == DeviceInfo("NVIDIA A100-SXM4-40GB", "8.0")
