"""trtq: TensorRT INT8/FP8 deployments from an FP32 ONNX model and real data.

The public API: trtq.build, trtq.calibrate, trtq.quantize, trtq.compare, trtq.bench, trtq.select_precision
(trtq.pipeline.api),
Config and load_config. `import trtq` needs neither TensorRT nor CUDA; they are imported lazily
by the features that use them. The public names are imported on first use (PEP 562), so
`import trtq` itself is instant and a Ctrl-C while the `trtq` command starts up lands in
trtq._entry's handler, not in a traceback.

    import trtq
    outcome = trtq.build("model.onnx", trtq.load_config("ppocr-det"), data="photos/")
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from trtq._version import __version__

if TYPE_CHECKING:
    from trtq.config import Config, load_config
    from trtq.errors import TrtqError
    from trtq.onnx_model.pruning import PruneSettings
    from trtq.pipeline.api import build, calibrate, compare, optimize, prune, quantize

__all__ = ["Config", "PruneSettings", "TrtqError", "__version__", "bench", "build", "calibrate", "compare",
           "load_config", "optimize", "prune", "quantize", "select_precision"]

# name -> module it comes from; the API functions import the whole pipeline (onnxruntime, polygraphy).
_LAZY = {"Config": "trtq.config", "load_config": "trtq.config", "TrtqError": "trtq.errors",
         "PruneSettings": "trtq.onnx_model.pruning",
         **dict.fromkeys(("bench", "build", "calibrate", "compare", "quantize", "prune", "optimize",
                          "select_precision"),
                         "trtq.pipeline.api")}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'trtq' has no attribute {name!r}")
