"""Gates turn metrics into failures whose messages name output, metric, value and threshold."""

from __future__ import annotations

import math

import pytest

from trtq.accuracy.compare import ComparisonResult
from trtq.accuracy.gates import Gates, check_gates, raise_on_failures
from trtq.accuracy.metrics import OutputMetrics, ToleranceCheck
from trtq.config import CheckConfig
from trtq.errors import EXIT_GATE_FAILED, ConfigError, GateFailed


def _metrics(name: str, sqnr: float = 30.0, cosine: float = 0.999, top1: float | None = None,
             tolerance: ToleranceCheck | None = None, nonfinite: int = 0) -> OutputMetrics:
    return OutputMetrics(name=name, shape=(4, 10), samples=100, elements=1000, nonfinite=nonfinite,
                         max_abs_error=0.1, mean_abs_error=0.01, p99_abs_error=0.05, max_rel_error=0.2,
                         mean_rel_error=0.02, p99_rel_error=0.1, cosine=cosine, sqnr_db=sqnr, top1_agreement=top1,
                         tolerance=tolerance)


def _result(*outputs: OutputMetrics) -> ComparisonResult:
    return ComparisonResult("ref.onnx", "cand.onnx", "onnx", 100, 25, 1.0, {m.name: m for m in outputs})


def test_no_gate_set_means_no_failure_even_for_bad_metrics():
    assert check_gates(_result(_metrics("prob", sqnr=-5.0, cosine=0.1, top1=0.0)), Gates()) == []
    assert not Gates().any


def test_top1_gate_message():
    failures = check_gates(_result(_metrics("prob", top1=0.962)), Gates(min_top1_agreement=0.99))
    assert [f.message for f in failures] == ["output 'prob': top-1 agreement 0.962 < 0.99"]
    assert (failures[0].output, failures[0].metric, failures[0].value, failures[0].threshold) == (
        "prob", "top1_agreement", 0.962, 0.99)


def test_sqnr_and_cosine_gates_check_every_output():
    result = _result(_metrics("boxes", sqnr=18.25, cosine=0.98123), _metrics("scores", sqnr=35.0, cosine=0.9999))
    failures = check_gates(result, Gates(min_sqnr=20.0, min_cosine=0.99))
    assert [f.message for f in failures] == [
        "output 'boxes': SQNR 18.25 dB < 20 dB",
        "output 'boxes': cosine similarity 0.9812 < 0.99",
    ]


def test_a_threshold_met_exactly_passes():
    gates = Gates(min_sqnr=20.0, min_top1_agreement=0.99)
    assert check_gates(_result(_metrics("y", sqnr=20.0, top1=0.99)), gates) == []


def test_top1_gate_without_a_classifier_output_fails_instead_of_passing_silently():
    failures = check_gates(_result(_metrics("features")), Gates(min_top1_agreement=0.99))
    assert len(failures) == 1
    assert failures[0].output is None and "no output is classifier-like" in failures[0].message


def test_tolerance_gate_uses_polygraphys_verdict():
    check = ToleranceCheck(atol=0.01, rtol=0.0, batches=8, failed_batches=3, max_abs_error=0.052, max_rel_error=0.3)
    failures = check_gates(_result(_metrics("y", tolerance=check)), Gates(atol=0.01))
    assert [f.message for f in failures] == [
        "output 'y': atol 0.01 exceeded in 3 of 8 batches (max abs error 0.052, max rel error 0.3)"]
    passing = ToleranceCheck(atol=0.01, rtol=0.0, batches=8, failed_batches=0, max_abs_error=0.009, max_rel_error=0.3)
    assert check_gates(_result(_metrics("y", tolerance=passing)), Gates(atol=0.01)) == []


def test_tolerance_gate_refuses_a_result_computed_with_other_tolerances():
    check = ToleranceCheck(atol=0.1, rtol=0.0, batches=1, failed_batches=0, max_abs_error=0.0, max_rel_error=0.0)
    with pytest.raises(ConfigError, match="atol/rtol gate"):
        check_gates(_result(_metrics("y", tolerance=check)), Gates(atol=0.01))
    with pytest.raises(ConfigError, match="atol/rtol gate"):
        check_gates(_result(_metrics("y")), Gates(rtol=0.01))


def test_nonfinite_mismatches_fail_when_any_gate_is_set():
    failures = check_gates(_result(_metrics("y", nonfinite=12)), Gates(min_cosine=0.5))
    assert [f.message for f in failures] == ["output 'y': 12 NaN/inf values differ from the reference"]


def test_infinite_sqnr_passes_and_formats():
    assert check_gates(_result(_metrics("y", sqnr=math.inf)), Gates(min_sqnr=100.0)) == []
    failures = check_gates(_result(_metrics("y", sqnr=-math.inf)), Gates(min_sqnr=0.0))
    assert failures[0].message == "output 'y': SQNR -inf dB < 0 dB"


def test_raise_on_failures_gives_the_first_failure_and_the_count():
    raise_on_failures([])  # nothing to raise
    failures = check_gates(_result(_metrics("a", sqnr=10.0), _metrics("b", sqnr=12.0, top1=0.5)),
                           Gates(min_sqnr=20.0, min_top1_agreement=0.9))
    with pytest.raises(GateFailed) as info:
        raise_on_failures(failures)
    assert info.value.exit_code == EXIT_GATE_FAILED == 1
    assert info.value.message == "output 'a': SQNR 10 dB < 20 dB (and 2 more failed gates)"


def test_gates_from_check_config():
    gates = Gates.from_config(CheckConfig(min_top1_agreement=0.99, min_sqnr=25.0, atol=0.5))
    assert gates == Gates(min_top1_agreement=0.99, min_sqnr=25.0, min_cosine=None, atol=0.5, rtol=None)
    assert gates.any
