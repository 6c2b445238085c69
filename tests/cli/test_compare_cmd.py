"""`trtq compare REF CAND --data DATA`: a table per output, exit 1 on a failed gate, 4 on bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from tests.compare import models
from tests.qdq.helpers import session
from trtq.cli import main
from trtq.onnx_model.model import save_model


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    """FP32 model, a sound Q/DQ model, one with a clipped input range, and an eval .npz of 12 samples."""
    folder = tmp_path_factory.mktemp("compare_cli")
    fp32 = models.branchy_classifier()
    calib = models.batches(0, (8,))
    save_model(fp32, folder / "fp32.onnx")
    save_model(models.quantized(fp32, calib), folder / "qdq.onnx")
    save_model(models.quantized(fp32, calib, shrink={"x": 0.05}), folder / "broken.onnx")
    x = models.batches(1, (12,))[0]["x"]
    np.savez(folder / "eval.npz", x=x)
    return folder, x


def _compare(*args: str):
    return CliRunner().invoke(main, ["-q", "compare", *args])


def _probs(path, x: np.ndarray) -> np.ndarray:
    import onnx

    return session(onnx.load(str(path))).run(None, {"x": x})[0]


def test_table_per_output_and_exit_0(case):
    folder, _ = case
    result = _compare(str(folder / "fp32.onnx"), str(folder / "qdq.onnx"), "--data", str(folder / "eval.npz"),
                      "--per-layer", "--min-sqnr", "10")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert "12 samples, 2 batches" in lines[0]  # default batch size 8: 8 + 4
    assert lines[1].split()[:3] == ["output", "SQNR", "dB"]
    assert lines[2].startswith("prob ")
    assert any("worst layers" in line for line in lines)


def test_failed_top1_gate_exits_1_naming_output_metric_value_and_threshold(case):
    folder, x = case
    ref, cand = _probs(folder / "fp32.onnx", x), _probs(folder / "broken.onnx", x)
    agreement = float(np.mean(ref.argmax(1) == cand.argmax(1)))
    assert agreement < 0.99
    result = _compare(str(folder / "fp32.onnx"), str(folder / "broken.onnx"), "--data", str(folder / "eval.npz"),
                      "--min-top1-agreement", "0.99", "--batch-size", "5")
    assert result.exit_code == 1, result.output
    assert f"error: output 'prob': top-1 agreement {agreement:.4g} < 0.99" in result.stderr
    assert "12 samples, 3 batches" in result.stdout


def test_json_output_and_report_folder(case, tmp_path):
    folder, x = case
    out = tmp_path / "report"
    result = _compare(str(folder / "fp32.onnx"), str(folder / "qdq.onnx"), "--data", str(folder / "eval.npz"),
                      "--json", "--min-cosine", "0.5", "--atol", "10", "-o", str(out))
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    ref, cand = _probs(folder / "fp32.onnx", x).astype(np.float64), _probs(folder / "qdq.onnx", x).astype(np.float64)
    expected = 10 * np.log10(np.sum(ref**2) / np.sum((ref - cand) ** 2))
    assert data["outputs"]["prob"]["sqnr_db"] == pytest.approx(expected, rel=1e-5)
    assert data["outputs"]["prob"]["tolerance"]["passed"] is True
    assert data["gates"] == {"thresholds": {"min_top1_agreement": None, "min_sqnr": None, "min_cosine": 0.5,
                                           "atol": 10.0, "rtol": None}, "passed": True, "failures": []}
    report = json.loads((out / "report.json").read_text())
    assert report["command"] == "compare" and report["status"] == "passed"
    assert report["config"]["check"]["min_cosine"] == 0.5
    assert (out / "report.md").is_file()


def test_labels_file_gives_accuracy(case, tmp_path):
    folder, x = case
    ref = _probs(folder / "fp32.onnx", x)
    labels = tmp_path / "labels.txt"
    labels.write_text("".join(f"eval.npz:{i} {c}\n" for i, c in enumerate(ref.argmax(1))))
    result = _compare(str(folder / "fp32.onnx"), str(folder / "qdq.onnx"), "--data", str(folder / "eval.npz"),
                      "--labels", str(labels), "--json")
    assert result.exit_code == 0, result.output
    prob = json.loads(result.stdout)["outputs"]["prob"]
    assert (prob["labeled_samples"], prob["reference_top1_accuracy"]) == (12, 1.0)


def test_missing_model_exits_4(case):
    folder, _ = case
    result = _compare(str(folder / "nope.onnx"), str(folder / "qdq.onnx"), "--data", str(folder / "eval.npz"))
    assert result.exit_code == 4
    assert "nope.onnx does not exist" in result.stderr


def test_bad_data_exits_4(case, tmp_path):
    folder, _ = case
    np.savez(tmp_path / "wrong.npz", image=np.zeros((2, 3, 8, 8), np.float32))
    result = _compare(str(folder / "fp32.onnx"), str(folder / "qdq.onnx"), "--data", str(tmp_path / "wrong.npz"))
    assert result.exit_code == 4
    assert "'image' that matches no model input" in result.stderr
    np.savez(tmp_path / "shape.npz", x=np.zeros((2, 8, 8, 3), np.float32))
    result = _compare(str(folder / "fp32.onnx"), str(folder / "qdq.onnx"), "--data", str(tmp_path / "shape.npz"))
    assert result.exit_code == 4
    assert "input 'x' expects Nx3x8x8 (float32), sample shape.npz:0 has 8x8x3" in result.stderr


def test_print_config_shows_the_gates():
    result = _compare("a.onnx", "b.onnx", "--data", "d", "--min-sqnr", "21", "--print-config")
    assert result.exit_code == 0, result.output
    assert "min_sqnr: 21.0" in result.stdout


def test_image_folder_is_read_with_the_preset_preprocessing(ocr_classifier, photo_dir, tmp_path):
    """`--data` takes an image folder; the same photos through both models: the FP32 model agrees with itself."""
    result = _compare(str(ocr_classifier), str(ocr_classifier), "--data", str(photo_dir), "-c", "ppocr",
                      "--height", "48", "--width", "192", "--batch-size", "5", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["samples"] == len(list(photo_dir.iterdir()))
    (metrics,) = data["outputs"].values()
    assert metrics["max_abs_error"] == 0.0 and metrics["top1_agreement"] == 1.0


def test_per_layer_names_layers_as_the_fallback_does(case, tmp_path):
    # Fallback, sensitivity and --exclude-nodes name nodes (conv_b); the per-layer entries measure
    # their output tensors (cb): console, report.md and report.json name both, the layer first.
    folder, _ = case
    out = tmp_path / "report"
    args = [str(folder / "fp32.onnx"), str(folder / "broken.onnx"), "--data", str(folder / "eval.npz"), "--per-layer"]
    result = _compare(*args, "-o", str(out))
    assert result.exit_code == 0, result.output
    rows = result.stdout.split("worst layers", 1)[1].splitlines()
    assert rows[0].endswith("SQNR, op, layer, output")
    assert any(row.split()[1:] == ["Conv", "conv_b", "->", "cb"] for row in rows[1:]), rows
    assert any(row.split()[1:] == ["Gemm", "fc", "->", "logits"] for row in rows[1:]), rows
    layers = json.loads((out / "report.json").read_text())["comparison"]["per_layer"]
    assert {la["tensor"]: la["node"] for la in layers} == {"ca": "conv_a", "cb": "conv_b", "cc": "conv_c",
                                                             "sum": "add", "gap": "gap", "logits": "fc"}
    md = (out / "report.md").read_text()
    assert "| layer | op | output | layer SQNR dB | cosine |" in md and "| `conv_b` | Conv | `cb` |" in md
    assert "**layer**: a node of the FP32 model" in md
    as_json = json.loads(_compare(*args, "--json").stdout)
    assert {la["node"] for la in as_json["per_layer"]} == {"conv_a", "conv_b", "conv_c", "add", "gap", "fc"}
