"""Device buffers for the TensorRT 10 calibrators: pycuda when it is installed, cuda-python otherwise.

TensorRT asks a calibrator for one device pointer per input and batch. Both backends do the same
three things behind `upload(name, array) -> pointer` and `free()`: allocate a buffer per input (grown
only when a larger batch arrives), copy the host array into it, free everything at the end.

- pycuda (`pycuda.driver.mem_alloc` / `memcpy_htod`): what NVIDIA's TensorRT samples use, often present
  where a CUDA toolkit is (NGC containers, Jetson); it has no wheels, so it is never required. It is
  started through `pycuda.autoprimaryctx`, which retains the device's *primary* context, the one the
  CUDA runtime and so TensorRT use (`pycuda.autoinit` would create a second context, whose pointers
  TensorRT's context cannot read).
- cuda-python (`cuda.bindings.runtime.cudaMalloc` / `cudaMemcpy` / `cudaFree`): wheels for every
  platform TensorRT has, installed by the trtq[tensorrt] extras.

    buffers = device_buffers()          # or device_buffers(cudart_module=fake) in tests
    pointer = buffers.upload("x", array)
    buffers.free()
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType
from typing import Any, Protocol

import numpy as np

from trtq._lazy import require
from trtq.errors import MissingDependencyError, TrtqError

_HINT = "check the GPU has free memory and the CUDA driver works (trtq doctor)"


class DeviceBuffers(Protocol):
    """One device buffer per input name; `backend` names the library ("pycuda" or "cuda-python")."""

    backend: str

    def upload(self, name: str, array: np.ndarray) -> int: ...

    def free(self) -> None: ...


class CudaPythonBuffers:
    """Device buffers through cuda-python's runtime API (cudaMalloc/cudaMemcpy/cudaFree)."""

    backend = "cuda-python"

    def __init__(self, cudart: ModuleType) -> None:
        self._cudart = cudart
        self._buffers: dict[str, tuple[int, int]] = {}  # name -> (pointer, capacity in bytes)

    def upload(self, name: str, array: np.ndarray) -> int:
        cudart = self._cudart
        pointer, capacity = self._buffers.get(name, (0, 0))
        if array.nbytes > capacity:
            if pointer:
                self._call(cudart.cudaFree(pointer), "cudaFree")
                del self._buffers[name]
            pointer = int(self._call(cudart.cudaMalloc(max(array.nbytes, 1)), "cudaMalloc")[0])
            self._buffers[name] = (pointer, array.nbytes)
        kind = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._call(cudart.cudaMemcpy(pointer, array.ctypes.data, array.nbytes, kind), "cudaMemcpy")
        return pointer

    def free(self) -> None:
        cudart = self._cudart
        while self._buffers:
            _, (pointer, _) = self._buffers.popitem()
            self._call(cudart.cudaFree(pointer), "cudaFree")

    def _call(self, result: tuple, what: str) -> tuple:
        """Check a cuda-python (err, *values) result; returns the values."""
        cudart = self._cudart
        err, *values = result
        if err != cudart.cudaError_t.cudaSuccess:
            raise TrtqError(f"{what} failed during calibration: {err}", hint=_HINT)
        return tuple(values)


class PycudaBuffers:
    """Device buffers through pycuda's driver API (mem_alloc/memcpy_htod), in the primary context."""

    backend = "pycuda"

    def __init__(self, driver: Any) -> None:
        self._driver = driver
        self._buffers: dict[str, tuple[Any, int]] = {}  # name -> (DeviceAllocation, capacity in bytes)

    def upload(self, name: str, array: np.ndarray) -> int:
        driver = self._driver
        allocation, capacity = self._buffers.get(name, (None, 0))
        try:
            if array.nbytes > capacity:
                if allocation is not None:
                    allocation.free()
                    del self._buffers[name]
                allocation = driver.mem_alloc(max(array.nbytes, 1))
                self._buffers[name] = (allocation, array.nbytes)
            driver.memcpy_htod(allocation, array)
        except driver.Error as exc:  # pycuda.driver.Error: base of its CUDA errors
            raise TrtqError(f"pycuda failed during calibration: {exc}", hint=_HINT) from exc
        return int(allocation)

    def free(self) -> None:
        while self._buffers:
            _, (allocation, _) = self._buffers.popitem()
            allocation.free()


def pycuda_installed() -> bool:
    """True if pycuda can be found (without importing it: that would create a CUDA context)."""
    try:
        return importlib.util.find_spec("pycuda") is not None
    except (ImportError, ValueError):
        return False


def _import_pycuda() -> Any:
    importlib.import_module("pycuda.autoprimaryctx")  # retains the primary context TensorRT uses
    return importlib.import_module("pycuda.driver")


def device_buffers(cudart_module: ModuleType | None = None, pycuda_driver: Any = None) -> DeviceBuffers:
    """pycuda's buffers when pycuda is installed, else cuda-python's; a module given (tests) wins.

    Raises:
        MissingDependencyError: neither pycuda nor cuda-python can be imported.
    """
    if cudart_module is not None:
        return CudaPythonBuffers(cudart_module)
    if pycuda_driver is not None:
        return PycudaBuffers(pycuda_driver)
    if pycuda_installed():
        try:
            return PycudaBuffers(_import_pycuda())
        except Exception as exc:  # a pycuda built for another CUDA, or no device: fall back to cuda-python
            try:
                return CudaPythonBuffers(require("cuda.bindings.runtime"))
            except MissingDependencyError:
                raise MissingDependencyError(f"pycuda is installed but cannot start ({exc}) and cuda-python is "
                                             "missing", hint="pip install 'trtq[tensorrt]'") from exc
    return CudaPythonBuffers(require("cuda.bindings.runtime"))


def buffer_backend() -> str | None:
    """Which library the calibrators would use for device buffers here ("pycuda", "cuda-python" or None)."""
    if pycuda_installed():
        return "pycuda"
    try:
        require("cuda.bindings.runtime")  # importing the bindings creates no CUDA context
    except Exception:  # missing, or a broken install
        return None
    return "cuda-python"
