"""trtq: TensorRT INT8/FP8 deployments from an FP32 ONNX model and real data.

`import trtq` needs neither TensorRT nor CUDA; they are imported lazily by the
features that use them.
"""

from __future__ import annotations

from trtq._version import __version__
from trtq.config import Config, load_config
from trtq.errors import TrtqError

__all__ = ["Config", "TrtqError", "__version__", "load_config"]
