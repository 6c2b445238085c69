"""`trtq build` with the accuracy mechanisms: --fallback under a gate, --bias-correction, --per-layer ranking.

The model has one layer (conv2) whose input is dominated by a single outlier channel, so INT8
breaks it; the fallback must leave exactly that layer in float and the shipped model must then
pass the gate that the plain build fails.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from tests.accuracy_models import conv_chain, image_batches, outlier_classifier
from tests.qdq.helpers import run, sqnr_db
from trtq.cli import main
from trtq.errors import EXIT_GATE_FAILED, EXIT_USAGE

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _workdir(tmp_path, model: onnx.ModelProto, shape: tuple[int, ...]):
    onnx.save_model(model, tmp_path / "m.onnx")
    data = tmp_path / "data"
    data.mkdir()
    for i, feed in enumerate(image_batches(0, shape, 8, 6)):
        np.save(data / f"b{i}.npy", feed["x"])  # 8 samples per file
    return tmp_path


def _build(workdir, *extra: str):
    return CliRunner().invoke(main, ["-q", "build", str(workdir / "m.onnx"), "--calib", str(workdir / "data"),
                                     "--batch-size", "8", "--method", "minmax", "--eval-fraction", "0.33", *extra])


def _report(workdir) -> dict:
    return json.loads((workdir / "m_trtq" / "report.json").read_text())


@pytest.fixture()
def outlier_dir(tmp_path):
    return _workdir(tmp_path, outlier_classifier(), (3, 8, 8))


def test_fallback_leaves_the_outlier_layer_in_float_and_the_gate_passes(outlier_dir):
    plain = _build(outlier_dir, "--min-sqnr", "25")
    assert plain.exit_code == EXIT_GATE_FAILED, plain.output
    result = _build(outlier_dir, "--min-sqnr", "25", "--fallback", "--max-excluded", "3")
    assert result.exit_code == 0, result.output
    report = _report(outlier_dir)
    fallback = report["accuracy"]["fallback"]
    assert fallback["excluded"] == ["conv2"] and fallback["passed"]
    assert not fallback["steps"][0]["passed"] and fallback["steps"][-1]["passed"]
    assert report["accuracy"]["sensitivity"][0]["node"] == "conv2"
    assert report["status"] == "passed"
    # The shipped model is the one the fallback settled on: conv2 reads a float input.
    shipped = onnx.load(outlier_dir / "m_trtq" / "m.qdq.onnx")
    conv2 = next(n for n in shipped.graph.node if n.name == "conv2")
    producers = {o: n.op_type for n in shipped.graph.node for o in n.output}
    assert producers.get(conv2.input[0]) != "DequantizeLinear"
    assert "## Fallback" in (outlier_dir / "m_trtq" / "report.md").read_text()
    assert any("those numbers are optimistic" in line for line in report["info"])


def test_fallback_without_a_gate_is_a_usage_error_before_any_output(outlier_dir):
    result = _build(outlier_dir, "--fallback")
    assert result.exit_code == EXIT_USAGE
    assert "--fallback needs an accuracy gate" in result.output and "Traceback" not in result.output
    assert not (outlier_dir / "m_trtq" / "m.qdq.onnx").exists()


def test_per_layer_ranks_layers_by_their_effect_alone(outlier_dir):
    result = _build(outlier_dir, "--per-layer")
    assert result.exit_code == 0, result.output
    ranking = _report(outlier_dir)["accuracy"]["sensitivity"]
    assert ranking[0]["node"] == "conv2" and ranking[0]["rank"] == 1
    assert {r["node"] for r in ranking} == {"conv1", "conv2", "conv3", "gap", "fc"}
    assert "## Layer sensitivity" in (outlier_dir / "m_trtq" / "report.md").read_text()


def test_auto_method_counts_are_in_the_report(outlier_dir):
    assert _build(outlier_dir, "--method", "auto").exit_code == 0
    counts = _report(outlier_dir)["provenance"]["auto_method_counts"]
    assert set(counts) <= {"minmax", "entropy", "percentile", "mse"} and sum(counts.values()) >= 5


def test_bias_correction_always_is_applied_to_the_shipped_model(tmp_path):
    workdir = _workdir(tmp_path, conv_chain(), (3, 12, 12))
    assert _build(workdir).exit_code == 0
    plain = onnx.load(workdir / "m_trtq" / "m.qdq.onnx")
    result = _build(workdir, "--bias-correction", "always", "--fp16")
    assert result.exit_code == 0, result.output
    corrected = onnx.load(workdir / "m_trtq" / "m.qdq.onnx")
    bias = _report(workdir)["accuracy"]["bias_correction"]
    assert bias["applied"] and {layer["node"] for layer in bias["layers"]} == {"conv1", "conv2", "conv3"}
    # The per-channel mean output error falls (what bias correction is for).
    held_out = [np.load(path) for path in sorted((workdir / "data").glob("*.npy"))]
    ref = np.concatenate([run(conv_chain(), {"x": x})[0] for x in held_out])

    def mean_error(model: onnx.ModelProto) -> float:
        out = np.concatenate([run(model, {"x": x})[0] for x in held_out])
        return float(np.abs((out - ref).mean(axis=(0, 2, 3))).mean())

    assert mean_error(corrected) < mean_error(plain)
    assert sqnr_db(ref, np.concatenate([run(corrected, {"x": x})[0] for x in held_out])) > 20
    # The TensorRT 11 twin carries the same corrected biases (in FP16).
    twin = onnx.load(workdir / "m_trtq" / "m.qdq.fp16.onnx")
    twin_biases = {i.name for i in twin.graph.initializer if i.data_type == onnx.TensorProto.FLOAT16}
    assert twin_biases and len(twin.graph.node) > len(corrected.graph.node)  # FP32 interface casts added
