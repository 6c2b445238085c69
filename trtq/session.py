"""ONNX Runtime sessions for calibration and comparison.

Models under 2 GiB go to ONNX Runtime as bytes: no temporary files at all.
Larger models (external data) are written, without their weights, into a
temporary directory in which their external data files are linked, so that
nothing is copied and nothing lands in the working directory.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

import onnx

from trtq import _lazy
from trtq.errors import MissingDependencyError, ModelError, first_line
from trtq.large_models import exceeds_protobuf_limit, skeleton
from trtq.model import MAX_IR_VERSION, external_data_files


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
                   config_entries: Mapping[str, str] | None = None) -> Iterator:
    """Yield an onnxruntime.InferenceSession for `model`, cleaning up temporary files after.

    Args:
        model: the model; with external data it may be loaded without weights.
        model_dir: folder of the original model file (where external data lives).
        providers: ONNX Runtime execution providers.
        config_entries: extra session config entries (SessionOptions.add_session_config_entry).

    Raises:
        ModelError: ONNX Runtime rejects the model.
    """
    model.ir_version = min(model.ir_version, MAX_IR_VERSION)
    external = external_data_files(model)
    large = exceeds_protobuf_limit(model)
    if not external and not large:
        yield _new_session(model.SerializeToString(), providers, config_entries)
        return
    with tempfile.TemporaryDirectory(prefix="trtq-") as tmp:
        for name in external:
            _link(Path(model_dir or ".") / name, Path(tmp) / name)
        path = Path(tmp) / "model.onnx"
        # Over 2 GiB: the weights go to a data file next to it, streamed from `model` (not copied).
        onnx.save_model(skeleton(model, Path(tmp) / "trtq-weights.data") if large else model, str(path))
        yield _new_session(str(path), providers, config_entries)


def _new_session(model: bytes | str, providers: list[str], config_entries: Mapping[str, str] | None = None):
    ort = _lazy.require("onnxruntime")
    options = ort.SessionOptions()
    options.log_severity_level = 3  # ORT's warnings about unused initializers are noise here
    for key, value in (config_entries or {}).items():
        options.add_session_config_entry(key, value)
    try:
        return ort.InferenceSession(model, options, providers=providers)
    except Exception as exc:  # ORT raises its own exception types for every load failure
        raise ModelError(f"ONNX Runtime cannot load the model: {first_line(exc)}",
                         hint="check the model with 'trtq inspect' and onnx.checker") from None


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.symlink(src.resolve(), dst)
    except OSError:  # file systems without symlinks
        shutil.copyfile(src, dst)
