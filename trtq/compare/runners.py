"""Polygraphy runners for the two sides of a comparison.

The reference is the FP32 model on ONNX Runtime (CUDA provider when a GPU answers,
else CPU). The candidate is either a Q/DQ ONNX model on ONNX Runtime CPU or a
TensorRT engine, run by `trtq.engine.runner.trt_runner` (imported only when an
engine is given, so everything else works without TensorRT).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import onnx
from polygraphy.backend.onnx import BytesFromOnnx, ModifyOutputs
from polygraphy.backend.onnxrt import OnnxrtRunner, SessionFromOnnx

from trtq import _lazy
from trtq.compare.layers import exact_pattern
from trtq.errors import MissingDependencyError, ModelError, first_line
from trtq.model import MAX_IR_VERSION, PROTOBUF_LIMIT, load_model
from trtq.qdq.runtime import ort_optimization_level
from trtq.session import providers_for

ENGINE_SUFFIXES = (".engine", ".plan", ".trt")
# protobuf cannot serialise more than 2 GiB into the bytes ONNX Runtime is given.


def is_engine(candidate: str | Path | onnx.ModelProto) -> bool:
    """True if `candidate` names a serialized TensorRT engine (by its file suffix)."""
    return isinstance(candidate, (str, Path)) and Path(candidate).suffix.lower() in ENGINE_SUFFIXES


def load(model: str | Path | onnx.ModelProto) -> tuple[onnx.ModelProto, str]:
    """(a private copy of the model with an IR version ONNX Runtime reads, a label for reports)."""
    if isinstance(model, onnx.ModelProto):
        copy, label = onnx.ModelProto(), f"<in-memory model {model.graph.name or 'graph'}>"
        copy.CopyFrom(model)
    else:
        copy, label = load_model(model), str(model)
    copy.ir_version = min(copy.ir_version or MAX_IR_VERSION, MAX_IR_VERSION)
    return copy, label


def onnx_runner(model: onnx.ModelProto, name: str, outputs: Sequence[str], providers: Sequence[str],
                level: str = "all") -> OnnxrtRunner:
    """An ONNX Runtime runner whose session (created now, so load errors surface here) returns `outputs`.

    Args:
        model: the model (left unchanged; Polygraphy's ModifyOutputs works on a copy).
        name: runner name shown in Polygraphy's results.
        outputs: tensors to return, in order: the graph outputs first, then marked intermediates.
        providers: ONNX Runtime execution providers.
        level: ONNX Runtime graph optimization level, "basic" or "all" (see trtq.qdq.runtime).

    Raises:
        ModelError: the model is too large to pass as bytes, or ONNX Runtime cannot load it.
    """
    if model.ByteSize() > PROTOBUF_LIMIT:
        raise ModelError(f"model '{model.graph.name}' is over 2 GiB, which the comparison cannot load yet",
                         hint="compare a model whose weights fit in 2 GiB")
    ort = _lazy.require("onnxruntime")
    modified = ModifyOutputs(model, outputs=[exact_pattern(o) for o in outputs], copy=True)
    levels = {"basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC, "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}
    loader = SessionFromOnnx(BytesFromOnnx(modified), providers=list(providers), graph_optimization_level=levels[level])
    try:
        session = loader()
    except Exception as exc:  # ONNX Runtime and Polygraphy raise their own types for every load failure
        first = first_line(exc)
        raise ModelError(f"ONNX Runtime cannot load the {name} model: {first}",
                         hint="check the model with 'trtq inspect' and onnx.checker") from None
    return OnnxrtRunner(session, name=name)


def reference_providers() -> list[str]:
    """CUDA then CPU when ONNX Runtime's CUDA provider has a device, else CPU only."""
    return providers_for("auto")


def candidate_runner(model: onnx.ModelProto, outputs: Sequence[str]) -> OnnxrtRunner:
    """The Q/DQ candidate on ONNX Runtime CPU, at the optimization level its Q/DQ types allow."""
    return onnx_runner(model, "candidate", outputs, ["CPUExecutionProvider"], ort_optimization_level(model))


def engine_runner(engine_path: str | Path) -> Any:
    """A Polygraphy runner for a serialized TensorRT engine (needs TensorRT and a GPU).

    Raises:
        ModelError: the engine file does not exist.
        MissingDependencyError: trtq's TensorRT runner, TensorRT or a GPU is not available.
    """
    if not Path(engine_path).is_file():
        raise ModelError(f"engine file {engine_path} does not exist", hint="check the path to the engine")
    try:
        from trtq.engine.runner import trt_runner
    except ImportError as exc:
        raise MissingDependencyError(
            f"comparing TensorRT engines needs trtq.engine.runner, which cannot be imported ({exc})",
            hint="install 'trtq[tensorrt]', or compare the Q/DQ ONNX model on ONNX Runtime instead",
        ) from exc
    return trt_runner(str(engine_path), name="candidate")
