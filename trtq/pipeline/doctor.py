"""`trtq doctor`: what this machine can do, and what is missing for which feature."""

from __future__ import annotations

import importlib
import importlib.metadata
import platform
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from trtq._version import __version__
from trtq.engine.gpu_facts import gpu_facts, missing_features

# The TensorRT -libs wheels on PyPI are stubs that download the libraries from NVIDIA's own index.
NVIDIA_INDEX = "https://pypi.nvidia.com"
INSTALL_TENSORRT = (f"pip install --extra-index-url {NVIDIA_INDEX} 'trtq[tensorrt]' (TensorRT 11, CUDA 13 "
                    "driver R580+) or 'trtq[tensorrt10]' (TensorRT 10.16, CUDA 12; implicit INT8)")


@dataclass(frozen=True)
class Check:
    """One line of the doctor's report."""

    name: str
    ok: bool
    detail: str
    needed_for: str = ""
    fix: str = ""
    state: str | None = None  # what the first column says when neither "ok" nor "missing" is true

    @property
    def mark(self) -> str:
        return self.state or ("ok" if self.ok else "missing")


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _check_package(module: str, dists: tuple[str, ...], needed_for: str, fix: str) -> Check:
    try:
        importlib.import_module(module)
    except Exception as exc:  # a broken install raises more than ImportError
        return Check(module, False, f"not importable ({type(exc).__name__})", needed_for, fix)
    version = next((v for d in dists if (v := _version(d))), "unknown version")
    return Check(module, True, version, needed_for)


def _check_onnxruntime(facts: dict[str, Any]) -> list[Check]:
    base = _check_package("onnxruntime", ("onnxruntime-gpu", "onnxruntime"), "calibration and accuracy checks",
                          "pip install onnxruntime-gpu")
    if not base.ok:
        return [base]
    import onnxruntime as ort

    providers = ort.get_available_providers()
    checks = [Check("onnxruntime", True, f"{base.detail}; providers: {', '.join(providers)}")]
    # onnxruntime-gpu lists the CUDA provider whenever it is built with it; whether
    # CUDA really loads is only known once a session asks for it.
    cuda_listed = "CUDAExecutionProvider" in providers
    needed_for = "GPU calibration (CPU works without it)"
    if not cuda_listed:
        checks.append(Check("onnxruntime CUDA provider", False, "not available", needed_for,
                            "pip install onnxruntime-gpu"))
    elif facts["device"] is None:  # installed, but nothing for it to run on: not "ok"
        checks.append(Check("onnxruntime CUDA provider", False, "installed, no device (calibration runs on CPU)",
                            state="no device"))
    else:
        checks.append(Check("onnxruntime CUDA provider", True,
                            "listed (loads only with the CUDA libraries it was built for)", needed_for))
    return checks


def _check_tensorrt() -> list[Check]:
    trt_check = _check_package("tensorrt", ("tensorrt", "tensorrt-cu12", "tensorrt-cu13"),
                               "engine build and TensorRT accuracy checks", INSTALL_TENSORRT)
    if not trt_check.ok:
        return [trt_check]
    import tensorrt as trt

    version = getattr(trt, "__version__", trt_check.detail)
    implicit = hasattr(trt, "IInt8EntropyCalibrator2")
    mode = "implicit INT8 calibrators available" if implicit else "explicit (Q/DQ) quantization only"
    return [Check("tensorrt", True, f"{version}; {mode}", trt_check.needed_for)]


def _check_cuda(facts: dict[str, Any]) -> list[Check]:
    """Driver vs runtime, the libcudart Polygraphy will load, the device, the calibrators' buffers."""
    needed_for = "engine build and inference"
    cuda, device = facts["cuda"], facts["device"]
    versions = f"driver supports CUDA {cuda['driver'] or '-'}, cuda-python runtime {cuda['runtime'] or '-'}"
    checks = [Check("CUDA driver", cuda["problem"] is None, versions if cuda["problem"] is None
                    else f"{cuda['problem']} ({versions})", needed_for, cuda["fix"])]
    lib = cuda["libcudart"]
    checks.append(Check("CUDA runtime library", lib is not None,
                        f"{lib} ({cuda['libcudart_source']}; Polygraphy's TrtRunner loads this)" if lib
                        else "no libcudart.so found", "running engines (Polygraphy's TrtRunner)",
                        "pip install 'trtq[tensorrt]' (it brings the CUDA runtime wheel)"))
    if device:
        kinds = ", ".join(k.upper() for k in ("int8", "fp8") if device[k]) or "no INT8/FP8"
        checks.append(Check("CUDA device", device["tensorrt_supported"],
                            f"{cuda['devices']} device(s); 0: {device['name']} (SM {device['compute_capability']}; "
                            f"{kinds})", needed_for, "TensorRT 10/11 need SM 7.5 (Turing) or newer"))
    else:
        checks.append(Check("CUDA device", False, "none usable", needed_for,
                            cuda["fix"] or "run on a machine with an NVIDIA GPU and driver"))
    backend = facts["device_buffers"]
    checks.append(Check("calibrator device buffers", backend is not None,
                        backend or "neither pycuda nor cuda-python", "implicit INT8 calibration (TensorRT 10)",
                        "pip install 'trtq[tensorrt10]' (or 'trtq[pycuda]')"))
    return checks


def run_checks(facts: dict[str, Any] | None = None) -> list[Check]:
    """Check Python, the core packages, ONNX Runtime providers, TensorRT, CUDA and extras.

    `facts`: trtq.engine.gpu_facts.gpu_facts(), if the caller has them already.
    """
    checks = [Check("python", sys.version_info >= (3, 10), f"{platform.python_version()} ({platform.machine()})",
                    "everything", "use Python 3.10 or newer")]
    facts = facts if facts is not None else gpu_facts()
    checks.append(_check_package("onnx", ("onnx",), "everything", "pip install onnx"))
    checks += _check_onnxruntime(facts)
    checks.append(_check_package("polygraphy", ("polygraphy",), "accuracy comparison", "pip install polygraphy"))
    checks += _check_tensorrt()
    checks += _check_cuda(facts)
    checks.append(_check_package("av", ("av",), "video calibration data", "pip install 'trtq[video]'"))
    checks.append(_check_package("matplotlib", ("matplotlib",), "report plots", "pip install 'trtq[plot]'"))
    checks.append(_check_package("onnxslim", ("onnxslim",), "graph optimization (trtq optimize, --optimize)",
                                 "pip install 'trtq[optimize]'"))
    return checks


def doctor_json(wanted: Sequence[str] = ()) -> dict[str, Any]:
    """`trtq doctor --json`: the checks plus the GPU facts (trtq.engine.gpu_facts), and what `wanted` lacks."""
    facts = gpu_facts()
    checks = run_checks(facts)
    return {"trtq": __version__, "python": platform.python_version(), "polygraphy": _version("polygraphy"),
            **facts, "checks": [asdict(c) for c in checks], "missing": missing_features(facts, list(wanted))}


def render_checks(checks: list[Check]) -> str:
    """One line per check: ok/missing, what, and what it is needed for."""
    lines = []
    width = max(len(c.mark) for c in checks)
    for c in checks:
        line = f"{c.mark:<{width}}  {c.name:<26} {c.detail}"
        if not c.ok and c.needed_for:
            line += f"  -> needed for {c.needed_for}; {c.fix}"
        lines.append(line)
    return "\n".join(lines)
