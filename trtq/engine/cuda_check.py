"""CUDA driver vs. the CUDA the TensorRT / cuda-python wheels need: detect a mismatch and say what to install.

The TensorRT wheels come per CUDA major (tensorrt-cu12, tensorrt-cu13) and so does cuda-python; each
needs a driver of at least that CUDA version (CUDA 13: R580+, CUDA 12: R525+; NVIDIA's CUDA
compatibility guide). On an older driver the CUDA runtime answers cudaErrorInsufficientDriver, which
reads like "no CUDA device", and trt.Builder fails with a pybind TypeError: both are turned into one line
that names the versions and the fix.

    status = cuda_status()       # status.driver "12.8", status.runtime "13.0", status.problem, status.fix
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

from trtq._lazy import require
from trtq.engine.cuda_runtime import tensorrt_cuda_major

log = logging.getLogger(__name__)

# Driver branches per CUDA major (CUDA compatibility guide, "minimum required driver version").
MIN_DRIVER = {12: "R525", 13: "R580"}
# cudaError_t values that mean the driver is too old or absent (driver_types.h).
INSUFFICIENT_DRIVER = 35
NO_DEVICE = 100


@dataclass(frozen=True)
class CudaStatus:
    """What the CUDA driver and runtime allow here.

    Attributes:
        driver: the CUDA version the driver supports ("12.8"), None without a driver or cuda-python.
        runtime: cuda-python's CUDA runtime version ("13.0").
        needed_major: the CUDA major the installed TensorRT / cuda-python wheels are built for.
        devices: number of CUDA devices the runtime sees.
        problem: why no engine can be built here (None: nothing wrong), fix: what to do about it.
    """

    driver: str | None
    runtime: str | None
    needed_major: int | None
    devices: int
    problem: str | None = None
    fix: str = ""

    def to_dict(self) -> dict[str, object]:
        return {"driver": self.driver, "runtime": self.runtime, "needed_major": self.needed_major,
                "devices": self.devices, "problem": self.problem, "fix": self.fix}


def _version(code: int) -> str | None:
    """CUDA's integer version (12080) -> "12.8"; 0 (no driver) -> None."""
    return f"{code // 1000}.{code % 1000 // 10}" if code > 0 else None


def _query(call: Callable[[], tuple]) -> tuple[int, int]:
    """(error code, value) of a cuda-python call returning (err, int); (-1, 0) if it raises."""
    try:
        err, value = call()
    except Exception as exc:  # no driver library: some bindings raise instead of returning an error
        log.debug("CUDA query failed: %s", exc)
        return -1, 0
    return int(err), int(value)


def mismatch_fix(needed: int, driver: str) -> str:
    """What to install when the driver supports CUDA `driver` but the wheels need CUDA `needed`."""
    if needed >= 13:
        return ("in a fresh environment, pip install 'trtq[tensorrt10]' (TensorRT 10.16 and cuda-python 12, for "
                f"CUDA 12 drivers), or upgrade the NVIDIA driver to {MIN_DRIVER[13]} or newer for 'trtq[tensorrt]'")
    return f"upgrade the NVIDIA driver to {MIN_DRIVER.get(needed, 'a newer branch')} or newer (CUDA {needed})"


def cuda_status(cudart: ModuleType | None = None) -> CudaStatus:
    """Driver and runtime versions, device count, and a mismatch between them, if any."""
    if cudart is None:
        try:
            cudart = require("cuda.bindings.runtime")
        except Exception:
            return CudaStatus(None, None, tensorrt_cuda_major(), 0, "cuda-python missing",
                              "pip install 'trtq[tensorrt]' (CUDA 13 drivers) or 'trtq[tensorrt10]' (CUDA 12)")
    _, driver_code = _query(lambda: cudart.cudaDriverGetVersion())
    _, runtime_code = _query(lambda: cudart.cudaRuntimeGetVersion())
    driver, runtime = _version(driver_code), _version(runtime_code)
    majors = [m for m in (tensorrt_cuda_major(), runtime_code // 1000 if runtime_code else None) if m]
    needed = max(majors) if majors else None
    count_err, count = _query(lambda: cudart.cudaGetDeviceCount())
    if driver is None:
        return CudaStatus(None, runtime, needed, 0, "no NVIDIA driver found",
                          "run on a machine with an NVIDIA GPU and its driver (nvidia-smi must work)")
    if (needed and int(driver.split(".")[0]) < needed) or count_err == INSUFFICIENT_DRIVER:
        what = f"CUDA {needed}" if needed else "a newer CUDA"
        return CudaStatus(driver, runtime, needed, 0,
                          f"the NVIDIA driver supports CUDA {driver} but the installed TensorRT/cuda-python "
                          f"need {what}", mismatch_fix(needed or 13, driver))
    if count_err != 0 or count == 0:
        return CudaStatus(driver, runtime, needed, 0, "no CUDA device", "run on a machine with an NVIDIA GPU")
    return CudaStatus(driver, runtime, needed, count)
