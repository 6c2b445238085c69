"""What this machine offers for engines, as plain data for `trtq doctor` and `trtq doctor --json`.

A CI job gates on the JSON (e.g. `trtq doctor --json --require engine,implicit_int8`): TensorRT version,
CUDA driver/runtime versions and libcudart, the device's compute capability and its INT8/FP8 support,
the device-buffer library, and which extras are usable.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from trtq.calibrators.device_memory import buffer_backend, pycuda_installed
from trtq.engine.cuda_check import cuda_status
from trtq.engine.cuda_runtime import choose_runtime, tensorrt_cuda_major
from trtq.engine.device import device_info
from trtq.engine.version import has_implicit_quantization, trt_version

# Lowest compute capability with INT8 / FP8 tensor-core kernels in TensorRT (support matrix: INT8 on
# SM 6.1+, FP8 on Ada SM 8.9 and Hopper SM 9.0+), and the lowest TensorRT 10/11 build for (SM 7.5, Turing).
INT8_MIN_SM = (6, 1)
FP8_MIN_SM = (8, 9)
TRT_MIN_SM = (7, 5)

# What `--require` can ask for.
FEATURES = ("engine", "implicit_int8", "int8", "fp8", "pycuda")


def _sm(capability: str) -> tuple[int, int]:
    major, _, minor = capability.partition(".")
    return int(major), int(minor or 0)


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def gpu_facts() -> dict[str, Any]:
    """The machine's TensorRT/CUDA facts and what it can do (JSON-ready; no GPU needed to ask)."""
    version = trt_version()
    status = cuda_status()
    libcudart = choose_runtime()
    device = device_info() if status.problem is None else None
    sm = _sm(device.compute_capability) if device else None
    device_dict = None
    if device and sm:
        device_dict = {**device.to_dict(), "int8": sm >= INT8_MIN_SM, "fp8": sm >= FP8_MIN_SM,
                       "tensorrt_supported": sm >= TRT_MIN_SM}
    engine = bool(version and status.problem is None and device_dict and device_dict["tensorrt_supported"])
    implicit = bool(version and has_implicit_quantization(version))
    major = int(version.split(".")[0]) if version else None
    can = {
        "engine": engine,
        "implicit_int8": engine and implicit and bool(buffer_backend()),
        "int8": engine and bool(device_dict and device_dict["int8"]),
        "fp8": engine and bool(device_dict and device_dict["fp8"]),
        "pycuda": pycuda_installed(),
    }
    return {
        "tensorrt": {"version": version, "cuda_major": tensorrt_cuda_major() if version else None,
                     "implicit_int8": implicit},
        "cuda": {**status.to_dict(), "libcudart": str(libcudart.path) if libcudart.path else None,
                 "libcudart_source": libcudart.source},
        "device": device_dict,
        "device_buffers": buffer_backend(),
        "extras": {
            "tensorrt": major is not None and major >= 11 and engine,
            "tensorrt10": major == 10 and engine,
            "pycuda": can["pycuda"],
            "video": _installed("av"),
            "plot": _installed("matplotlib"),
        },
        "can": can,
    }


def missing_features(facts: dict[str, Any], wanted: list[str]) -> list[str]:
    """The features of `wanted` this machine does not offer (unknown names count as missing)."""
    return [f for f in wanted if not facts["can"].get(f, False)]
