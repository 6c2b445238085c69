"""Is there a GPU TensorRT can build on here, and which one."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from types import ModuleType

from trtq._lazy import require
from trtq.engine.cuda_check import cuda_status

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeviceInfo:
    """The CUDA device an engine was built on (engines only run on the same compute capability)."""

    name: str
    compute_capability: str  # "major.minor", e.g. "8.0" for A100, "7.5" for T4

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "compute_capability": self.compute_capability}


def _cudart() -> ModuleType | None:
    try:
        return require("cuda.bindings.runtime")
    except Exception:  # missing, or a broken install
        return None


def device_info(cudart: ModuleType | None = None) -> DeviceInfo | None:
    """Name and compute capability of the current CUDA device, or None without one."""
    cudart = cudart if cudart is not None else _cudart()
    if cudart is None:
        return None
    try:
        err, device = cudart.cudaGetDevice()
        if err != cudart.cudaError_t.cudaSuccess:
            return None
        err, props = cudart.cudaGetDeviceProperties(device)
        if err != cudart.cudaError_t.cudaSuccess:
            return None
    except Exception as exc:  # no driver: the bindings raise instead of returning an error
        log.debug("no CUDA device: %s", exc)
        return None
    name = props.name
    name = name.decode(errors="replace") if isinstance(name, bytes) else str(name)
    return DeviceInfo(name.rstrip("\x00").strip(), f"{props.major}.{props.minor}")


def gpu_available() -> tuple[bool, str]:
    """Whether an engine can be built here: (True, device name) or (False, the reason why not).

    A driver too old for the installed wheels is named as such, with what to install (cuda_check).
    """
    try:
        require("tensorrt")
    except Exception:
        return False, "TensorRT is not installed"
    cudart = _cudart()
    if cudart is None:
        return False, "cuda-python missing"
    status = cuda_status(cudart)
    if status.problem == "no CUDA device":
        return False, status.problem
    if status.problem:
        return False, f"{status.problem}: {status.fix}"
    info = device_info(cudart)
    return True, info.name if info else "CUDA device 0"
