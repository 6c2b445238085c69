"""Explicit quantization: Q/DQ placement, the quantizer and the Q/DQ linter.

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
