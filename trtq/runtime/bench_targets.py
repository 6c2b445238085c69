"""What a benchmark runs: an ONNX model on an ONNX Runtime provider, or a TensorRT engine.

    for target in targets_for("model.qdq.onnx", providers="auto"):
        with open_target(target) as infer:
            infer(feed)

An ONNX model runs on ONNX Runtime CPU, and also on the CUDA provider where it has a device
("auto"). A Q/DQ model is a session with trtq.runtime.qdq_options.QDQ_SESSION_ENTRIES and the
optimization level its Q/DQ types allow, as trtq's accuracy checks run it, so the latency measured
is that of the model the report judged. FP32 models get the same entries (they change nothing
without Q/DQ nodes). A serialized engine (.engine/.plan/.trt) runs through Polygraphy's TrtRunner
(trtq.engine.runner.trt_runner, via trtq.runtime.runners.engine_runner), as `trtq compare` runs it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from trtq import _lazy
from trtq.errors import ConfigError
from trtq.onnx_model.large_models import exceeds_protobuf_limit
from trtq.onnx_model.model import external_data_files, load_model
from trtq.runtime.qdq_options import QDQ_SESSION_ENTRIES, ort_optimization_level
from trtq.runtime.session import create_session, load_error, ort_bytes, providers_for

BACKENDS = ("ort-cpu", "ort-cuda", "tensorrt")
Infer = Callable[[Mapping[str, np.ndarray]], Any]


@dataclass(frozen=True)
class Target:
    """One thing to time: `model` (a path) of `kind` fp32/fp16/qdq/engine on `backend` (BACKENDS)."""

    model: str
    kind: str
    backend: str

    @property
    def label(self) -> str:
        return f"{Path(self.model).name} [{self.kind}, {self.backend}]"


def is_engine_path(path: str | Path) -> bool:
    return Path(path).suffix.lower() in (".engine", ".plan", ".trt")


def model_kind(model: onnx.ModelProto) -> str:
    """"qdq" when the model has QuantizeLinear/DequantizeLinear nodes, else "fp16" when its weights are FP16
    (trtq.qdq.fp16.convert_to_fp16), else "fp32"."""
    if any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node):
        return "qdq"
    fp16 = any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer)
    return "fp16" if fp16 else "fp32"


def targets_for(path: str | Path, providers: str = "auto") -> list[Target]:
    """The targets of one model file: an engine on TensorRT, an ONNX model on each usable ORT provider.

    Args:
        providers: "auto" (CPU, plus CUDA where ONNX Runtime has a device), "cpu" or "cuda".

    Raises:
        ModelError: the ONNX model cannot be read.
        MissingDependencyError: "cuda" where ONNX Runtime's CUDA provider has no device.
    """
    if is_engine_path(path):
        return [Target(str(path), "engine", "tensorrt")]
    if providers not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"--provider must be auto, cpu or cuda, got {providers!r}")
    kind = model_kind(load_model(path, load_weights=False))
    found = providers_for(providers)
    backends = (["ort-cuda"] if "CUDAExecutionProvider" in found else []) + \
        (["ort-cpu"] if providers != "cuda" else [])
    return [Target(str(path), kind, b) for b in backends]


@contextlib.contextmanager
def open_target(target: Target, threads: int = 0) -> Iterator[Infer]:
    """Yield `infer(feed)` for `target`, its session or engine context alive until the block ends.

    Args:
        threads: ONNX Runtime intra-op threads (0: ONNX Runtime's default, one per core).

    Raises:
        ModelError: the model or engine cannot be loaded.
        MissingDependencyError: TensorRT or a GPU is missing for an engine.
    """
    if target.backend == "tensorrt":
        from trtq.runtime.runners import engine_runner

        with engine_runner(target.model) as runner:
            yield runner.infer
        return
    model = load_model(target.model)
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if target.backend == "ort-cuda" \
        else ["CPUExecutionProvider"]
    with _session(model, Path(target.model).parent, providers, threads) as session:
        names = [o.name for o in session.get_outputs()]
        yield lambda feed: session.run(names, dict(feed))


@contextlib.contextmanager
def _session(model: onnx.ModelProto, model_dir: Path, providers: list[str], threads: int) -> Iterator[Any]:
    """A session as trtq's checks make it (see the module docstring); models with external data load from files."""
    if external_data_files(model) or exceeds_protobuf_limit(model):
        with create_session(model, model_dir, providers, QDQ_SESSION_ENTRIES) as session:
            yield session
        return
    ort = _lazy.require("onnxruntime")
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = threads
    if ort_optimization_level(model) == "basic":
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    for key, value in QDQ_SESSION_ENTRIES.items():
        options.add_session_config_entry(key, value)
    try:
        session = ort.InferenceSession(ort_bytes(model), options, providers=providers)
    except Exception as exc:  # ONNX Runtime raises its own types for every load failure
        raise load_error(exc) from None
    yield session
