"""Accuracy-driven fallback: the layer with an outlier-heavy input is excluded first, then the gate passes."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from tests.accuracy_models import image_batches, outlier_classifier
from tests.qdq.helpers import activation_amax, run, sqnr_db
from trtq.accuracy import Gates
from trtq.accuracy.evaluation import Reference
from trtq.accuracy.fallback import DEFAULT_TRIALS, fallback
from trtq.config import QuantizeConfig
from trtq.errors import ConfigError

SHAPE = (3, 8, 8)


@pytest.fixture(scope="module")
def setup():
    model = outlier_classifier()
    amax = activation_amax(model, image_batches(0, SHAPE, 16, 2))
    held_out = image_batches(1, SHAPE, 16, 4)
    return model, amax, held_out, Reference(model, held_out)


def _output_sqnr(model: onnx.ModelProto, candidate: onnx.ModelProto, feeds) -> float:
    ref = np.concatenate([run(model, f)[0] for f in feeds])
    return sqnr_db(ref, np.concatenate([run(candidate, f)[0] for f in feeds]))


def test_outlier_layer_is_excluded_first_and_the_sqnr_gate_then_passes(setup):
    model, amax, held_out, reference = setup
    result = fallback(model, amax, held_out, QuantizeConfig(), Gates(min_sqnr=25.0), max_excluded=3,
                      reference=reference)
    first, last = result.steps[0], result.steps[-1]
    assert first.node is None and not first.passed and first.sqnr_db < 25.0
    assert [node for node, _ in result.excluded] == ["conv2"]
    assert result.passed and last.passed and last.sqnr_db >= 25.0
    assert result.options.exclude_nodes == ["conv2"]
    assert "conv2" not in [q.name for q in result.quantize_result.report.quantized]
    # The returned model is the one measured: its output SQNR, recomputed independently, is the step's.
    assert _output_sqnr(model, result.model, held_out) == pytest.approx(last.sqnr_db, abs=0.01)
    assert result.sensitivity[0].node == "conv2"
    assert result.to_dict()["excluded"] == ["conv2"]
    assert f"{first.sqnr_db:.2f} -> {last.sqnr_db:.2f} dB" in result.summary()


def test_top1_gate_may_need_more_than_one_layer(setup):
    model, amax, held_out, reference = setup
    result = fallback(model, amax, held_out, None, Gates(min_top1_agreement=0.99), max_excluded=4,
                      reference=reference)
    excluded = [node for node, _ in result.excluded]
    assert excluded[0] == "conv2" and result.passed
    agreements = [s.top1_agreement for s in result.steps]
    assert agreements[-1] >= 0.99 and all(a < 0.99 for a in agreements[:-1])


def test_a_passing_model_is_left_alone(setup):
    model, amax, held_out, reference = setup
    result = fallback(model, amax, held_out, QuantizeConfig(), Gates(min_sqnr=5.0), reference=reference)
    assert result.passed and result.excluded == [] and result.sensitivity == ()
    assert len(result.steps) == 1


def test_budget_runs_out_on_an_impossible_gate(setup):
    model, amax, held_out, reference = setup
    calls = []

    def post(candidate: onnx.ModelProto) -> onnx.ModelProto:
        calls.append(candidate)
        return candidate

    result = fallback(model, amax, held_out, QuantizeConfig(exclude_nodes=["gap"]), Gates(min_sqnr=200.0),
                      max_excluded=2, postprocess=post, reference=reference)
    assert not result.passed and len(result.excluded) == 2
    assert result.options.exclude_nodes[0] == "gap" and len(result.options.exclude_nodes) == 3
    assert "gap" not in [node for node, _ in result.excluded]
    # every trial is post-processed: the initial model, then DEFAULT_TRIALS candidates per step
    assert len(result.steps) == 3 and len(calls) == 1 + 2 * DEFAULT_TRIALS
    sqnrs = [s.sqnr_db for s in result.steps]
    assert sqnrs[1] > sqnrs[0] + 10.0  # conv2 out first


def test_bad_settings_are_config_errors(setup):
    model, amax, held_out, reference = setup
    with pytest.raises(ConfigError, match="needs an accuracy gate"):
        fallback(model, amax, held_out, None, Gates(), reference=reference)
    with pytest.raises(ConfigError, match="max-excluded"):
        fallback(model, amax, held_out, None, Gates(min_sqnr=20.0), max_excluded=-1, reference=reference)


def test_each_step_keeps_the_best_of_its_trials(setup):
    model, amax, held_out, reference = setup
    one = fallback(model, amax, held_out, QuantizeConfig(), Gates(min_sqnr=200.0), max_excluded=1,
                   reference=reference, trials=1)
    three = fallback(model, amax, held_out, QuantizeConfig(), Gates(min_sqnr=200.0), max_excluded=1,
                     reference=reference, trials=3)
    # trying more candidates can only find an equal or better first exclusion
    assert three.steps[-1].sqnr_db >= one.steps[-1].sqnr_db
    assert one.excluded[0][0] == three.sensitivity[0].node  # trials=1 follows the ranking
