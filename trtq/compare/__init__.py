"""Accuracy check against ONNX Runtime FP32 (run and compared by Polygraphy), gates and the report.

    from trtq.compare import compare_models, Gates, check_gates, raise_on_failures
    result = compare_models("model.onnx", "model.qdq.onnx", batches, per_layer=True)
    raise_on_failures(check_gates(result, Gates(min_sqnr=20.0)))
"""

from trtq.compare.compare import ComparisonResult, compare_models
from trtq.compare.gates import GateFailure, Gates, check_gates, raise_on_failures
from trtq.compare.labels import labels_from_class_folders, load_labels
from trtq.compare.metrics import LayerMetrics, OutputMetrics, ToleranceCheck
from trtq.compare.report import Report, write_report

__all__ = [
    "ComparisonResult",
    "GateFailure",
    "Gates",
    "LayerMetrics",
    "OutputMetrics",
    "Report",
    "ToleranceCheck",
    "check_gates",
    "compare_models",
    "labels_from_class_folders",
    "load_labels",
    "raise_on_failures",
    "write_report",
]
