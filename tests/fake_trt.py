"""Small stand-ins for TensorRT and cuda-python, to test trtq's GPU-side logic on CPU.

They model only what trtq relies on, with the names of the real API (checked
against the real bindings by tests/engine/test_trt_api_names.py):
- FakeCudart keeps "device memory" in bytearrays, so tests can read back what
  the calibrator copied;
- fake_trt(version) builds a tensorrt-like module; a 11.x module lacks the
  calibrator classes, BuilderFlag.INT8/FP16, int8_calibrator and
  set_calibration_profile, as the real 11.4 does. Its builder "calibrates" like
  TensorRT 10: it reads the cache, and only if there is none calls get_batch
  until None and writes a cache.
"""

from __future__ import annotations

import ctypes
import enum
import types

import onnx


class FakeCudart:
    """cuda.bindings.runtime look-alike: (err, value) tuples, device memory as bytearrays."""

    class cudaError_t(enum.IntEnum):
        cudaSuccess = 0
        cudaErrorMemoryAllocation = 2
        cudaErrorInsufficientDriver = 35
        cudaErrorNoDevice = 100

    class cudaMemcpyKind(enum.IntEnum):
        cudaMemcpyHostToDevice = 1

    def __init__(self, fail_malloc: bool = False, devices: tuple[tuple[str, int, int], ...] = (),
                 driver: int = 13000, runtime: int = 13000) -> None:
        self.driver, self.runtime = driver, runtime  # CUDA versions as cudaDriverGetVersion reports (12080)
        self.memory: dict[int, bytearray] = {}
        self.mallocs = 0
        self.fail_malloc = fail_malloc
        self.devices = devices  # (name, major, minor) per GPU
        self._next = 0x10000

    def cudaDriverGetVersion(self):
        return (self.cudaError_t.cudaSuccess, self.driver)

    def cudaRuntimeGetVersion(self):
        return (self.cudaError_t.cudaSuccess, self.runtime)

    def _driver_too_old(self) -> bool:
        return self.driver // 1000 < self.runtime // 1000

    def cudaGetDeviceCount(self):
        if self._driver_too_old():
            return (self.cudaError_t.cudaErrorInsufficientDriver, 0)
        return (self.cudaError_t.cudaSuccess, len(self.devices))

    def cudaGetDevice(self):
        if self._driver_too_old():
            return (self.cudaError_t.cudaErrorInsufficientDriver, 0)
        if not self.devices:
            return (self.cudaError_t.cudaErrorNoDevice, 0)
        return (self.cudaError_t.cudaSuccess, 0)

    def cudaGetDeviceProperties(self, device: int):
        name, major, minor = self.devices[device]
        # The real cudaDeviceProp.name is a NUL-padded char[256].
        return (self.cudaError_t.cudaSuccess, types.SimpleNamespace(name=name.encode().ljust(256, b"\0"),
                                                                    major=major, minor=minor))

    def cudaMalloc(self, nbytes: int):
        if self.fail_malloc:
            return (self.cudaError_t.cudaErrorMemoryAllocation, 0)
        pointer, self._next = self._next, self._next + nbytes + 4096
        self.memory[pointer] = bytearray(nbytes)
        self.mallocs += 1
        return (self.cudaError_t.cudaSuccess, pointer)

    def cudaMemcpy(self, dst: int, src: int, nbytes: int, kind):
        assert kind == self.cudaMemcpyKind.cudaMemcpyHostToDevice
        buffer = self.memory[dst]
        assert nbytes <= len(buffer), "copy overruns the device buffer"
        buffer[:nbytes] = ctypes.string_at(src, nbytes)
        return (self.cudaError_t.cudaSuccess,)

    def cudaFree(self, pointer: int):
        del self.memory[pointer]
        return (self.cudaError_t.cudaSuccess,)


class FakePycudaDriver:
    """pycuda.driver look-alike: mem_alloc gives DeviceAllocation-like objects (int() is the pointer)."""

    class Error(Exception):
        pass

    class MemoryError(Error):
        pass

    class DeviceAllocation:
        def __init__(self, driver: FakePycudaDriver, pointer: int) -> None:
            self._driver, self._pointer = driver, pointer

        def __int__(self) -> int:
            return self._pointer

        def free(self) -> None:
            self._driver.memory.pop(self._pointer, None)

    def __init__(self, fail_alloc: bool = False) -> None:
        self.memory: dict[int, bytearray] = {}
        self.allocs = 0
        self.fail_alloc = fail_alloc
        self._next = 0x20000

    def mem_alloc(self, nbytes: int) -> DeviceAllocation:
        if self.fail_alloc:
            raise self.MemoryError("cuMemAlloc failed: out of memory")
        pointer, self._next = self._next, self._next + nbytes + 4096
        self.memory[pointer] = bytearray(nbytes)
        self.allocs += 1
        return self.DeviceAllocation(self, pointer)

    def memcpy_htod(self, dest, src) -> None:
        data = memoryview(src).cast("B")
        buffer = self.memory[int(dest)]
        assert len(data) <= len(buffer), "copy overruns the device buffer"
        buffer[:len(data)] = data


class _Severity(enum.Enum):
    INTERNAL_ERROR = 0
    ERROR = 1
    WARNING = 2
    INFO = 3
    VERBOSE = 4


class _ILogger:
    Severity = _Severity

    def __init__(self) -> None:
        pass


class _CalibratorBase:
    def __init__(self) -> None:
        self.base_init_called = True


class _MemoryPoolType(enum.Enum):
    WORKSPACE = 0


class _DataType(enum.Enum):
    FLOAT = 0
    HALF = 1
    INT8 = 2
    INT32 = 3
    BOOL = 4
    UINT8 = 5
    INT64 = 8


# ONNX elem_type -> DataType, and DataType -> numpy (what trt.nptype returns)
_ONNX_TYPES = {1: _DataType.FLOAT, 10: _DataType.HALF, 3: _DataType.INT8, 6: _DataType.INT32, 9: _DataType.BOOL,
               2: _DataType.UINT8, 7: _DataType.INT64}
_NP_TYPES = {_DataType.FLOAT: "float32", _DataType.HALF: "float16", _DataType.INT8: "int8",
             _DataType.INT32: "int32", _DataType.BOOL: "bool", _DataType.UINT8: "uint8", _DataType.INT64: "int64"}


def _nptype(dtype: _DataType):
    import numpy as np

    return np.dtype(_NP_TYPES[dtype]).type


class _Tensor:
    def __init__(self, name: str, shape: tuple[int, ...], dtype: _DataType = _DataType.FLOAT) -> None:
        self.name, self.shape, self.dtype = name, shape, dtype


class _Network:
    def __init__(self, flags: int) -> None:
        self.flags = flags
        self.inputs: list[_Tensor] = []

    @property
    def num_inputs(self) -> int:
        return len(self.inputs)

    def get_input(self, index: int) -> _Tensor:
        return self.inputs[index]


class _ParserError:
    def __init__(self, node: int, name: str, op: str, desc: str) -> None:
        self._node, self._name, self._op, self._desc = node, name, op, desc

    def desc(self) -> str:
        return self._desc

    def node(self) -> int:
        return self._node

    def node_name(self) -> str:
        return self._name

    def node_operator(self) -> str:
        return self._op


class _Profile:
    def __init__(self) -> None:
        self.shapes: dict[str, tuple] = {}

    def set_shape(self, name, min, opt, max) -> None:
        self.shapes[name] = (tuple(min), tuple(opt), tuple(max))


class _TimingCache:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def serialize(self) -> bytes:
        return self.data


class _Config:
    def __init__(self, module) -> None:
        self.module = module
        self.pools: dict = {}
        self.profiles: list[_Profile] = []
        self.flags: set = set()
        self.timing_cache: _TimingCache | None = None
        self.calibration_profile = None
        if module.implicit:
            self.int8_calibrator = None

    def set_memory_pool_limit(self, pool, size: int) -> None:
        self.pools[pool] = size

    def add_optimization_profile(self, profile: _Profile) -> int:
        self.profiles.append(profile)
        return len(self.profiles) - 1

    def create_timing_cache(self, data: bytes) -> _TimingCache:
        return _TimingCache(bytes(data))

    def set_timing_cache(self, cache: _TimingCache, ignore_mismatch: bool) -> bool:
        if cache.data.startswith(b"OTHER-GPU"):
            return False
        self.timing_cache = cache
        return True

    def get_timing_cache(self) -> _TimingCache | None:
        return self.timing_cache


def _set_flag(self, flag) -> None:
    self.flags.add(flag)


def _set_calibration_profile(self, profile) -> bool:
    if self.module.reject_calibration_profile:
        return False
    self.calibration_profile = profile
    return True


def fake_trt(version: str = "10.16.1.11", *, fail_build: bool = False, unsupported: tuple[str, ...] = (),
             reject_calibration_profile: bool = False, builder_fails: bool = False):
    """A tensorrt-like module for `version`; 11.x has no implicit-quantization API."""
    module = types.ModuleType("tensorrt")
    module.reject_calibration_profile = reject_calibration_profile
    module.DataType = _DataType
    module.nptype = _nptype
    module.__version__ = version
    module.implicit = int(version.split(".")[0]) < 11
    module.built = []  # (network flags, config) of every build
    module.loggers = []  # the logger given to every Builder and OnnxParser
    module.ILogger = _ILogger
    module.MemoryPoolType = _MemoryPoolType
    extras = {"set_calibration_profile": _set_calibration_profile} if module.implicit else {}
    extras["set_flag"] = _set_flag  # TensorRT 11 keeps set_flag for the flags it kept (SPARSE_WEIGHTS)
    config_class = type("IBuilderConfig", (_Config,), extras)

    class OnnxParser:
        def __init__(self, network: _Network, logger) -> None:
            self.network, self.errors = network, []
            module.loggers.append(logger)

        @property
        def num_errors(self) -> int:
            return len(self.errors)

        def get_error(self, index: int) -> _ParserError:
            return self.errors[index]

        def parse_from_file(self, path: str) -> bool:
            model = onnx.load(path)
            for index, node in enumerate(model.graph.node):
                if node.op_type in unsupported:
                    self.errors.append(_ParserError(index, node.name, node.op_type, "no importer registered"))
            for value in model.graph.input:
                dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in value.type.tensor_type.shape.dim)
                dtype = _ONNX_TYPES[value.type.tensor_type.elem_type]
                self.network.inputs.append(_Tensor(value.name, dims, dtype))
            return not self.errors

    class Builder:
        def __init__(self, logger) -> None:
            if builder_fails:  # what the real bindings raise when createInferBuilder returns null
                raise TypeError("pybind11::init(): factory function returned nullptr")
            self.logger = logger
            module.loggers.append(logger)

        def create_network(self, flags: int = 0) -> _Network:
            return _Network(flags)

        def create_builder_config(self) -> _Config:
            return config_class(module)

        def create_optimization_profile(self) -> _Profile:
            return _Profile()

        def build_serialized_network(self, network: _Network, config: _Config):
            module.built.append((network.flags, config))
            if fail_build:
                self.logger.log(_Severity.ERROR, "Error Code 4: no implementation for node conv")
                return None
            calibrator = getattr(config, "int8_calibrator", None)
            if calibrator is not None and not calibrator.read_calibration_cache():
                names = [t.name for t in network.inputs]
                while calibrator.get_batch(names):
                    pass
                calibrator.write_calibration_cache(memoryview(b"TRT-101601-EntropyCalibration2\n"))
            if config.timing_cache is not None:
                config.timing_cache.data += b"+tactics"
            return memoryview(b"ENGINE:" + str(network.flags).encode())

    class Runtime:
        """Deserializes our fake engines; the inspector answers with `module.layer_information` (JSON text)."""

        def __init__(self, logger) -> None:
            module.loggers.append(logger)

        def deserialize_cuda_engine(self, data: bytes):
            if not bytes(data).startswith(b"ENGINE:"):
                return None
            inspector = types.SimpleNamespace(get_engine_information=lambda fmt: module.layer_information)
            return types.SimpleNamespace(create_engine_inspector=lambda: inspector)

    module.OnnxParser = OnnxParser
    module.Builder = Builder
    module.Runtime = Runtime
    module.ProfilingVerbosity = enum.Enum("ProfilingVerbosity", {"LAYER_NAMES_ONLY": 0, "NONE": 1, "DETAILED": 2})
    module.LayerInformationFormat = enum.Enum("LayerInformationFormat", {"ONELINE": 0, "JSON": 1})
    module.layer_information = '{"Layers": []}'
    if module.implicit:
        module.IInt8EntropyCalibrator2 = type("IInt8EntropyCalibrator2", (_CalibratorBase,), {})
        module.IInt8MinMaxCalibrator = type("IInt8MinMaxCalibrator", (_CalibratorBase,), {})
        module.NetworkDefinitionCreationFlag = enum.IntEnum("NetworkDefinitionCreationFlag",
                                                            {"EXPLICIT_BATCH": 0, "STRONGLY_TYPED": 1})
        module.BuilderFlag = enum.IntEnum("BuilderFlag", {"FP16": 0, "INT8": 1, "SPARSE_WEIGHTS": 2})
    else:  # TensorRT 11 removed the precision flags and kept the others
        module.BuilderFlag = enum.IntEnum("BuilderFlag", {"SPARSE_WEIGHTS": 2})
    return module
