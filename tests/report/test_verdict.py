"""report.md opens with a verdict: what was built, how close to FP32, good enough or not, how to improve it."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest

from tests.compare import models
from trtq.accuracy import Gates, check_gates, compare_models
from trtq.config import load_config
from trtq.report import Report, write_report
from trtq.report.verdict import console_verdict, shown_rel, verdict_lines

CALIB, HELD_OUT = models.batches(0, (8,)), models.batches(1, (8, 8))


def _numpy_sqnr(fp32, candidate) -> float:
    """SQNR of `prob` over the held-out batches, computed here from plain ONNX Runtime outputs."""
    def run(model):
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        return np.concatenate([session.run(["prob"], feed)[0] for feed in HELD_OUT]).astype(np.float64)
    ref, cand = run(fp32), run(candidate)
    return float(10 * np.log10((ref ** 2).sum() / ((ref - cand) ** 2).sum()))


@pytest.fixture(scope="module")
def fp32():
    return models.branchy_classifier()


@pytest.fixture(scope="module")
def broken(fp32):
    """A Q/DQ model with one range clipped to 2 % of its max: far from FP32."""
    candidate = models.quantized(fp32, CALIB, shrink={"rb": 0.02})
    return candidate, compare_models(fp32, candidate, HELD_OUT, progress=False)


@pytest.fixture(scope="module")
def far(fp32):
    """The main branch's range clipped to 5 %: every output moves."""
    candidate = models.quantized(fp32, CALIB, shrink={"ra": 0.05})
    return candidate, compare_models(fp32, candidate, HELD_OUT, progress=False)


@pytest.fixture(scope="module")
def fine(fp32):
    candidate = models.quantized(fp32, CALIB)
    return candidate, compare_models(fp32, candidate, HELD_OUT, progress=False)


def _report(tmp_path, result, gates: Gates | None, **overrides) -> tuple[str, dict]:
    report = Report(command="build")
    report.set_config(load_config(overrides={"calib": "photos/", **overrides}))
    report.provenance = {"model": "branchy.onnx"}
    report.add_artifact("calibration_cache", "out/branchy.cache")
    report.add_artifact("qdq_model", "out/branchy.qdq.onnx")
    report.skip("engine", "TensorRT is not installed; the Q/DQ model is checked on ONNX Runtime CPU instead")
    report.set_comparison(result)
    if gates is not None:
        report.set_gates(gates, check_gates(result, gates))
    write_report(report, tmp_path)
    md = (tmp_path / "report.md").read_text()
    return md, json.loads((tmp_path / "report.json").read_text())


def _verdict(md: str) -> str:
    """The verdict section: from its title to the next section."""
    return md.split("## Verdict\n", 1)[1].split("\n## ", 1)[0]


def test_gate_passed(fp32, fine, tmp_path):
    candidate, result = fine
    sqnr = _numpy_sqnr(fp32, candidate)
    assert result.outputs["prob"].sqnr_db == pytest.approx(sqnr, abs=0.01)
    gate = np.floor(sqnr) - 1
    md, _ = _report(tmp_path, result, Gates(min_sqnr=gate), min_sqnr=gate)
    verdict = _verdict(md)
    assert md.index("## Verdict") < md.index("## Produced")  # it opens the report
    assert "**Built:** INT8 Q/DQ model `out/branchy.qdq.onnx` and TensorRT calibration cache" in verdict
    assert "no engine (TensorRT is not installed)" in verdict
    assert f"SQNR {sqnr:.2f} dB" in verdict  # two decimals, the value numpy gives
    assert f"error RMS {100 * 10 ** (-sqnr / 20):.2g} % of the output's" in verdict
    assert f"yes, by the gates (`--min-sqnr {gate:g}`)" in verdict
    assert "status: **passed**: every accuracy gate holds (exit code 0)" in verdict
    assert "To improve it" not in verdict


def test_gate_failed_suggests_the_fallback_with_that_gate(fp32, broken, tmp_path):
    candidate, result = broken
    sqnr = _numpy_sqnr(fp32, candidate)
    assert sqnr < 40
    md, _ = _report(tmp_path, result, Gates(min_sqnr=40.0), min_sqnr=40.0)
    verdict = _verdict(md)
    assert f"no, a gate failed: output 'prob': SQNR {sqnr:.2f}" in verdict
    assert "status: **failed**: an accuracy gate failed (exit code 1)" in verdict
    assert ("`trtq build branchy.onnx --calib photos/ ... --min-sqnr 40 --activation-ranges layer-output --fallback "
            "--bias-correction auto`" in verdict)


def test_failed_fallback_gets_more_room_and_keeps_the_bias_correction(broken, tmp_path):
    _, result = broken
    report = Report(command="build")
    report.set_config(load_config(overrides={"calib": "photos/", "min_sqnr": 40.0, "fallback": True,
                                             "max_excluded": 4, "bias_correction": "auto"}))
    report.set_comparison(result)
    report.set_gates(Gates(min_sqnr=40.0), check_gates(result, Gates(min_sqnr=40.0)))
    report.accuracy = {"fallback": {"excluded": ["a", "b", "c", "d"], "passed": False, "steps": []}}
    verdict = "\n".join(verdict_lines(report.to_dict()))
    assert "4 layer(s) left in float by the fallback" in verdict
    assert "--min-sqnr 40 --activation-ranges layer-output --fallback --max-excluded 8`" in verdict
    assert "--bias-correction" not in verdict


def test_no_gate_judges_by_the_rules_of_thumb(fp32, far, fine, tmp_path):
    bad_sqnr = _numpy_sqnr(fp32, far[0])
    good_sqnr = _numpy_sqnr(fp32, fine[0])
    assert bad_sqnr < 10 and good_sqnr >= 30  # the bands: below 10 dB far from FP32, from 30 very close
    md, data = _report(tmp_path / "bad", far[1], None)
    verdict = _verdict(md)
    assert data["status"] == "unchecked"
    assert "status: **unchecked**: no accuracy gate was set" in verdict and "exit code 0" in verdict
    assert f"far from FP32: output `prob`, SQNR {bad_sqnr:.2f} dB" in verdict
    assert "probably not" in verdict
    assert "--min-sqnr 20 --activation-ranges layer-output --fallback --bias-correction auto`" in verdict

    assert console_verdict(data).splitlines() == [
        f"verdict: far from FP32 (SQNR {bad_sqnr:.2f} dB); no gate set, probably not good enough",
        "  to improve it: trtq build branchy.onnx --calib photos/ ... --min-sqnr 20 --activation-ranges layer-output "
        "--fallback --bias-correction auto"]

    md, data = _report(tmp_path / "fine", fine[1], None)
    assert console_verdict(data) == f"verdict: very close to FP32 (SQNR {good_sqnr:.2f} dB); no gate set, probably " \
                                    "good enough"
    verdict = _verdict(md)
    assert f"very close to FP32: output `prob`, SQNR {good_sqnr:.2f} dB" in verdict
    assert "probably yes" in verdict and "To improve it" not in verdict
    assert "To keep it so:** add a gate" in verdict


def test_legend_defines_each_metric_once_and_huge_relative_errors_are_flagged(far, tmp_path):
    md, data = _report(tmp_path, far[1], None)
    assert data["comparison"]["outputs"]["prob"]["max_rel_error"] > 1e6  # softmax outputs near 0 in FP32
    row = next(line for line in md.splitlines() if line.startswith("| `prob` |"))
    assert "| huge* |" in row
    for term in ("**SQNR**", "**cosine**", "**max / p99 / mean abs**", "**max / p99 rel**", "**top-1 agreement**",
                 "**status**"):
        assert md.count(term) == 1
    assert shown_rel(4.3e15) == "huge*" and shown_rel(0.25) == "0.25" and shown_rel(None) == "–"


def test_without_held_out_samples_the_verdict_says_how_to_measure(tmp_path):
    report = Report(command="build")
    report.set_config(load_config())
    report.add_artifact("qdq_model", "out/m.qdq.onnx")
    verdict = "\n".join(verdict_lines(report.to_dict()))
    assert "not measured" in verdict and "trtq compare" in verdict and "**Status: unchecked**" in verdict


def test_ranges_already_rechosen_are_not_suggested_again(broken, tmp_path):
    _, result = broken
    report = Report(command="build")
    report.set_config(load_config(overrides={"calib": "photos/", "min_sqnr": 40.0,
                                             "activation_ranges": "layer-output"}))
    report.set_comparison(result)
    report.set_gates(Gates(min_sqnr=40.0), check_gates(result, Gates(min_sqnr=40.0)))
    verdict = "\n".join(verdict_lines(report.to_dict()))
    assert "--min-sqnr 40 --fallback --bias-correction auto`" in verdict
    assert "--activation-ranges" not in verdict


def test_token_embeddings_are_judged_by_their_pooled_cosine():
    from trtq.report.verdict import CLOSE, OFF, judgements

    embedding = {"sqnr_db": 14.9, "cosine": 0.97, "pooled_cosine_mean": 0.989, "pooled_cosine_min": 0.97}
    (only,) = judgements({"last_hidden_state": embedding})
    assert (only.metric, only.rating) == ("pooled_cosine_mean", CLOSE)
    plain = judgements({"features": {"sqnr_db": 14.9, "cosine": 0.97}})  # no mask: SQNR judges
    assert [(j.metric, j.rating) for j in plain] == [("sqnr_db", OFF)]
