"""report.json validates against report.schema.json; report.md summarises the run."""

from __future__ import annotations

import json
import time

import pytest

from tests.compare import models
from trtq.accuracy import Gates, check_gates, compare_models
from trtq.config import load_config
from trtq.report import Report, write_report
from trtq.report.report import SCHEMA_PATH, render_summary

jsonschema = pytest.importorskip("jsonschema")


@pytest.fixture(scope="module")
def broken_result():
    fp32 = models.branchy_classifier()
    broken = models.quantized(fp32, models.batches(0, (8,)), shrink={"rb": 0.02})
    return compare_models(fp32, broken, models.batches(1, (4, 4)), per_layer=True, progress=False)


def _validate(data: dict) -> None:
    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.Draft202012Validator(schema).validate(data)


def _full_report(result) -> Report:
    report = Report(command="build")
    report.set_config(load_config(overrides={"min_sqnr": 40.0, "per_layer": True}))
    report.provenance = {"model": "branchy", "samples": result.samples, "ratio": float("inf")}
    with report.stage("calibrate"):
        time.sleep(0.01)
    report.set_comparison(result)
    gates = Gates(min_sqnr=40.0, min_top1_agreement=0.5)
    report.set_gates(gates, check_gates(result, gates))
    report.ranges = {"x": (3.5, 4.0), "rb": (0.05, 2.5)}
    report.skip("engine", "TensorRT is not installed")
    report.warn("calibrated on 8 samples only")
    report.add_artifact("qdq_model", "out/model.qdq.onnx")
    return report


def test_written_report_validates_and_holds_the_metrics(broken_result, tmp_path):
    report = _full_report(broken_result)
    paths = write_report(report, tmp_path)
    assert paths[-2:] == [tmp_path / "report.json", tmp_path / "report.md"]
    data = json.loads((tmp_path / "report.json").read_text())
    _validate(data)
    assert data["status"] == "failed"  # SQNR of prob is far below 40 dB with the clipped layer
    assert data["comparison"]["outputs"]["prob"]["sqnr_db"] == pytest.approx(broken_result.outputs["prob"].sqnr_db)
    assert data["comparison"]["per_layer"][0]["tensor"] == "cc"
    assert data["gates"]["failures"][0]["message"].startswith("output 'prob': SQNR ")
    assert data["stages"][0]["name"] == "calibrate" and data["stages"][0]["seconds"] >= 0.01
    assert data["config"]["check"]["min_sqnr"] == 40.0
    assert data["provenance"]["ratio"] == "inf"
    assert data["skipped"] == [{"step": "engine", "reason": "TensorRT is not installed"}]
    assert data["artifacts"]["report_json"] == str(tmp_path / "report.json")
    assert data["versions"]["polygraphy"] and data["versions"]["onnx"]
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temporary files


def test_markdown_summarises_outputs_gates_layers_and_skips(broken_result, tmp_path):
    write_report(_full_report(broken_result), tmp_path)
    md = (tmp_path / "report.md").read_text()
    assert "status: **failed**" in md
    assert "| `prob` |" in md and "SQNR dB" in md
    assert "**FAILED**" in md and "FAILED: output 'prob': SQNR" in md
    assert f"worst 6 of {len(broken_result.per_layer)}" in md
    layer_rows = [line for line in md.splitlines() if line.startswith("| `") and "Conv" in line]
    assert layer_rows[0].startswith("| `cc` | Conv |")
    assert "engine: TensorRT is not installed" in md
    assert "calibrated on 8 samples only" in md
    assert "| calibrate |" in md


def test_identical_models_write_inf_sqnr_that_validates(tmp_path):
    fp32 = models.branchy_classifier()
    report = Report(command="compare")
    report.set_comparison(compare_models(fp32, fp32, models.batches(2, (2,)), progress=False))
    write_report(report, tmp_path)
    data = json.loads((tmp_path / "report.json").read_text())
    _validate(data)
    assert data["status"] == "unchecked" and data["gates"] is None
    assert data["comparison"]["outputs"]["prob"]["sqnr_db"] == "inf"


def test_schema_rejects_unknown_and_missing_fields(broken_result):
    data = _full_report(broken_result).to_dict()
    with pytest.raises(jsonschema.ValidationError):
        _validate({**data, "surprise": 1})
    del data["comparison"]["outputs"]["prob"]["cosine"]
    with pytest.raises(jsonschema.ValidationError):
        _validate(data)


def test_failed_stage_is_recorded_and_reraised():
    report = Report()
    with pytest.raises(RuntimeError), report.stage("build_engine"):
        raise RuntimeError("boom")
    assert [(s.name, s.status) for s in report.stages] == [("build_engine", "failed")]


def test_terminal_summary_lists_outputs_and_worst_layers(broken_result):
    text = render_summary(broken_result, check_gates(broken_result, Gates(min_sqnr=40.0)))
    lines = text.splitlines()
    assert lines[1].split()[:3] == ["output", "SQNR", "dB"]
    assert lines[2].startswith("prob")
    assert any(line.strip().endswith("Conv               cc") for line in lines)
    assert lines[-1].startswith("gate failed: output 'prob': SQNR")
