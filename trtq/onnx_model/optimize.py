"""Graph pre-optimization of an FP32 model with onnxslim: shape inference, constant folding, BatchNorm
folding into Conv, removal of Identity and Dropout nodes, dead-node elimination.

Why onnxslim (`trtq[optimize]`), of the three candidates:
- onnxslim (pure Python over onnx) writes only default-domain ONNX ops and keeps the model's opset
  imports: what TensorRT's ONNX parser reads. Two runs give byte-identical files (checked on the
  PP-OCRv4 detector and in tests/test_optimize.py), so the cache fingerprint of the optimized model is
  stable and a cache made from it is reused.
- ONNX Runtime's offline basic-level optimization (SessionOptions.optimized_model_filepath) does the
  same foldings, but its file imports every domain ONNX Runtime knows (com.microsoft, nchwc, aten ...)
  and is tied to the ONNX Runtime version that wrote it; its own docs limit offline use to that runtime.
- onnxsim folds constants by running ONNX Runtime from C++ and needs a native wheel for each Python;
  onnxslim does the same passes in Python.

The optimized model's outputs are checked against the original's on real data by the caller
(trtq.pipeline.optimize), since folding reorders float arithmetic.
"""

from __future__ import annotations

import collections
import logging
from dataclasses import dataclass
from typing import Any

import onnx

from trtq._lazy import require

log = logging.getLogger(__name__)

# The op types whose disappearance the summary names (what the optimization is for).
_TRACKED = ("BatchNormalization", "Identity", "Dropout", "Constant", "Shape", "Gather", "Unsqueeze", "Concat")


@dataclass(frozen=True)
class OptimizeResult:
    """The optimized model and the op counts before and after."""

    model: onnx.ModelProto
    nodes_before: int
    nodes_after: int
    ops_before: dict[str, int]
    ops_after: dict[str, int]

    def summary(self) -> str:
        gone = [f"{op} {self.ops_before[op]}->{self.ops_after.get(op, 0)}" for op in _TRACKED
                if self.ops_before.get(op, 0) != self.ops_after.get(op, 0)]
        return (f"optimized (onnxslim): {self.nodes_before} -> {self.nodes_after} nodes"
                + (f" ({', '.join(gone)})" if gone else ""))

    def to_dict(self) -> dict[str, Any]:
        return {"library": "onnxslim", "nodes_before": self.nodes_before, "nodes_after": self.nodes_after,
                "ops_before": self.ops_before, "ops_after": self.ops_after}


def op_counts(model: onnx.ModelProto) -> dict[str, int]:
    return dict(sorted(collections.Counter(n.op_type for n in model.graph.node).items()))


def optimize_graph(model: onnx.ModelProto) -> OptimizeResult:
    """onnxslim's optimization of a copy of `model` (`model` is not changed); opset and IR version kept.

    Raises:
        MissingDependencyError: onnxslim is not installed (pip install 'trtq[optimize]').
    """
    onnxslim = require("onnxslim")
    work = onnx.ModelProto()
    work.CopyFrom(model)
    logging.getLogger("onnxslim").setLevel(logging.WARNING)
    optimized = onnxslim.slim(work)
    optimized.ir_version = model.ir_version  # onnxslim may write its onnx's newest; ONNX Runtime reads <= 10/13
    return OptimizeResult(optimized, len(model.graph.node), len(optimized.graph.node), op_counts(model),
                          op_counts(optimized))
