"""trtq.accuracy: how close a quantized model stays to FP32, and what to do about it.

Reference outputs and repeated measurements (evaluation), the metrics (SQNR, cosine, errors,
top-k agreement), the gates, the comparison of two models through Polygraphy (compare, feeds,
layers, labels), per-layer sensitivity, the fallback that leaves layers in float, bias
correction and the per-layer probe. It runs models through trtq.runtime and builds Q/DQ
models with trtq.qdq; it never reads the whole Config (trtq.pipeline does) and writes no report
(trtq.report does).

    from trtq.accuracy import compare_models, Gates, check_gates, raise_on_failures
    result = compare_models("model.onnx", "model.qdq.onnx", batches, per_layer=True)
    raise_on_failures(check_gates(result, Gates(min_sqnr=20.0)))
"""

from trtq.accuracy.compare import ComparisonResult, compare_models
from trtq.accuracy.gates import GateFailure, Gates, check_gates, raise_on_failures
from trtq.accuracy.labels import labels_from_class_folders, load_labels
from trtq.accuracy.metrics import LayerMetrics, OutputMetrics, ToleranceCheck

__all__ = [
    "ComparisonResult",
    "GateFailure",
    "Gates",
    "LayerMetrics",
    "OutputMetrics",
    "ToleranceCheck",
    "check_gates",
    "compare_models",
    "labels_from_class_folders",
    "load_labels",
    "raise_on_failures",
]
