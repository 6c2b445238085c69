"""The engine step of `trtq build`: decide whether an engine can be built here, and build it.

Kept apart from trtq.pipeline.build so the pipeline reads as data -> calibrate -> quantize ->
engine -> compare, and the TensorRT specifics (profiles from the data, implicit mode
with a calibrator fed the trtq cache) stay in the engine package.
"""

from __future__ import annotations

import logging
from pathlib import Path

from trtq.atomic import write_bytes
from trtq.config import Config  # named `settings` below: `config` means a TensorRT builder config here
from trtq.data import DataReader
from trtq.engine.builder import build_engine
from trtq.engine.device import gpu_available
from trtq.engine.profiles import ShapeRange, cover_shapes, derive_profiles
from trtq.engine.sidecar import EngineInfo
from trtq.errors import ConfigError
from trtq.onnx_model.model import ModelFingerprint, TensorSpec

log = logging.getLogger(__name__)


def engine_unavailable_reason() -> str | None:
    """None if TensorRT and a CUDA GPU are usable here, else why not (for the report)."""
    ok, why = gpu_available()
    return None if ok else why


def observed_shapes(reader: DataReader, inputs: list[TensorSpec]) -> dict[str, list[tuple[int, ...]]]:
    """Shapes for the profile: every batch shape the data has, and batch 1 where the batch axis is dynamic.

    Calibration records the shapes as it reads (`reader.batch_shapes`); when a cache was reused and
    nothing was read, one pass over the data (decoding only, no inference) records them. The readers'
    last batch may be smaller, so a dynamic batch axis gets the range 1..batch; --min/--opt/--max-shapes
    override what the data says.
    """
    if not reader.batch_shapes:
        for _ in reader:
            pass
    observed = {name: list(shapes) for name, shapes in reader.batch_shapes.items()}
    dynamic_batch = {s.name for s in inputs if s.shape and not (isinstance(s.shape[0], int) and s.shape[0] > 0)}
    for name in dynamic_batch & observed.keys():
        # batch 1 once per shape, so the synthetic entries do not outvote real batches for opt
        observed[name] += sorted({(1, *shape[1:]) for shape in observed[name]} - set(observed[name]))
    return observed


def build_pipeline_engine(settings: Config, qdq_path: Path, fp32_path: Path, engine_path: Path, *,
                          inputs: list[TensorSpec], calib: DataReader, cache_path: Path | None,
                          fingerprint: ModelFingerprint, evaluate: DataReader | None = None) -> EngineInfo:
    """Build the engine `trtq build` asks for: explicit from the Q/DQ model, or implicit (TensorRT 10).

    The profile covers the calibration shapes and, when `evaluate` is given, the shapes of the
    held-out batches the compare stage will feed the engine (OPT stays the calibration's mode).
    """
    b = settings.build
    profiles: list[ShapeRange] = derive_profiles(inputs, observed_shapes(calib, inputs), b.min_shapes,
                                                 b.opt_shapes, b.max_shapes)
    if evaluate is not None:
        profiles = cover_shapes(profiles, inputs, observed_shapes(evaluate, inputs), b.min_shapes, b.max_shapes)
    common = dict(profiles=profiles, workspace_mb=b.workspace_mb, timing_cache_path=b.timing_cache,
                  precision=settings.quantize.precision, fingerprint=fingerprint)
    if not b.implicit:
        return build_engine(qdq_path, engine_path, mode="explicit", **common)
    if cache_path is None:
        raise ConfigError("implicit INT8 needs a calibration cache", hint="leave out --implicit")
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

