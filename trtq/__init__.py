"""trtq: TensorRT INT8/FP8 deployments from an FP32 ONNX model and real data.

`import trtq` needs neither TensorRT nor CUDA; they are imported lazily by the
features that use them. The public names below are imported on first use (PEP 562),
so `import trtq` itself is instant and a Ctrl-C while the `trtq` command starts up
lands in trtq._entry's handler, not in a traceback.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from trtq._version import __version__

if TYPE_CHECKING:
    from trtq.config import Config, load_config
    from trtq.errors import TrtqError

__all__ = ["Config", "TrtqError", "__version__", "load_config"]

_LAZY = {"Config": "trtq.config", "load_config": "trtq.config", "TrtqError": "trtq.errors"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'trtq' has no attribute {name!r}")
