"""`trtq quantize/build --precision int4-weights` end to end on CPU: no cache, INT4 model, report, errors."""

from __future__ import annotations

import json

import jsonschema
import numpy as np
import onnx
from click.testing import CliRunner

from tests.qdq.test_int4_weights import three_layers
from trtq.cli import main
from trtq.report.report import SCHEMA_PATH


def _write(tmp_path):
    onnx.save(three_layers(k=256), tmp_path / "m.onnx")
    rng = np.random.default_rng(0)
    mix = rng.standard_normal((16, 256))
    x = (rng.standard_normal((48, 16)) @ mix + 0.1 * rng.standard_normal((48, 256))).astype(np.float32)
    np.save(tmp_path / "calib.npy", x)
    return tmp_path / "m.onnx", tmp_path / "calib.npy"


def test_quantize_int4_needs_no_cache_and_writes_a_block_int4_model(tmp_path):
    model, _ = _write(tmp_path)
    out = tmp_path / "m.int4.onnx"
    result = CliRunner().invoke(main, ["quantize", str(model), "--precision", "int4-weights", "--block-size", "64",
                                       "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "3 MatMul/Gemm weights INT4" in result.output and not (tmp_path / "m.cache").exists()
    q = onnx.load(out)
    sizes = {helper_attr(n, "block_size") for n in q.graph.node if n.op_type == "DequantizeLinear"}
    assert sizes == {64}
    lint = CliRunner().invoke(main, ["lint", str(out), "--strict"])
    assert lint.exit_code == 0, lint.output


def helper_attr(node: onnx.NodeProto, name: str) -> object:
    return next(onnx.helper.get_attribute_value(a) for a in node.attribute if a.name == name)


def test_quantize_int4_bad_block_size_is_one_error_line(tmp_path):
    model, _ = _write(tmp_path)
    result = CliRunner().invoke(main, ["quantize", str(model), "--precision", "int4-weights", "--block-size", "1"])
    assert result.exit_code == 2
    assert result.output.count("error:") == 1 and "use --block-size" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "m.qdq.onnx").exists()


def test_build_int4_gptq_reports_size_and_accuracy(tmp_path):
    model, calib = _write(tmp_path)
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["-q", "build", str(model), "--calib", str(calib), "--precision", "int4-weights",
                                       "--weight-rounding", "learned", "--block-size", "64", "-o", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads((out / "report.json").read_text())
    jsonschema.Draft202012Validator(json.loads(SCHEMA_PATH.read_text())).validate(data)
    assert not list(out.glob("*.cache"))
    int4 = data["accuracy"]["int4_weights"]
    assert int4["rounding"] == "gptq" and int4["block_size"] == 64 and int4["size_reduction"] > 4
    assert all(r["output_sqnr_gptq"] >= r["output_sqnr_nearest"] for r in int4["gptq"]["layers"])
    assert "calibrate" in [s["step"] for s in data["skipped"]]
    metrics = data["comparison"]["outputs"]["relu"]
    assert 15 < metrics["sqnr_db"] < 60  # INT4 weights: close to FP32, not equal to it
    assert "## INT4 weights" in (out / "report.md").read_text()


def test_build_int4_refuses_implicit(tmp_path):
    model, calib = _write(tmp_path)
    result = CliRunner().invoke(main, ["build", str(model), "--calib", str(calib), "--precision", "int4-weights",
                                       "--implicit", "-o", str(tmp_path / "o")])
    assert result.exit_code == 2 and "--implicit does not apply" in result.output
