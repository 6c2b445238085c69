"""compare_models with a real TensorRT engine as the candidate (skipped without TensorRT and a GPU)."""

from __future__ import annotations

import pytest

from tests.compare import models
from trtq.accuracy import compare_models
from trtq.onnx_model.model import save_model

pytestmark = [pytest.mark.trt, pytest.mark.gpu]


def test_engine_candidate_is_compared_with_onnxruntime_fp32(tmp_path):
    from trtq.engine import ShapeRange, build_engine

    fp32 = models.branchy_classifier()
    qdq = models.quantized(fp32, models.batches(0, (8,)))
    save_model(qdq, tmp_path / "qdq.onnx")
    shapes = ShapeRange("x", (1, *models.INPUT_SHAPE), (4, *models.INPUT_SHAPE), (8, *models.INPUT_SHAPE))
    build_engine(tmp_path / "qdq.onnx", tmp_path / "model.engine", profiles=[shapes])
    batches = models.batches(1, (4, 4, 2))
    on_ort = compare_models(fp32, qdq, batches, progress=False).outputs["prob"]
    result = compare_models(fp32, tmp_path / "model.engine", batches, per_layer=True, progress=False)
    m = result.outputs["prob"]
    assert (result.candidate_kind, result.samples) == ("engine", 10)
    assert result.per_layer == () and "per-layer comparison skipped" in result.warnings[0]
    # TensorRT's INT8 kernels round differently from ONNX Runtime's, but the error is of the same size
    assert m.sqnr_db > on_ort.sqnr_db - 6
    assert m.top1_agreement >= 0.9
