"""The TensorRT and cuda-python names trtq's GPU code uses, per TensorRT version path.

None of our machines can import TensorRT, so the GPU code is checked by name:
tests/engine/test_trt_api_names.py reads every attribute used on TensorRT
objects in calibrators/trt_calibrators.py and trtq/engine/*.py (with the ast
module), asserts each is declared here, and checks the declared names against
the identifiers in the real `tensorrt-cu12-bindings` wheels 10.16.1.11 and
11.4.0.106.

Conventions the check relies on:
- TensorRT objects live in variables named as in TRT_OBJECT_ROOTS (the module is
  always `trt`), cuda-python's runtime in `cudart` (CUDA_OBJECT_ROOTS).
- Code that runs only on TensorRT 10 sits in functions whose names end in
  `_trt10`, or in calibrators/trt_calibrators.py (calibrators exist only in 10).
  Every other function must work on both 10.x and 11.x.
"""

from __future__ import annotations

# Variable names that hold TensorRT objects; attributes on them are TensorRT API names.
TRT_OBJECT_ROOTS = frozenset({
    "trt", "builder", "network", "parser", "parser_error", "config", "profile", "tensor", "timing_cache",
    "runtime", "engine", "inspector",
})
# Variable names that hold cuda-python runtime objects.
CUDA_OBJECT_ROOTS = frozenset({"cudart", "props"})

# Used on every TensorRT version (must exist in 10.16 and 11.4).
COMMON_NAMES = frozenset({
    "__version__", "__init__",
    # logging
    "ILogger", "Severity", "INTERNAL_ERROR", "ERROR", "WARNING",
    # builder, network, parser
    "Builder", "create_network", "create_builder_config", "build_serialized_network",
    "OnnxParser", "parse_from_file", "num_errors", "get_error",
    "desc", "node", "node_name", "node_operator",
    "num_inputs", "get_input", "name", "shape",
    # config
    "set_memory_pool_limit", "MemoryPoolType", "WORKSPACE",
    "create_optimization_profile", "set_shape", "add_optimization_profile",
    "create_timing_cache", "set_timing_cache", "get_timing_cache", "serialize",
    # engine inspector (layer precisions)
    "profiling_verbosity", "ProfilingVerbosity", "DETAILED", "Runtime", "deserialize_cuda_engine",
    "create_engine_inspector", "get_engine_information", "LayerInformationFormat", "JSON",
    # 2:4 structured sparsity (trtq prune --pattern 2:4): kept in TensorRT 11
    "set_flag", "BuilderFlag", "SPARSE_WEIGHTS",
})

# Used only on the TensorRT 10 path (must exist in 10.16).
TRT10_ONLY_NAMES = frozenset({
    "NetworkDefinitionCreationFlag", "STRONGLY_TYPED",
    "INT8", "FP16",
    "int8_calibrator", "set_calibration_profile",
    "IInt8EntropyCalibrator2", "IInt8MinMaxCalibrator",
    # the network inputs' types, which the calibrator's buffers must have
    "nptype", "dtype",
})

# Used only on the TensorRT 11 path (none so far: 11 needs a subset of what 10 needs).
TRT11_ONLY_NAMES: frozenset[str] = frozenset()

TRT10_NAMES = COMMON_NAMES | TRT10_ONLY_NAMES
TRT11_NAMES = COMMON_NAMES | TRT11_ONLY_NAMES

# Methods our subclasses override and the number of arguments (besides self) TensorRT calls them with
# (its docstrings: `get_batch(names)`, `write_calibration_cache(self, cache)`, `log(self, severity, msg)`).
CALIBRATOR_ARITY = {"get_batch_size": 0, "get_batch": 1, "read_calibration_cache": 0, "write_calibration_cache": 1}
LOGGER_ARITY = {"log": 2}
CALIBRATOR_METHODS = frozenset(CALIBRATOR_ARITY)
LOGGER_METHODS = frozenset(LOGGER_ARITY)

# Names probed with hasattr/getattr(trt, "...") (may exist in one version only: that is why they are probed).
PROBE_NAMES = frozenset({"__version__", "IInt8EntropyCalibrator2"})
# Keyword argument names of calls on TensorRT objects (pybind11 keeps py::arg names as text).
KEYWORD_NAMES = frozenset({"ignore_mismatch"})

# Which TensorRT class the variable named so holds, for the per-class check against the docstring
# symbols (`tensorrt::<Class>Doc::<member>`) of the bindings.
ROOT_CLASSES = {
    "builder": "Builder", "config": "IBuilderConfig", "network": "INetworkDefinition", "parser": "OnnxParser",
    "parser_error": "ParserError", "profile": "IOptimizationProfile", "timing_cache": "ITimingCache",
    "tensor": "ITensor",
}
# Members used on those classes that the binary documents under no class (properties, and methods whose
# docstring symbol link-time optimisation dropped): checked as bare names only.
UNDOCUMENTED_MEMBERS = frozenset({
    ("INetworkDefinition", "num_inputs"), ("OnnxParser", "num_errors"), ("OnnxParser", "parse_from_file"),
    ("IOptimizationProfile", "set_shape"), ("ITensor", "name"), ("ITensor", "shape"), ("ITensor", "dtype"),
    ("IBuilderConfig", "int8_calibrator"), ("OnnxParser", "get_error"), ("IBuilderConfig", "profiling_verbosity"),
})

# Gone in TensorRT 11 (migration guide; checked absent from the 11.4 bindings where the name is unique).
REMOVED_IN_TRT11 = frozenset({
    "IInt8Calibrator", "IInt8EntropyCalibrator2", "IInt8EntropyCalibrator", "IInt8MinMaxCalibrator",
    "IInt8LegacyCalibrator", "CalibrationAlgoType", "int8_calibrator", "set_calibration_profile",
    "get_calibration_profile", "dynamic_range", "get_batch", "get_batch_size", "read_calibration_cache",
    "write_calibration_cache", "EXPLICIT_BATCH", "QuantizationFlag", "set_quantization_flag",
})
# Enum members removed in 11 (checked qualified: INT8, FP16, ... live on as DataType members).
REMOVED_MEMBERS_IN_TRT11 = frozenset({
    "BuilderFlag.INT8", "BuilderFlag.FP16", "BuilderFlag.FP8", "BuilderFlag.BF16", "BuilderFlag.INT4",
    "BuilderFlag.FP4", "BuilderFlag.OBEY_PRECISION_CONSTRAINTS", "BuilderFlag.PREFER_PRECISION_CONSTRAINTS",
    "NetworkDefinitionCreationFlag.EXPLICIT_BATCH",
})
# Removed-member names that are also members of an enum TensorRT 11 keeps (DataType.INT8, ...).
MEMBER_NAMES_KEPT_ELSEWHERE = frozenset({"INT8", "FP16", "FP8", "BF16", "INT4", "FP4"})
# Deprecated but still present in the 11.4 bindings (the migration guide lists DIRECT_IO as removed; the
# 11.4 bindings still register it): trtq uses none of them, and the table says what the binary holds.
DEPRECATED_IN_TRT11 = frozenset({"BuilderFlag.DIRECT_IO"})

# cuda-python runtime (cuda.bindings.runtime) names: device buffers and device queries.
CUDA_NAMES = frozenset({
    "cudaMalloc", "cudaFree", "cudaMemcpy", "cudaMemcpyKind", "cudaMemcpyHostToDevice",
    "cudaError_t", "cudaSuccess", "cudaGetDevice", "cudaGetDeviceCount", "cudaGetDeviceProperties",
    "cudaDriverGetVersion", "cudaRuntimeGetVersion",
    "name", "major", "minor",
})
