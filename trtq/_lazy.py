"""Lazy imports for heavy or optional packages (TensorRT, CUDA, PyAV, ...).

`import trtq` must work on a machine with none of them; a missing package is
reported only when a feature needs it, as a MissingDependencyError that says
which extra to install.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from trtq.errors import MissingDependencyError

# module name -> (what it is for, how to install it)
_INSTALL_HINTS = {
    "tensorrt": ("building TensorRT engines", "pip install 'trtq[tensorrt]'"),
    "cuda": ("device buffers for TensorRT", "pip install 'trtq[tensorrt]'"),
    "cuda.bindings": ("device buffers for TensorRT", "pip install 'trtq[tensorrt]'"),
    "av": ("reading video files", "pip install 'trtq[video]'"),
    "ray": ("--ray (calibration and the accuracy search on a Ray cluster)", "pip install 'trtq[ray]'"),
    "onnxruntime": ("running ONNX models", "pip install onnxruntime-gpu (or onnxruntime)"),
    "onnxslim": ("graph optimization (trtq optimize, --optimize)", "pip install 'trtq[optimize]'"),
}


def is_available(name: str) -> bool:
    """True if `name` can be imported, without importing it."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def require(name: str) -> ModuleType:
    """Import `name` or raise a MissingDependencyError saying how to get it."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        purpose, install = _INSTALL_HINTS.get(name.split(".")[0], ("this feature", f"pip install {name}"))
        raise MissingDependencyError(
            f"{name} is needed for {purpose} but cannot be imported ({exc})", hint=install
        ) from exc
