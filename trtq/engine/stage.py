"""The engine step of `trtq build`: decide whether an engine can be built here, and build it.

Kept apart from trtq.build so the pipeline reads as data -> calibrate -> quantize ->
engine -> compare, and the TensorRT specifics (profiles from the data, implicit mode
with a calibrator fed the trtq cache) stay in the engine package.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from trtq.atomic import write_bytes
from trtq.config import Config  # named `settings` below: `config` means a TensorRT builder config here
from trtq.data import DataReader
from trtq.engine.builder import build_engine
from trtq.engine.device import gpu_available
from trtq.engine.profiles import ShapeRange, derive_profiles, record_shapes
from trtq.engine.sidecar import EngineInfo
from trtq.model import ModelFingerprint, TensorSpec

log = logging.getLogger(__name__)


def engine_unavailable_reason() -> str | None:
    """None if TensorRT and a CUDA GPU are usable here, else why not (for the report)."""
    ok, why = gpu_available()
    return None if ok else why


def observed_shapes(reader: DataReader, inputs: list[TensorSpec]) -> dict[str, list[tuple[int, ...]]]:
    """Shapes for the profile: the first batch, and batch 1 where the batch axis is dynamic.

    The readers' last batch may be smaller, so a dynamic batch axis gets the range 1..batch.
    Other dynamic axes take the data's first batch; --min/--opt/--max-shapes widen them.
    """
    observed: dict[str, list[tuple[int, ...]]] = {}
    first = next(iter(reader.feed_dicts()))
    record_shapes(observed, first)
    dynamic_batch = {s.name for s in inputs if s.shape and not (isinstance(s.shape[0], int) and s.shape[0] > 0)}
    single = {name: np.empty((1, *a.shape[1:]), a.dtype) for name, a in first.items() if name in dynamic_batch}
    record_shapes(observed, single)
    return observed


def build_pipeline_engine(settings: Config, qdq_path: Path, fp32_path: Path, engine_path: Path, *,
                          inputs: list[TensorSpec], calib: DataReader, cache_path: Path,
                          fingerprint: ModelFingerprint) -> EngineInfo:
    """Build the engine `trtq build` asks for: explicit from the Q/DQ model, or implicit (TensorRT 10)."""
    b = settings.build
    profiles: list[ShapeRange] = derive_profiles(inputs, observed_shapes(calib, inputs), b.min_shapes,
                                                 b.opt_shapes, b.max_shapes)
    common = dict(profiles=profiles, workspace_mb=b.workspace_mb, timing_cache_path=b.timing_cache,
                  precision=settings.quantize.precision, fingerprint=fingerprint)
    if not b.implicit:
        return build_engine(qdq_path, engine_path, mode="explicit", **common)
    from trtq.calibrators.trt_calibrators import make_trt_calibrator

    kind = "minmax" if settings.calibration.method == "minmax" else "entropy"
    opt = {r.name: r.opt for r in profiles}
    calibrator = make_trt_calibrator(
        kind, calib.feed_dicts(), read_cache=lambda: cache_path.read_bytes(),
        write_cache=lambda data: _keep_ours(cache_path, data), input_names=[s.name for s in inputs],
        shapes=opt or None,
    )
    with calibrator:
        return build_engine(fp32_path, engine_path, mode="implicit", calibrator=calibrator, **common)


def _keep_ours(cache_path: Path, data: bytes) -> None:
    """TensorRT writes back the cache it was given; keep trtq's (it has the sidecar) unless it changed."""
    if cache_path.read_bytes() != data:
        log.warning("TensorRT rewrote the calibration cache; saving its version next to trtq's")
        write_bytes(cache_path.with_suffix(".trt.cache"), data)

