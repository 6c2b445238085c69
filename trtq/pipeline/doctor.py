"""`trtq doctor`: what this machine can do, and what is missing for which feature."""

from __future__ import annotations

import importlib
import importlib.metadata
import platform
import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class Check:
    """One line of the doctor's report."""

    name: str
    ok: bool
    detail: str
    needed_for: str = ""
    fix: str = ""


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


def _check_onnxruntime() -> list[Check]:
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
    checks.append(Check("onnxruntime CUDA provider", cuda_listed,
                        "listed (loads only with CUDA libraries and a GPU)" if cuda_listed else "not available",
                        "GPU calibration (CPU works without it)", "pip install onnxruntime-gpu"))
    return checks


def _check_tensorrt() -> list[Check]:
    trt_check = _check_package("tensorrt", ("tensorrt", "tensorrt-cu12", "tensorrt-cu13"),
                               "engine build and TensorRT accuracy checks", "pip install 'trtq[tensorrt]'")
    if not trt_check.ok:
        return [trt_check]
    import tensorrt as trt

    version = getattr(trt, "__version__", trt_check.detail)
    implicit = hasattr(trt, "IInt8EntropyCalibrator2")
    mode = "implicit INT8 calibrators available" if implicit else "explicit (Q/DQ) quantization only"
    return [Check("tensorrt", True, f"{version}; {mode}", trt_check.needed_for)]


def _check_cuda_device() -> Check:
    needed_for, fix = "engine build and inference", "run on a machine with an NVIDIA GPU and driver"
    try:
        from cuda.bindings import runtime as cudart
    except Exception:
        return Check("CUDA device", False, "cuda-python not importable", needed_for, "pip install 'trtq[tensorrt]'")
    err, count = cudart.cudaGetDeviceCount()
    if int(err) != 0 or count == 0:
        return Check("CUDA device", False, f"no device ({err})", needed_for, fix)
    err, props = cudart.cudaGetDeviceProperties(0)
    name = props.name.decode(errors="replace") if int(err) == 0 else "unknown"
    return Check("CUDA device", True, f"{count} device(s); 0: {name} (SM {props.major}.{props.minor})")


def run_checks() -> list[Check]:
    """Check Python, the core packages, ONNX Runtime providers, TensorRT, CUDA and extras."""
    checks = [Check("python", sys.version_info >= (3, 10), f"{platform.python_version()} ({platform.machine()})",
                    "everything", "use Python 3.10 or newer")]
    checks.append(_check_package("onnx", ("onnx",), "everything", "pip install onnx"))
    checks += _check_onnxruntime()
    checks.append(_check_package("polygraphy", ("polygraphy",), "accuracy comparison", "pip install polygraphy"))
    checks += _check_tensorrt()
    checks.append(_check_cuda_device())
    checks.append(_check_package("av", ("av",), "video calibration data", "pip install 'trtq[video]'"))
    return checks


def render_checks(checks: list[Check]) -> str:
    """One line per check: ok/missing, what, and what it is needed for."""
    lines = []
    for c in checks:
        mark = "ok     " if c.ok else "missing"
        line = f"{mark}  {c.name:<26} {c.detail}"
        if not c.ok and c.needed_for:
            line += f"  -> needed for {c.needed_for}; {c.fix}"
        lines.append(line)
    return "\n".join(lines)
