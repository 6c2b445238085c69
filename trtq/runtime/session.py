"""ONNX Runtime sessions: providers, the IR version clamp, models over 2 GiB and the load error, in one place.

Models under 2 GiB go to ONNX Runtime as bytes: no temporary files at all. A
model whose weights stay in external files (loaded without them) goes as bytes
too, with ONNX Runtime told the folder to read those files from (it refuses
links to them from elsewhere: "External data path escapes model directory").
Only a model over 2 GiB held in memory is written, its weights streamed to a
data file in a temporary directory, so nothing lands in the working directory;
evaluation sessions (`cpu_session`) of such models share their weight files
(trtq.onnx_model.weight_files), so the many models of an accuracy search that
share weights do not each write them.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import onnx

from trtq import _lazy
from trtq.errors import MissingDependencyError, ModelError, first_line
from trtq.onnx_model import weight_files
from trtq.onnx_model.large_models import exceeds_protobuf_limit, serialized_within_limit, skeleton
from trtq.onnx_model.model import MAX_IR_VERSION, external_data_files
from trtq.runtime.qdq_options import QDQ_SESSION_ENTRIES, ort_optimization_level

LOAD_HINT = "check the model with 'trtq inspect' and onnx.checker"
# ONNX Runtime (>= 1.18) reads the external data of a model given as bytes from this folder.
EXTERNAL_FOLDER_ENTRY = "session.model_external_initializers_file_folder_path"

# Intra-op threads of every session this process creates (0: ONNX Runtime's default, one per core).
# A Ray worker sets its share of the cores (trtq.cluster), so that workers do not oversubscribe them.
_process_threads = 0


def set_process_threads(threads: int) -> None:
    """Give every ONNX Runtime session this process creates from now on `threads` intra-op threads (0: default)."""
    global _process_threads
    _process_threads = max(0, int(threads))


def clamp_ir_version(model: onnx.ModelProto) -> None:
    """Lower the model's IR version, in place, to the newest ONNX Runtime reads (onnx may write a newer one)."""
    model.ir_version = min(model.ir_version, MAX_IR_VERSION)


def load_error(exc: Exception, name: str | None = None) -> ModelError:
    """The one error for a model ONNX Runtime cannot load (`name`: which side, e.g. "candidate")."""
    which = f"the {name} model" if name else "the model"
    return ModelError(f"ONNX Runtime cannot load {which}: {first_line(exc)}", hint=LOAD_HINT)


def providers_for(choice: str) -> list[str]:
    """ONNX Runtime providers for 'auto', 'cpu' or 'cuda'.

    'auto' uses CUDA only when ONNX Runtime lists it *and* a device answers, since
    onnxruntime-gpu lists the CUDA provider even on machines without a GPU.
    """
    ort = _lazy.require("onnxruntime")
    available = ort.get_available_providers()
    if choice == "cpu":
        return ["CPUExecutionProvider"]
    has_cuda = "CUDAExecutionProvider" in available and _cuda_device_present()
    if choice == "cuda" and not has_cuda:
        raise MissingDependencyError(
            "the CUDA provider of ONNX Runtime is not usable here (no GPU or no CUDA libraries)",
            hint="use --provider cpu, or install onnxruntime-gpu on a machine with an NVIDIA GPU",
        )
    return ["CUDAExecutionProvider", "CPUExecutionProvider"] if has_cuda else ["CPUExecutionProvider"]


def _cuda_device_present() -> bool:
    return any(Path(p).exists() for p in ("/dev/nvidia0", "/dev/nvidiactl"))


@contextlib.contextmanager
def create_session(model: onnx.ModelProto, model_dir: str | Path | None, providers: list[str],
                   config_entries: Mapping[str, str] | None = None) -> Iterator[Any]:
    """Yield an onnxruntime.InferenceSession for `model`, cleaning up temporary files after.

    Args:
        model: the model; with external data it may be loaded without weights.
        model_dir: folder of the original model file (where external data lives).
        providers: ONNX Runtime execution providers.
        config_entries: extra session config entries (SessionOptions.add_session_config_entry).

    Raises:
        ModelError: ONNX Runtime rejects the model.
    """
    clamp_ir_version(model)
    folder = Path(model_dir or ".") if external_data_files(model) else None
    data = serialized_within_limit(model)
    if data is not None:
        entries = {**(config_entries or {}), **external_folder_entry(folder)}
        session = _new_session(data, providers, entries)
        del data  # ONNX Runtime has its own copy; not held while the session lives
        yield session
        return
    with tempfile.TemporaryDirectory(prefix="trtq-") as tmp:
        path = Path(tmp) / "model.onnx"
        # Over 2 GiB: the weights go to a data file next to it, streamed from `model` (and from its files).
        onnx.save_model(skeleton(model, Path(tmp) / "trtq-weights.data", weights_dir=folder), str(path))
        yield _new_session(str(path), providers, config_entries)


def external_folder_entry(folder: Path | None) -> dict[str, str]:
    """The session config entry that makes ONNX Runtime read a model's external data from `folder`
    when the model is given as bytes (none when `folder` is None)."""
    return {EXTERNAL_FOLDER_ENTRY: str(folder.resolve())} if folder is not None else {}


def session_from_bytes(data: bytes, providers: list[str], config_entries: Mapping[str, str] | None = None) -> Any:
    """An onnxruntime.InferenceSession of the serialized model `data` (what create_session makes for a model
    under 2 GiB), for callers that have the bytes already.

    Raises:
        ModelError: ONNX Runtime rejects the model.
    """
    return _new_session(data, providers, config_entries)


def _new_session(model: bytes | str, providers: list[str], config_entries: Mapping[str, str] | None = None) -> Any:
    ort = _lazy.require("onnxruntime")
    options = ort.SessionOptions()
    options.log_severity_level = 3  # ORT's warnings about unused initializers are noise here
    options.intra_op_num_threads = _process_threads
    for key, value in (config_entries or {}).items():
        options.add_session_config_entry(key, value)
    try:
        return ort.InferenceSession(model, options, providers=providers)
    except Exception as exc:  # ORT raises its own exception types for every load failure
        raise load_error(exc) from None


def with_outputs(model: onnx.ModelProto, outputs: Sequence[str]) -> onnx.ModelProto:
    """A copy of `model` whose graph outputs are exactly `outputs` (existing entries keep their type info)."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    known = {o.name: o for o in model.graph.output}
    del copy.graph.output[:]
    for name in outputs:
        info = onnx.ValueInfoProto()
        if name in known:
            info.CopyFrom(known[name])
        else:
            info.name = name  # ONNX Runtime infers the type of an untyped output
        copy.graph.output.append(info)
    return copy


def cpu_session(model: onnx.ModelProto, outputs: Sequence[str] | None = None, threads: int = 0,
                weights_dir: Path | None = None) -> Any:
    """An ONNX Runtime CPU session of `model` (returning `outputs`, default the graph outputs).

    The graph optimization level follows trtq.runtime.qdq_options (basic for FP8 / FP16-scale Q/DQ).
    Weights left in external files under `weights_dir` (a model loaded by reference, or made from one)
    are read by ONNX Runtime from there. A model over 2 GiB in memory goes to ONNX Runtime as a skeleton
    whose weights are files of trtq.onnx_model.weight_files.shared, which the sessions of models sharing
    those weights share.

    Raises:
        ModelError: ONNX Runtime cannot load the model, its graph alone is over 2 GiB, or it keeps weights
            in external files and `weights_dir` is None.
    """
    ort = _lazy.require("onnxruntime")
    data, level, entries = evaluation_bytes(model, outputs, weights_dir)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = threads or _process_threads
    if level == "basic":
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    for key, value in {**QDQ_SESSION_ENTRIES, **entries}.items():
        options.add_session_config_entry(key, value)
    try:
        return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ONNX Runtime raises its own types for every load failure
        raise load_error(exc) from None


def evaluation_bytes(model: onnx.ModelProto, outputs: Sequence[str] | None = None, weights_dir: Path | None = None
                     ) -> tuple[bytes, str, dict[str, str]]:
    """(the bytes ONNX Runtime loads for `model` returning `outputs`, its optimization level, the session
    config entries they need): the model itself under 2 GiB, with the entry naming `weights_dir` when
    weights are left in files there; over it, a skeleton whose large weights are files of
    weight_files.shared, with the entry naming that folder. `model` is left as it is.

    Raises:
        ModelError: the graph alone is over 2 GiB (weight_files.WeightFiles.skeleton), or weights are left
            in external files and no `weights_dir` says where.
    """
    files = external_data_files(model)
    if files and weights_dir is None:
        raise ModelError(f"model '{model.graph.name}' keeps weights in external files ({', '.join(files[:3])}) "
                         "and no folder to read them from was given",
                         hint="pass weights_dir (the folder load_model_by_reference returns), or load the model "
                              "with its weights (trtq.onnx_model.model.load_model)")
    folder = weights_dir if files else None
    if not exceeds_protobuf_limit(model):
        work = with_outputs(model, outputs) if outputs is not None else model
        data = serialized_within_limit(_readable(work))
        if data is not None:
            return data, ort_optimization_level(work), external_folder_entry(folder)
    # No copy of the weights in memory, unlike with_outputs; those in `folder` are copied into the store.
    light = weight_files.shared.skeleton(model, folder)
    clamp_ir_version(light)
    work = with_outputs(light, outputs) if outputs is not None else light
    return work.SerializeToString(), ort_optimization_level(work), external_folder_entry(weight_files.shared.folder)


def _readable(model: onnx.ModelProto) -> onnx.ModelProto:
    """`model`, or a copy with an IR version ONNX Runtime reads."""
    if model.ir_version <= MAX_IR_VERSION:
        return model
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    clamp_ir_version(copy)
    return copy


def ort_bytes(model: onnx.ModelProto) -> bytes:
    """The serialized model with an IR version ONNX Runtime reads (`model` itself is left as it is)."""
    data: bytes = _readable(model).SerializeToString()
    return data
