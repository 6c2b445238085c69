"""ONNX model -> serialized TensorRT engine, on TensorRT 10.x or 11.x.

    explicit (default): the Q/DQ model; precision comes from its Q/DQ nodes and
        tensor types. TensorRT 11: `builder.create_network()` (every network is
        strongly typed). TensorRT 10: the STRONGLY_TYPED network flag.
    implicit (TensorRT 10 only): the FP32 model, a weakly typed network,
        BuilderFlag.INT8 (+FP16 with fp16_fallback) and a calibrator
        (trtq.calibrators.trt_calibrators) that feeds batches or a cache.

Functions whose names end in `_trt10` hold the calls that exist only in
TensorRT 10; tests/engine/test_trt_api_names.py checks every TensorRT name used
here against the real 10.16 and 11.4 bindings (see trtq/engine/api_names.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from trtq import atomic
from trtq._lazy import require
from trtq.engine.cuda_check import cuda_status
from trtq.engine.device import device_info
from trtq.engine.profiles import ShapeRange
from trtq.engine.sidecar import EngineInfo, write_sidecar
from trtq.engine.trt_log import explain, trt_logger
from trtq.engine.version import has_implicit_quantization, parse_version
from trtq.errors import ConfigError, MissingDependencyError, ModelError, TrtqError
from trtq.onnx_model.model import ModelFingerprint

log = logging.getLogger(__name__)

MODES = ("explicit", "implicit")


def build_engine(
    onnx_path: str | Path,
    out_path: str | Path,
    *,
    mode: str = "explicit",
    profiles: Sequence[ShapeRange] = (),
    workspace_mb: int | None = None,
    timing_cache_path: str | Path | None = None,
    calibrator: Any = None,
    fp16_fallback: bool = False,
    precision: str = "int8",
    fingerprint: ModelFingerprint | None = None,
    detailed_profile: bool = False,
    sparse_weights: bool | None = None,
) -> EngineInfo:
    """Build a TensorRT engine and write it (and its `<engine>.json` sidecar) atomically.

    Args:
        onnx_path: the Q/DQ model (explicit) or the FP32 model (implicit).
        out_path: where the serialized engine goes.
        mode: "explicit" (Q/DQ, any TensorRT) or "implicit" (calibrator, TensorRT 10 only).
        profiles: one optimization profile: a ShapeRange per dynamic input (trtq.engine.profiles).
        workspace_mb: builder workspace limit in MiB (None: TensorRT's default).
        timing_cache_path: timing cache to load if present and to save updated after the build.
        calibrator: implicit mode: from trtq.calibrators.trt_calibrators.make_trt_calibrator.
        fp16_fallback: implicit mode: also allow FP16 kernels for layers left out of INT8.
        precision: what the engine is quantized to ("int8"/"fp8"), recorded in the sidecar.
        fingerprint: the source model's fingerprint, recorded in the sidecar.
        detailed_profile: record each layer's precisions in the engine (ProfilingVerbosity.DETAILED),
            for TensorRT's engine inspector (trtq.engine.layers.engine_layers).
        sparse_weights: set BuilderFlag.SPARSE_WEIGHTS (TensorRT then runs 2:4 sparse kernels where they are
            faster, Ampere and newer); None: set it when a Conv/Gemm/MatMul weight of the model is 2:4 sparse
            (trtq.onnx_model.sparsity), as `trtq prune --pattern 2:4` makes them.

    Returns:
        EngineInfo describing the engine.

    Raises:
        ConfigError: bad mode/workspace, fp16_fallback in explicit mode, implicit without a
            calibrator, or profiles that do not match the network's inputs.
        MissingDependencyError: TensorRT is missing, or implicit mode on TensorRT 11+.
        ModelError: the model is missing or TensorRT cannot parse it (the nodes are named).
        TrtqError: the build failed; the message carries TensorRT's error lines.
    """
    onnx_path, out_path = Path(onnx_path), Path(out_path)
    _check_arguments(onnx_path, mode, workspace_mb, calibrator, fp16_fallback)
    trt = require("tensorrt")
    version = str(trt.__version__)
    _check_version(version, mode)
    sink = trt_logger(trt, fresh=True)  # one logger per process: TensorRT keeps the first it is given
    builder = _create_builder(trt, sink, version)
    network = _create_network(trt, builder, mode, version)
    parser = _parse_onnx(trt, network, sink, onnx_path)  # keep: the network refers to its weights
    config = builder.create_builder_config()
    if workspace_mb is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) * 2**20)
    profile = _add_profile(builder, config, network, profiles, sink)
    if detailed_profile:
        config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    sparse = _wants_sparse_weights(onnx_path, sparse_weights)
    if sparse:
        config.set_flag(trt.BuilderFlag.SPARSE_WEIGHTS)
    if mode == "implicit":
        _configure_implicit_trt10(trt, config, network, calibrator, profile, fp16_fallback)
    cache_path = Path(timing_cache_path) if timing_cache_path else None
    cache_loaded = _load_timing_cache(config, cache_path)
    start = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    seconds = time.perf_counter() - start
    del parser
    _raise_if_failed(serialized, calibrator, sink, onnx_path)
    atomic.write_bytes(out_path, bytes(serialized))
    if cache_path is not None:
        _save_timing_cache(config, cache_path)
    info = EngineInfo(
        engine_path=out_path, source_model=onnx_path, trt_version=version, mode=mode, precision=precision,
        build_seconds=seconds, profiles=tuple(profiles), fingerprint=fingerprint, device=device_info(),
        fp16_fallback=fp16_fallback, workspace_mb=workspace_mb, timing_cache=cache_path,
        timing_cache_loaded=cache_loaded, calibration=_calibration_summary(calibrator) if mode == "implicit" else None,
        sparse_weights=sparse,
    )
    write_sidecar(info)
    log.info("engine %s built in %.1f s (TensorRT %s, %s)", out_path, seconds, version, mode)
    return info


def _wants_sparse_weights(onnx_path: Path, sparse_weights: bool | None) -> bool:
    """`sparse_weights`, or (None) whether any weight of the model follows the 2:4 pattern."""
    if sparse_weights is not None:
        return sparse_weights
    from trtq.onnx_model.model import load_model
    from trtq.onnx_model.sparsity import two_four_sparse_layers

    layers = two_four_sparse_layers(load_model(onnx_path))
    if layers:
        log.info("%d layer(s) have 2:4 sparse weights (first: %s): building with BuilderFlag.SPARSE_WEIGHTS",
                 len(layers), layers[0])
    return bool(layers)


def _check_arguments(onnx_path: Path, mode: str, workspace_mb: int | None, calibrator: Any,
                     fp16_fallback: bool) -> None:
    """Argument errors that need no TensorRT."""
    if mode not in MODES:
        raise ConfigError(f"engine build mode {mode!r} is not known", hint="use explicit (Q/DQ) or implicit")
    if workspace_mb is not None and workspace_mb <= 0:
        raise ConfigError(f"workspace_mb is {workspace_mb}; it must be a positive number of MiB",
                          hint="e.g. --workspace-mb 4096, or leave it unset for TensorRT's default")
    if mode == "implicit" and calibrator is None:
        raise ConfigError("implicit INT8 needs a calibrator (it may serve only a cache)",
                          hint="create one with trtq.calibrators.trt_calibrators.make_trt_calibrator")
    if mode == "explicit" and fp16_fallback:
        raise ConfigError("fp16_fallback applies to implicit mode only: a strongly typed network takes its "
                          "precisions from the model", hint="quantize with --fp16 to get FP16 in the Q/DQ model")
    if not onnx_path.is_file():
        raise ModelError(f"model file {onnx_path} does not exist", hint="check the path to the .onnx file")


def _check_version(version: str, mode: str) -> None:
    if mode == "implicit" and not has_implicit_quantization(version):
        raise MissingDependencyError(
            f"TensorRT {version} has no implicit INT8 calibration: it was removed in TensorRT 11, where INT8 "
            "exists only through Q/DQ nodes in the ONNX model",
            hint="use the Q/DQ path (trtq's default, without --implicit), or TensorRT 10.x for implicit INT8",
        )


def _create_builder(trt: ModuleType, sink: Any, version: str) -> Any:
    """trt.Builder, or one line saying why not: a driver too old for the wheels shows up as a pybind TypeError."""
    try:
        builder = trt.Builder(sink)
    except TypeError as exc:  # "pybind11::init(): factory function returned nullptr"
        builder, cause = None, str(exc).strip()
    else:
        cause = ""
    if builder is not None:
        return builder
    status = cuda_status()
    reason = status.problem or (explain(sink) if sink.errors else cause or "no reason given")
    raise MissingDependencyError(f"TensorRT {version} cannot create a builder: {reason}",
                                 hint=status.fix or "`trtq doctor` shows the CUDA driver, runtime and device")


def _create_network(trt: ModuleType, builder: Any, mode: str, version: str) -> Any:
    if not has_implicit_quantization(parse_version(version)):
        return builder.create_network()  # TensorRT 11+: every network is strongly typed
    return _create_network_trt10(trt, builder, mode)


def _create_network_trt10(trt: ModuleType, builder: Any, mode: str) -> Any:
    if mode == "implicit":
        return builder.create_network(0)  # weakly typed: precision from builder flags
    return builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))


def _parse_onnx(trt: ModuleType, network: Any, sink: Any, onnx_path: Path) -> Any:
    """Parse the model into `network` (from the file, so external weights are found)."""
    parser = trt.OnnxParser(network, sink)
    ok = parser.parse_from_file(str(onnx_path))
    if ok and parser.num_errors == 0:
        return parser
    problems = [_describe_parser_error(parser.get_error(i)) for i in range(parser.num_errors)]
    raise ModelError(f"TensorRT cannot parse {onnx_path}: {'; '.join(problems) or explain(sink)}",
                     hint="exclude the named nodes from quantization (--exclude-nodes) or check the op is "
                          "supported by this TensorRT version; `trtq lint` checks Q/DQ placement")


def _describe_parser_error(parser_error: Any) -> str:
    """`node 'conv1' (Conv): <description>` for one ONNX parser error."""
    desc = str(parser_error.desc()).strip()
    if parser_error.node() < 0:
        return desc
    return f"node '{parser_error.node_name()}' ({parser_error.node_operator()}): {desc}"


def _add_profile(builder: Any, config: Any, network: Any, ranges: Sequence[ShapeRange], sink: Any) -> Any:
    """Add one optimization profile with the ranges; None when the network has fixed shapes."""
    tensors = [network.get_input(i) for i in range(network.num_inputs)]
    names = [tensor.name for tensor in tensors]
    dynamic = [tensor.name for tensor in tensors if any(d < 0 for d in tuple(tensor.shape))]
    given = {r.name for r in ranges}
    if unknown := sorted(given - set(names)):
        raise ConfigError(f"shape ranges name inputs the network does not have: {', '.join(unknown)}",
                          hint=f"its inputs are {', '.join(names)}")
    if missing := [n for n in dynamic if n not in given]:
        raise ConfigError(f"input(s) {', '.join(missing)} have dynamic shapes but no min/opt/max shapes",
                          hint="pass --min-shapes, --opt-shapes and --max-shapes, e.g. x:1x3x224x224")
    if not ranges:
        return None
    profile = builder.create_optimization_profile()
    for r in ranges:
        profile.set_shape(r.name, r.min, r.opt, r.max)
    if config.add_optimization_profile(profile) < 0:
        raise ConfigError(f"TensorRT rejected the optimization profile: {explain(sink)}",
                          hint="check --min-shapes/--opt-shapes/--max-shapes against the model's inputs")
    return profile


def _configure_implicit_trt10(trt: ModuleType, config: Any, network: Any, calibrator: Any, profile: Any,
                              fp16_fallback: bool) -> None:
    """Weakly typed INT8: TensorRT runs the calibrator inside build_serialized_network."""
    config.set_flag(trt.BuilderFlag.INT8)
    if fp16_fallback:
        config.set_flag(trt.BuilderFlag.FP16)
    if hasattr(calibrator, "expect_dtypes"):  # trtq's calibrator: check/convert batches to what TensorRT reads
        calibrator.expect_dtypes(_input_dtypes_trt10(trt, network))
    config.int8_calibrator = calibrator
    # TensorRT calibrates at the OPT shapes of this profile (MIN/MAX are overwritten).
    if profile is not None and not config.set_calibration_profile(profile):
        raise ConfigError("TensorRT rejected the calibration profile (the OPT shapes of --opt-shapes or the data)",
                          hint="check --min-shapes/--opt-shapes/--max-shapes against the model's inputs")


def _input_dtypes_trt10(trt: ModuleType, network: Any) -> dict[str, Any]:
    """input name -> the numpy dtype TensorRT reads its calibration buffer in."""
    from trtq.calibrators.trt_calibrators import calibration_dtype

    dtypes = {}
    for tensor in (network.get_input(i) for i in range(network.num_inputs)):
        try:
            dtype = trt.nptype(tensor.dtype)
        except (TypeError, KeyError):  # a type numpy has no name for (FP8, BF16): read as FP32 anyway
            dtype = "float32"
        dtypes[tensor.name] = calibration_dtype(dtype)
    return dtypes


def _load_timing_cache(config: Any, path: Path | None) -> bool:
    """Attach a timing cache, loaded from `path` if it exists; True if an existing one was accepted."""
    data = b""
    if path is not None and path.is_file():
        data = path.read_bytes()
    timing_cache = None
    if data:
        try:
            timing_cache = config.create_timing_cache(data)
        except Exception as exc:  # a truncated or foreign file
            log.warning("timing cache %s cannot be read (%s)", path, exc)
    if timing_cache is not None and config.set_timing_cache(timing_cache, ignore_mismatch=False):
        return True
    if data:
        log.warning("timing cache %s was made by another TensorRT version or GPU; starting a new one", path)
    # An empty cache still speeds up tactic selection within this build, and is saved afterwards.
    config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatch=False)
    return False


def _save_timing_cache(config: Any, path: Path) -> None:
    timing_cache = config.get_timing_cache()
    if timing_cache is not None:
        atomic.write_bytes(path, bytes(timing_cache.serialize()))


def _raise_if_failed(serialized: Any, calibrator: Any, sink: Any, onnx_path: Path) -> None:
    """A calibrator callback error first (it explains the rest), then an empty build."""
    error = getattr(calibrator, "error", None)
    if error is not None:
        if isinstance(error, TrtqError):
            raise error
        raise TrtqError(f"calibration failed: {type(error).__name__}: {error}") from error
    if serialized is None:
        raise TrtqError(f"TensorRT could not build an engine from {onnx_path}: {explain(sink)}",
                        hint="see TensorRT's messages; `trtq doctor` checks the install")


def _calibration_summary(calibrator: Any) -> dict[str, Any]:
    batches = int(getattr(calibrator, "batches_served", 0))
    return {
        "kind": getattr(calibrator, "kind", None),
        "batches": batches,
        "batches_skipped": int(getattr(calibrator, "batches_skipped", 0)),
        # TensorRT skips get_batch entirely when it accepts the cache it was offered.
        "cache_used": bool(getattr(calibrator, "cache_read", False)) and batches == 0,
        "cache_written": bool(getattr(calibrator, "cache_written", False)),
    }
