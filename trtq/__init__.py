"""trtq: TensorRT INT8/FP8 deployments from an FP32 ONNX model and real data.

The public API: trtq.build, trtq.calibrate, trtq.quantize, trtq.compare (trtq.pipeline.api),
Config and load_config. `import trtq` needs neither TensorRT nor CUDA; they are imported lazily
by the features that use them, and the four functions load the pipeline on first use.

    import trtq
    outcome = trtq.build("model.onnx", trtq.load_config("ppocr"), data="photos/")
"""

from __future__ import annotations

from typing import Any

from trtq._version import __version__
from trtq.config import Config, load_config
from trtq.errors import TrtqError

__all__ = ["Config", "TrtqError", "__version__", "build", "calibrate", "compare", "load_config", "quantize"]
_API = ("build", "calibrate", "compare", "quantize")


def __getattr__(name: str) -> Any:
    # The API functions import the whole pipeline (onnxruntime, polygraphy): only when used.
    if name in _API:
        from trtq.pipeline import api

        return getattr(api, name)
    raise AttributeError(f"module 'trtq' has no attribute {name!r}")
