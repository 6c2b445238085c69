"""Explicit quantization as pure graph transforms: Q/DQ placement, the quantizer, FP16, the Q/DQ linter.

Nothing here runs a model (trtq.runtime does) or measures accuracy (trtq.accuracy does).

    from trtq.qdq import quantize_model, lint_model
    result = quantize_model(model, {"x": 2.64, ...}, QuantizeConfig(precision="int8"))
    findings = lint_model(result.model)
"""

from trtq.qdq.linter import Finding, lint_model
from trtq.qdq.placement import QuantizedNode, SkippedNode
from trtq.qdq.quantizer import QuantizeReport, QuantizeResult, quantize_model, to_fp16_twin

__all__ = [
    "Finding",
    "QuantizeReport",
    "QuantizeResult",
    "QuantizedNode",
    "SkippedNode",
    "lint_model",
    "quantize_model",
    "to_fp16_twin",
]
