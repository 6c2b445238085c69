"""`trtq doctor --json` and `--require`: facts a CI job can gate on (issue 16: doctor --json, items 1, 3, 10)."""

from __future__ import annotations

import json
import sys

import pytest
from click.testing import CliRunner

from tests.fake_trt import FakeCudart, fake_trt
from trtq.cli import main
from trtq.engine import cuda_check, cuda_runtime, gpu_available, gpu_facts
from trtq.errors import EXIT_MISSING_DEPENDENCY

T4 = (("Tesla T4", 7, 5),)
H100 = (("NVIDIA H100 80GB HBM3", 9, 0),)


def _doctor(*args: str):
    return CliRunner().invoke(main, ["doctor", *args])


@pytest.fixture()
def machine(monkeypatch):
    """Fake a GPU machine: a TensorRT version, its wheels' CUDA major, and a device with a driver."""
    def make(version, major, devices, driver, runtime):
        monkeypatch.setitem(sys.modules, "tensorrt", fake_trt(version))
        monkeypatch.setitem(sys.modules, "cuda.bindings.runtime",
                            FakeCudart(devices=devices, driver=driver, runtime=runtime))
        for module in (cuda_check, gpu_facts, cuda_runtime):
            monkeypatch.setattr(module, "tensorrt_cuda_major", lambda: major)
        monkeypatch.setattr(gpu_facts, "pycuda_installed", lambda: False)
        monkeypatch.setattr("trtq.calibrators.device_memory.pycuda_installed", lambda: False)
    return make


def test_json_on_this_machine_matches_what_the_build_will_do():
    result = _doctor("--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["can"]["engine"] == gpu_available()[0]
    assert {c["name"] for c in data["checks"]} >= {"tensorrt", "CUDA driver", "CUDA runtime library",
                                                  "calibrator device buffers"}
    assert data["missing"] == []


def test_t4_with_tensorrt10_offers_engines_and_implicit_int8_but_not_fp8(machine):
    machine("10.16.1.11", 12, T4, 12080, 12090)
    data = json.loads(_doctor("--json", "--require", "engine,implicit_int8,int8").output)
    assert data["tensorrt"] == {"version": "10.16.1.11", "cuda_major": 12, "implicit_int8": True}
    assert (data["cuda"]["driver"], data["cuda"]["runtime"], data["cuda"]["problem"]) == ("12.8", "12.9", None)
    assert data["device"] == {"name": "Tesla T4", "compute_capability": "7.5", "int8": True, "fp8": False,
                              "tensorrt_supported": True}
    assert data["device_buffers"] == "cuda-python"
    assert data["extras"]["tensorrt10"] and not data["extras"]["tensorrt"]
    assert data["missing"] == []
    failed = _doctor("--json", "--require", "engine,fp8")
    assert failed.exit_code == EXIT_MISSING_DEPENDENCY and "lacks: fp8" in failed.stderr


def test_h100_with_tensorrt11_offers_fp8_and_no_implicit_int8(machine):
    machine("11.4.0.106", 13, H100, 13000, 13000)
    data = json.loads(_doctor("--json").output)
    assert data["can"]["fp8"] and not data["can"]["implicit_int8"] and data["extras"]["tensorrt"]


def test_cuda13_tensorrt_on_a_cuda12_driver_is_named_with_the_fix(machine):
    machine("11.4.0.106", 13, T4, 12080, 13000)
    result = _doctor("--require", "engine")
    assert result.exit_code == EXIT_MISSING_DEPENDENCY
    line = next(x for x in result.stdout.splitlines() if " CUDA driver " in x)
    assert line.startswith("missing") and "supports CUDA 12.8" in line and "trtq[tensorrt10]" in line
    assert result.stderr.startswith("error: this machine lacks: engine")


def test_doctor_says_which_cuda_runtime_and_which_buffer_library(machine, tmp_path, monkeypatch):
    machine("11.4.0.106", 13, T4, 13000, 13000)
    lib = tmp_path / "site" / "nvidia" / "cu13" / "lib" / "libcudart.so.13"
    lib.parent.mkdir(parents=True)
    lib.write_bytes(b"")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    for name in [m for m in sys.modules if m == "nvidia" or m.startswith("nvidia.")]:
        monkeypatch.delitem(sys.modules, name)
    lines = _doctor().stdout.splitlines()
    runtime = next(x for x in lines if " CUDA runtime library " in x)
    assert str(lib) in runtime and "wheel" in runtime
    assert "cuda-python" in next(x for x in lines if " calibrator device buffers " in x)
    monkeypatch.setattr("trtq.calibrators.device_memory.pycuda_installed", lambda: True)
    assert json.loads(_doctor("--json").output)["device_buffers"] == "pycuda"


def test_unknown_feature_is_a_usage_error():
    result = _doctor("--require", "warp-drive")
    assert result.exit_code == 2 and "warp-drive" in result.output


def test_cuda_provider_without_a_device_is_not_ok(monkeypatch):
    import onnxruntime

    from trtq.pipeline.doctor import render_checks, run_checks

    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: providers)
    facts = gpu_facts.gpu_facts()
    line = next(x for x in render_checks(run_checks({**facts, "device": None})).splitlines() if "CUDA provider" in x)
    assert line.startswith("no device") and "installed, no device" in line
    device = {"name": "Tesla T4", "compute_capability": "7.5", "int8": True, "fp8": False, "tensorrt_supported": True}
    line = next(x for x in render_checks(run_checks({**facts, "device": device})).splitlines() if "CUDA provider" in x)
    assert line.startswith("ok ")


def test_doctor_checks_the_plot_extra():
    line = next(x for x in _doctor().output.splitlines() if " matplotlib " in x)
    try:
        import matplotlib  # noqa: F401

        assert line.startswith("ok")
    except ImportError:
        assert line.startswith("missing") and "trtq[plot]" in line


def test_the_cli_lists_the_features_gpu_facts_knows():
    from trtq.cli import doctor_cmd

    assert doctor_cmd.FEATURES == gpu_facts.FEATURES
