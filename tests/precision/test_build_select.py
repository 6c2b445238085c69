"""`trtq build --max-accuracy-loss / --target-latency / --bench`: the choice and the timings are in the report."""

from __future__ import annotations

import json

import jsonschema
import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from tests.accuracy_models import image_batches, outlier_classifier
from trtq.cli import main
from trtq.errors import EXIT_GATE_FAILED, EXIT_USAGE
from trtq.report.report import SCHEMA_PATH

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture()
def workdir(tmp_path):
    onnx.save_model(outlier_classifier(), tmp_path / "m.onnx")
    data = tmp_path / "data"
    data.mkdir()
    for i, feed in enumerate(image_batches(0, (3, 8, 8), 8, 6)):
        np.save(data / f"b{i}.npy", feed["x"])
    return tmp_path


def _build(workdir, *extra: str):
    return CliRunner().invoke(main, ["-q", "build", str(workdir / "m.onnx"), "--calib", str(workdir / "data"),
                                     "--batch-size", "8", "--method", "minmax", "--eval-fraction", "0.33", *extra])


def _report(workdir) -> dict:
    data = json.loads((workdir / "m_trtq" / "report.json").read_text())
    jsonschema.Draft202012Validator(json.loads(SCHEMA_PATH.read_text())).validate(data)
    return data


def test_an_accuracy_loss_picks_the_fastest_candidate_that_keeps_it(workdir):
    result = _build(workdir, "--max-accuracy-loss", "sqnr:25", "--max-excluded", "3")
    assert result.exit_code == 0, result.output
    report = _report(workdir)
    selection = report["selection"]
    names = [c["name"] for c in selection["candidates"]]
    assert names[:3] == ["fp32", "fp16", "int8"] and "int8 + 1 layer in fp16" in names
    by_name = {c["name"]: c for c in selection["candidates"]}
    assert not by_name["int8"]["passes_accuracy"] and by_name["fp32"]["sqnr_db"] == "inf"
    chosen = by_name[selection["chosen"]]
    passing = [c for c in selection["candidates"] if c["passes_accuracy"]]
    assert chosen["passes_accuracy"] and chosen["latency_ms"] == min(c["latency_ms"] for c in passing)
    assert selection["chosen"] == "int8 + 1 layer in fp16" and chosen["excluded"] == ["conv2"]
    assert all(c["latency_source"].startswith("estimated: NVIDIA T4") for c in selection["candidates"])
    assert report["gates"]["passed"] and report["gates"]["thresholds"]["min_sqnr"] == 25.0
    assert report["artifacts"]["deployment_model"].endswith("m.qdq.fp16.onnx")
    md = (workdir / "m_trtq" / "report.md").read_text()
    assert "## Precision choice" in md and "| int8 + 1 layer in fp16 |" in md


def test_an_unreachable_latency_target_fails_the_build(workdir):
    result = _build(workdir, "--max-accuracy-loss", "sqnr:25", "--target-latency", "0.00001", "--max-excluded", "2")
    assert result.exit_code == EXIT_GATE_FAILED and "precision choice: no candidate that passes" in result.output
    report = _report(workdir)
    assert not report["selection"]["met"] and report["status"] == "failed"


def test_a_latency_target_alone_and_bench_in_the_report(workdir):
    result = _build(workdir, "--target-latency", "1000", "--latency-device", "a100", "--bench",
                    "--bench-batches", "1,4")
    assert result.exit_code == 0, result.output
    report = _report(workdir)
    assert report["selection"]["chosen"] == "fp32"  # the most accurate, and everything fits 1 s
    rows = report["bench"]["rows"]
    assert {(Path_name(r["model"]), r["batch"]) for r in rows} >= {("m.onnx", 1), ("m.onnx", 4), ("m.qdq.onnx", 1)}
    assert all(r["p99_ms"] >= r["median_ms"] > 0 for r in rows)
    assert "## Latency (--bench)" in (workdir / "m_trtq" / "report.md").read_text()


def Path_name(path: str) -> str:
    return path.rsplit("/", 1)[-1]


def test_bad_selection_options_fail_before_calibrating(workdir):
    for extra in (["--max-accuracy-loss", "top5:0.1"], ["--target-latency", "-1"],
                  ["--max-accuracy-loss", "sqnr:20", "--eval-fraction", "0"]):
        result = _build(workdir, *extra)
        assert result.exit_code == EXIT_USAGE and "Traceback" not in result.output, (extra, result.output)
        assert not (workdir / "m_trtq" / "m.cache").exists()


def test_the_python_api_chooses_without_writing_a_deployment(workdir):
    import trtq

    config = trtq.load_config([], {"max_accuracy_loss": "top1:0.05", "method": "minmax", "batch_size": 8,
                                   "eval_fraction": 0.33, "max_excluded": 2,
                                   "cache": str(workdir / "m.cache")})
    selection = trtq.select_precision(workdir / "m.onnx", config, data=workdir / "data")
    assert selection.gates.min_top1_agreement == pytest.approx(0.95)
    assert selection.choice.accurate_enough and selection.met
    passing = [c for c in selection.candidates if c.accurate_enough]
    assert selection.choice.latency_ms == min(c.latency_ms for c in passing)
    assert not (workdir / "m_trtq").exists() and (workdir / "m.cache").exists()


def test_help_lists_bench():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0 and "bench" in result.output
    build_help = CliRunner().invoke(main, ["build", "--help"]).output
    assert all(flag in build_help for flag in ("--target-latency", "--max-accuracy-loss", "--bench"))
