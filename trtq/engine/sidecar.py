"""What an engine was built from and how: EngineInfo and its JSON sidecar `<engine>.json`.

An engine runs only with the TensorRT version and GPU compute capability it was
built with, so the sidecar records both, next to the source model's fingerprint,
the quantization mode, the caches used and the optimization profile.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trtq import atomic
from trtq._version import __version__
from trtq.engine.device import DeviceInfo
from trtq.engine.profiles import ShapeRange
from trtq.onnx_model.model import ModelFingerprint


@dataclass(frozen=True)
class EngineInfo:
    """The result of build_engine.

    Attributes:
        engine_path: the serialized engine (.engine / .plan).
        source_model: the ONNX model it was built from.
        trt_version: TensorRT version that built it.
        mode: "explicit" (Q/DQ model, strongly typed) or "implicit" (TensorRT 10 calibrator).
        precision: quantized type, "int8" or "fp8".
        build_seconds: wall time of build_serialized_network, in seconds.
        profiles: MIN/OPT/MAX shapes of the dynamic inputs (empty for fixed shapes).
        fingerprint: fingerprint of the source model, if the caller passed it.
        device: the GPU it was built on.
        fp16_fallback: implicit mode also allowed FP16 kernels.
        workspace_mb: builder workspace limit in MiB (None: TensorRT's default).
        timing_cache: timing cache file used and updated, if any.
        timing_cache_loaded: an existing timing cache was read and accepted.
        calibration: implicit mode only: calibrator kind, batches fed, whether a cache was used.
        sparse_weights: built with BuilderFlag.SPARSE_WEIGHTS (2:4 sparse weights, trtq prune --pattern 2:4).
    """

    engine_path: Path
    source_model: Path
    trt_version: str
    mode: str
    precision: str
    build_seconds: float
    profiles: tuple[ShapeRange, ...] = ()
    fingerprint: ModelFingerprint | None = None
    device: DeviceInfo | None = None
    fp16_fallback: bool = False
    workspace_mb: int | None = None
    timing_cache: Path | None = None
    timing_cache_loaded: bool = False
    calibration: dict[str, Any] | None = field(default=None)
    sparse_weights: bool = False

    @property
    def sidecar_path(self) -> Path:
        return sidecar_path(self.engine_path)


def sidecar_path(engine_path: str | Path) -> Path:
    """`model.engine` -> `model.engine.json` (never clobbers a `model.json`)."""
    engine_path = Path(engine_path)
    return engine_path.with_name(engine_path.name + ".json")


def sidecar_dict(info: EngineInfo) -> dict[str, Any]:
    """The JSON-ready content of the sidecar (pure: no files, no GPU)."""
    fingerprint = None
    if info.fingerprint is not None:
        fingerprint = {"graph": info.fingerprint.graph, "weights": info.fingerprint.weights}
    timing = None
    if info.timing_cache is not None:
        timing = {"path": str(info.timing_cache), "loaded": info.timing_cache_loaded}
    return {
        "engine": info.engine_path.name,
        "trtq_version": __version__,
        "tensorrt_version": info.trt_version,
        "device": info.device.to_dict() if info.device else None,
        "mode": info.mode,
        "precision": info.precision,
        "fp16_fallback": info.fp16_fallback,
        "sparse_weights": info.sparse_weights,
        "source_model": {"path": str(info.source_model), "fingerprint": fingerprint},
        "calibration": info.calibration,
        "timing_cache": timing,
        "workspace_mb": info.workspace_mb,
        "build_seconds": round(info.build_seconds, 3),
        "profiles": [r.to_dict() for r in info.profiles],
    }


def write_sidecar(info: EngineInfo) -> Path:
    """Write `<engine>.json` atomically; returns its path."""
    path = info.sidecar_path
    atomic.write_text(path, json.dumps(sidecar_dict(info), indent=2) + "\n")
    return path
