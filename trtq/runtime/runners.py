"""Polygraphy runners for the two sides of a comparison.

The reference is the FP32 model on ONNX Runtime (CUDA provider when a GPU answers,
else CPU). The candidate is either a Q/DQ ONNX model on ONNX Runtime CPU or a
TensorRT engine, run by `trtq.engine.runner.trt_runner` (imported only when an
engine is given, so everything else works without TensorRT).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import onnx
from polygraphy.backend.onnx import BytesFromOnnx, ModifyOutputs
from polygraphy.backend.onnxrt import OnnxrtRunner

from trtq import _lazy
from trtq.errors import MissingDependencyError, ModelError
from trtq.onnx_model import weight_files
from trtq.onnx_model.large_models import exceeds_protobuf_limit
from trtq.onnx_model.model import MAX_IR_VERSION, external_data_files, load_model_by_reference
from trtq.runtime.qdq_options import QDQ_SESSION_ENTRIES, ort_optimization_level
from trtq.runtime.session import clamp_ir_version, external_folder_entry, load_error, providers_for

ENGINE_SUFFIXES = (".engine", ".plan", ".trt")
# protobuf cannot serialise more than 2 GiB into the bytes ONNX Runtime is given.


def exact_pattern(name: str) -> str:
    """`name` escaped for Polygraphy's output marking, which treats `*?[]` as fnmatch wildcards."""
    return "".join(f"[{c}]" if c in "*?[]" else c for c in name)


def is_engine(candidate: str | Path | onnx.ModelProto) -> bool:
    """True if `candidate` names a serialized TensorRT engine (by its file suffix)."""
    return isinstance(candidate, (str, Path)) and Path(candidate).suffix.lower() in ENGINE_SUFFIXES


def load(model: str | Path | onnx.ModelProto) -> tuple[onnx.ModelProto, str, Path | None]:
    """(a private copy of the model with an IR version ONNX Runtime reads, a label for reports, the folder
    its weights are read from when a file over 2 GiB leaves them there (load_model_by_reference), else None)."""
    weights_dir = None
    if isinstance(model, onnx.ModelProto):
        copy, label = onnx.ModelProto(), f"<in-memory model {model.graph.name or 'graph'}>"
        copy.CopyFrom(model)
    else:
        (copy, weights_dir), label = load_model_by_reference(model), str(model)
    if not copy.ir_version:
        copy.ir_version = MAX_IR_VERSION
    clamp_ir_version(copy)
    return copy, label, weights_dir


def onnx_runner(model: onnx.ModelProto, name: str, outputs: Sequence[str], providers: Sequence[str],
                level: str = "all", weights_dir: Path | None = None) -> OnnxrtRunner:
    """An ONNX Runtime runner whose session (created now, so load errors surface here) returns `outputs`.

    Args:
        model: the model (left unchanged; Polygraphy's ModifyOutputs works on a copy).
        name: runner name shown in Polygraphy's results.
        outputs: tensors to return, in order: the graph outputs first, then marked intermediates.
        providers: ONNX Runtime execution providers.
        level: ONNX Runtime graph optimization level, "basic" or "all" (see trtq.runtime.qdq_options).
        weights_dir: the folder of the external data of a model loaded by reference (see `load`).

    Raises:
        ModelError: the model is too large to pass as bytes, or ONNX Runtime cannot load it.
    """
    return OnnxrtRunner(_session(model, name, outputs, providers, level, weights_dir), name=name)


def _session(model: onnx.ModelProto, name: str, outputs: Sequence[str], providers: Sequence[str], level: str,
             weights_dir: Path | None = None) -> Any:
    if weights_dir is not None and external_data_files(model):  # weights left in their files: ORT reads them there
        return _session_from(model, name, outputs, providers, level, external_folder_entry(weights_dir))
    if exceeds_protobuf_limit(model):  # weights to files first (shared with other sessions): the proto is then small
        light = weight_files.shared.skeleton(model)
        return _session_from(light, name, outputs, providers, level, external_folder_entry(weight_files.shared.folder))
    return _session_from(model, name, outputs, providers, level)


def _session_from(model: onnx.ModelProto, name: str, outputs: Sequence[str], providers: Sequence[str], level: str,
                  entries: Mapping[str, str] | None = None) -> Any:
    """The session of `model` with `outputs`, from bytes; `entries`: more session config entries (e.g. the
    folder of its external data)."""
    ort = _lazy.require("onnxruntime")
    modified = ModifyOutputs(model, outputs=[exact_pattern(o) for o in outputs], copy=True)
    levels = {"basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC, "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}
    # Our own session rather than Polygraphy's SessionFromOnnx, which takes no session config entries:
    # Q/DQ models must run with ORT's integer fusions off (trtq.runtime.qdq_options).
    options = ort.SessionOptions()
    options.graph_optimization_level = levels[level]
    for key, value in {**QDQ_SESSION_ENTRIES, **(entries or {})}.items():
        options.add_session_config_entry(key, value)
    try:
        return ort.InferenceSession(BytesFromOnnx(modified)(), options, providers=list(providers))
    except Exception as exc:  # ONNX Runtime and Polygraphy raise their own types for every load failure
        raise load_error(exc, name) from None


class _OutputsApart:
    """A session-like pair: the model outputs from the model as it is, marked intermediates from a copy.

    Marking an intermediate tensor as an output stops ONNX Runtime from fusing the node that makes it
    (Conv+BatchNorm, Conv+Add, ...), which changes float rounding by an ulp; in a Q/DQ model a later
    QuantizeLinear can turn that ulp into a whole quantization step, so the model outputs of a marked
    session differ from those of the model itself (measured: 0.4 dB SQNR on the PP-OCR classifier).
    The output metrics must not depend on whether per-layer metrics were asked for.
    """

    def __init__(self, plain: Any, marked: Any, outputs: Sequence[str]) -> None:
        self._plain, self._marked = plain, marked
        self._outputs = list(outputs)
        self._extra = [o.name for o in marked.get_outputs() if o.name not in set(outputs)]

    def get_inputs(self) -> Any:
        return self._plain.get_inputs()

    def get_outputs(self) -> list[Any]:
        extra = set(self._extra)
        return [*self._plain.get_outputs(), *(o for o in self._marked.get_outputs() if o.name in extra)]

    def run(self, names: None, feed: dict[str, Any]) -> list[Any]:
        return [*self._plain.run(self._outputs, feed), *self._marked.run(self._extra, feed)]


def reference_providers() -> list[str]:
    """CUDA then CPU when ONNX Runtime's CUDA provider has a device, else CPU only."""
    return providers_for("auto")


def candidate_runner(model: onnx.ModelProto, outputs: Sequence[str], weights_dir: Path | None = None) -> OnnxrtRunner:
    """The Q/DQ candidate on ONNX Runtime CPU, at the optimization level its Q/DQ types allow.

    `outputs` beyond the graph outputs come from a second session (see _OutputsApart); `weights_dir`: see `load`.
    """
    level, cpu = ort_optimization_level(model), ["CPUExecutionProvider"]
    graph = [o.name for o in model.graph.output]
    if list(outputs) == graph:
        return onnx_runner(model, "candidate", outputs, cpu, level, weights_dir)
    plain = _session(model, "candidate", graph, cpu, level, weights_dir)
    marked = _session(model, "candidate", outputs, cpu, level, weights_dir)
    return OnnxrtRunner(_OutputsApart(plain, marked, graph), name="candidate")


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
