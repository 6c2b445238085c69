"""The precision choice picks the cheapest candidate that meets the gate, on constructed candidates."""

from __future__ import annotations

import math

import pytest

from trtq.accuracy.accuracy_loss import parse_accuracy_loss, stricter
from trtq.accuracy.gates import Gates
from trtq.errors import ConfigError
from trtq.pipeline.precision_select import Candidate, Selection, choose
from trtq.report.tables import selection_lines as markdown_lines


def _c(name: str, ms: float, sqnr: float, passes: bool) -> Candidate:
    return Candidate(name, name.split()[0], (), ms, "estimated: test", sqnr, None, () if passes else ("fails",), "test")


CASE = [_c("fp32", 4.0, math.inf, True), _c("fp16", 2.0, 60.0, True), _c("int8", 1.0, 12.0, False),
        _c("int8 + 1 layer in fp16", 1.3, 30.0, True), _c("int8 + 2 layers in fp16", 1.6, 33.0, True)]


def test_the_cheapest_passing_candidate_is_chosen_not_the_cheapest_or_the_most_accurate():
    index, reason, met = choose(CASE, None, has_gate=True)
    assert CASE[index].name == "int8 + 1 layer in fp16" and met
    assert "fastest candidate that passes the accuracy gate" in reason


def test_a_latency_target_excludes_the_slow_ones_and_a_missed_target_is_reported():
    assert CASE[choose(CASE, 2.5, True)[0]].name == "int8 + 1 layer in fp16"
    index, reason, met = choose(CASE, 1.2, True)  # only the failing int8 fits
    assert CASE[index].name == "int8 + 1 layer in fp16" and not met and "no candidate that passes" in reason


def test_a_latency_target_alone_takes_the_most_accurate_that_fits():
    assert CASE[choose(CASE, 2.0, False)[0]].name == "fp16"
    assert CASE[choose(CASE, 5.0, False)[0]].name == "fp32"
    index, _, met = choose(CASE, 0.5, False)
    assert CASE[index].name == "int8" and not met


def test_equal_latency_goes_to_the_more_accurate():
    tied = [_c("a", 1.0, 20.0, True), _c("b", 1.0, 25.0, True)]
    assert choose(tied, None, True)[0] == 1


def test_the_report_lists_every_candidate_and_marks_the_choice():
    index, reason, met = choose(CASE, None, True)
    data = Selection(CASE, index, reason, met, Gates(min_sqnr=25.0), None, 8).to_dict()
    assert [c["name"] for c in data["candidates"]] == [c.name for c in CASE]
    assert data["candidates"][0]["sqnr_db"] == "inf" and data["chosen"] == "int8 + 1 layer in fp16"
    lines = markdown_lines(data)
    assert sum("**yes**" in line for line in lines) == 1 and any("| int8 | 1 |" in line for line in lines)


def test_accuracy_loss_forms_are_gates():
    assert parse_accuracy_loss("top1:0.01") == Gates(min_top1_agreement=0.99)
    assert parse_accuracy_loss("top1:2%, sqnr:25") == Gates(min_top1_agreement=0.98, min_sqnr=25.0)
    assert parse_accuracy_loss("cosine:0.001").min_cosine == pytest.approx(0.999)
    assert parse_accuracy_loss(None) == Gates()
    for bad in ("top1", "top5:0.1", "top1:x", "top1:1.5", "sqnr:1,sqnr:2", "sqnr:inf"):
        with pytest.raises(ConfigError):
            parse_accuracy_loss(bad)
    assert stricter(Gates(min_sqnr=20.0, atol=0.1), Gates(min_sqnr=25.0, min_cosine=0.9, atol=0.05)) == \
        Gates(min_sqnr=25.0, min_cosine=0.9, atol=0.05)


def test_the_engine_step_records_the_chosen_float_precision():
    from trtq.config import Config
    from trtq.pipeline.select_stage import engine_config

    config = Config()
    for chosen, expected in ((1, "fp16"), (0, "fp32"), (3, "int8")):
        selection = Selection(CASE, chosen, "test", True, Gates(), None, 1)
        assert engine_config(config, selection).quantize.precision == expected
    assert engine_config(config, None) is config
