"""TensorRT 10.x calibrator subclasses fed by trtq's data readers and cache code.

TensorRT (10.x only; removed in 11) calibrates implicitly by calling back into
a `trt.IInt8EntropyCalibrator2` / `trt.IInt8MinMaxCalibrator` subclass: it asks
for batches as device pointers, and reads/writes its calibration cache through
two callbacks. The class is created inside `make_trt_calibrator` (Polygraphy's
pattern) so that this module imports without TensorRT.

The calibrator takes plain feed dicts and cache callables: the engine module
wires it to the data readers and to trtq's cache module, which this bottom-layer
module must not import.

    with make_trt_calibrator("entropy", reader, cache.read, cache.write, ["x"]) as calib:
        config.int8_calibrator = calib
        builder.build_serialized_network(network, config)
    if calib.error: raise calib.error

Exceptions raised in a Python override are swallowed by the TensorRT bindings
(they are logged and the callback counts as failed), so the calibrator keeps the
first one in `.error` and ends the calibration; the caller re-raises it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import ModuleType
from typing import Any

import numpy as np

from trtq._lazy import require
from trtq.calibrators.device_memory import device_buffers
from trtq.errors import ConfigError, DataError, MissingDependencyError

log = logging.getLogger(__name__)

KINDS = ("entropy", "minmax")


def make_trt_calibrator(
    kind: str,
    batches: Iterable[Mapping[str, np.ndarray]],
    read_cache: Callable[[], bytes | None],
    write_cache: Callable[[bytes], None],
    input_names: list[str],
    *,
    shapes: Mapping[str, Sequence[int]] | None = None,
    trt_module: ModuleType | None = None,
    cudart_module: ModuleType | None = None,
    pycuda_driver: Any = None,
) -> Any:
    """Create a TensorRT 10.x INT8 calibrator over feed dicts.

    Args:
        kind: "entropy" (trt.IInt8EntropyCalibrator2) or "minmax" (trt.IInt8MinMaxCalibrator).
        batches: feed dicts {input name: array}; arrays carry the batch dim and must have
            the calibration profile's OPT shape (TensorRT calibrates at OPT only).
        read_cache: returns the cache bytes to reuse, or None to calibrate.
        write_cache: receives the cache TensorRT produced.
        input_names: the network's inputs; every batch must hold each of them.
        shapes: the calibration profile's OPT shape per input; batches of another shape are
            skipped (TensorRT 10 calibrates dynamic-shape networks at OPT only). None: feed all.
        trt_module: the tensorrt module to use (default: import it); for tests.
        cudart_module: cuda-python's runtime module to use for device buffers; for tests.
        pycuda_driver: pycuda's driver module to use for device buffers; for tests. Neither given:
            pycuda when it is installed, cuda-python otherwise (calibrators/device_memory.py).

    Returns:
        A calibrator object for `config.int8_calibrator`; use it as a context manager
        (or call `free()`) to release its device buffers. After the build, `.error`
        holds an exception raised inside a callback, `.batches_served` the number of
        batches handed to TensorRT, `.batches_skipped` those of another shape,
        `.cache_read` whether a cache was offered, `.kind` the kind, `.buffers.backend` the
        device-buffer library. The builder calls `.expect_dtypes(...)` with the network's input types.

    Raises:
        ConfigError: unknown kind or empty input_names.
        MissingDependencyError: TensorRT or cuda-python is missing, or TensorRT is 11+
            (implicit calibration no longer exists there).
    """
    if kind not in KINDS:
        raise ConfigError(f"calibrator kind {kind!r} is not known", hint=f"use one of {', '.join(KINDS)}")
    if not input_names:
        raise ConfigError("the calibrator needs the model's input names, got none")
    trt = trt_module if trt_module is not None else require("tensorrt")
    base = _base_class(trt, kind)
    buffers = device_buffers(cudart_module, pycuda_driver)
    cls = _calibrator_class(base)
    calibrator = cls(iter(batches), read_cache, write_cache, list(input_names), buffers)
    calibrator.kind = kind
    calibrator.shapes = {name: tuple(int(d) for d in shape) for name, shape in (shapes or {}).items()}
    return calibrator


def _base_class(trt: ModuleType, kind: str) -> type:
    """The TensorRT base class for `kind`; TensorRT 11 has none."""
    if not hasattr(trt, "IInt8EntropyCalibrator2"):
        version = getattr(trt, "__version__", "unknown")
        raise MissingDependencyError(
            f"TensorRT {version} has no implicit INT8 calibration: the IInt8*Calibrator classes were "
            "removed in TensorRT 11, where INT8 exists only through Q/DQ nodes in the ONNX model",
            hint="use the Q/DQ path (trtq's default, without --implicit), or TensorRT 10.x for a calibrator",
        )
    if kind == "entropy":
        return trt.IInt8EntropyCalibrator2
    return trt.IInt8MinMaxCalibrator


def _calibrator_class(base: type) -> type:
    """Subclass `base` (a TensorRT calibrator class) with trtq's feeding logic."""

    class TrtqCalibrator(base):  # type: ignore[misc, valid-type]
        """Feeds trtq batches to TensorRT; see make_trt_calibrator."""

        def __init__(self, batches, read_cache, write_cache, input_names, buffers) -> None:
            # The bindings need the base __init__ called explicitly, or TensorRT crashes.
            base.__init__(self)
            self._batches = batches
            self._read_cache = read_cache
            self._write_cache = write_cache
            self.input_names = input_names
            self.buffers = buffers
            self.kind = ""
            self.shapes: dict[str, tuple[int, ...]] = {}
            self.dtypes: dict[str, np.dtype] = {}
            self.batches_served = 0
            self.batches_skipped = 0
            self.cache_read = False
            self.cache_written = False
            self.error: BaseException | None = None

        def get_batch_size(self) -> int:
            return 1  # tensors carry their own batch dim (explicit-batch networks)

        def get_batch(self, names: list[str], *args: Any) -> list[int] | None:
            if self.error is not None:
                return None
            try:
                batch = self._next_batch()
                if batch is None:
                    self._check_fed()
                    return None
                pointers = [self.buffers.upload(name, _input_array(batch, name, self.input_names,
                                                                   self.dtypes.get(name)))
                            for name in names]
            except Exception as exc:  # the bindings would swallow it: keep it for the caller
                self._fail(exc)
                return None
            self.batches_served += 1
            return pointers

        def _next_batch(self) -> Mapping[str, np.ndarray] | None:
            """The next batch whose inputs have the expected shapes, None when done."""
            for batch in self._batches:
                if all(np.shape(batch[n]) == s for n, s in self.shapes.items() if n in batch):
                    return batch
                self.batches_skipped += 1
                if self.batches_skipped == 1:  # once: a ragged dataset would repeat it for every batch
                    log.warning("calibration batches of shapes other than the profile's OPT shapes %s are "
                                "skipped, e.g. %s", self.shapes, {n: np.shape(a) for n, a in batch.items()})
            return None

        def expect_dtypes(self, dtypes: Mapping[str, Any]) -> None:
            """The dtype TensorRT reads for each input (calibration_dtype of the network's input type)."""
            self.dtypes = {name: np.dtype(dtype) for name, dtype in dtypes.items()}

        def _check_fed(self) -> None:
            """At the end of the data: no batch at all would end in a vague TensorRT error; say why here."""
            if self.batches_served:
                return
            if self.batches_skipped:
                raise DataError(
                    f"all {self.batches_skipped} calibration batches were skipped: none has the calibration "
                    f"profile's OPT shapes {_shapes_text(self.shapes)} (TensorRT 10 calibrates at OPT only)",
                    hint="set --opt-shapes to a shape the calibration batches have, or use the Q/DQ path "
                         "(without --implicit), which calibrates any shape")
            raise DataError("the calibration data gave no batch, so TensorRT has nothing to calibrate on",
                            hint="check --calib points at data (trtq calibrate shows what it reads)")

        def read_calibration_cache(self, *args: Any) -> bytes | None:
            try:
                data = self._read_cache()
            except Exception as exc:
                self._fail(exc)
                return None
            self.cache_read = bool(data)
            return bytes(data) if data else None

        def write_calibration_cache(self, cache: Any, *args: Any) -> None:
            try:
                self._write_cache(bytes(cache))
                self.cache_written = True
            except Exception as exc:
                self._fail(exc)

        def _fail(self, exc: Exception) -> None:
            if self.error is None:
                self.error = exc
            log.error("calibration stopped: %s", exc)

        def free(self) -> None:
            """Release the device buffers (safe to call twice)."""
            self.buffers.free()

        def __enter__(self) -> TrtqCalibrator:
            return self

        def __exit__(self, *exc_info: object) -> None:
            self.free()

    return TrtqCalibrator


def _shapes_text(shapes: Mapping[str, tuple[int, ...]]) -> str:
    return ", ".join(f"{n}:{'x'.join(map(str, s))}" for n, s in shapes.items()) or "(none)"


# Network input types TensorRT reads calibration data in as they are; every other type (FP16, BF16,
# INT8, UINT8, FP8) is read as FP32, as Polygraphy's calibrator does (set_input_metadata): "TensorRT
# requires non-index calibration inputs to be provided in float32".
_AS_IS = ("float32", "int32", "int64", "bool")


def calibration_dtype(network_dtype: Any) -> np.dtype:
    """The numpy dtype TensorRT 10 reads an input's calibration buffer in, given the network input's numpy type."""
    dtype = np.dtype(network_dtype)
    return dtype if dtype.name in _AS_IS else np.dtype(np.float32)


def _input_array(batch: Mapping[str, np.ndarray], name: str, input_names: list[str],
                 dtype: np.dtype | None = None) -> np.ndarray:
    """The contiguous host array for input `name`, in the dtype TensorRT reads (checked, never silently wrong).

    `dtype` None (the network's types unknown): floats as float32, everything else as it is.
    """
    if name not in batch:
        raise DataError(
            f"TensorRT asks for input '{name}' but the calibration batch has only {', '.join(sorted(batch)) or 'none'}",
            hint=f"feed every model input ({', '.join(input_names)}) in each calibration batch",
        )
    array = np.asarray(batch[name])
    if dtype is None:
        if array.dtype.kind == "f":
            array = array.astype(np.float32, copy=False)  # TensorRT calibrates float inputs in FP32
        return np.ascontiguousarray(array)
    return np.ascontiguousarray(_convert(array, name, dtype))


def _convert(array: np.ndarray, name: str, dtype: np.dtype) -> np.ndarray:
    if array.dtype == dtype:
        return array
    kind, want = array.dtype.kind, dtype.kind
    if want == "f" and kind in "fiub":
        return array.astype(dtype)  # e.g. uint8 pixels of a UINT8 input, fed as their float values
    if want in "iu" and kind in "iub":
        info = np.iinfo(dtype)
        if array.size and (array.min() < info.min or array.max() > info.max):
            raise DataError(f"calibration input '{name}' holds values outside {dtype.name}, the network's type",
                            hint=f"feed '{name}' values within [{info.min}, {info.max}]")
        return array.astype(dtype)
    if want == "b" and kind == "b":
        return array
    raise DataError(f"calibration input '{name}' is {array.dtype.name} but the network reads {dtype.name}",
                    hint=f"feed '{name}' as {dtype.name} (index inputs must be integers, not floats)")
