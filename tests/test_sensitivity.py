"""Layer sensitivity: the layer reading an outlier-dominated activation ranks first, by both measures."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.accuracy_models import image_batches, outlier_classifier
from tests.qdq.helpers import activation_amax, run, sqnr_db
from trtq.accuracy.evaluation import Reference
from trtq.accuracy.probe import only_layers
from trtq.accuracy.sensitivity import layer_sensitivity, local_sqnr, ranking_table
from trtq.config import QuantizeConfig
from trtq.qdq import quantize_model

SHAPE = (3, 8, 8)


@pytest.fixture(scope="module")
def setup():
    model = outlier_classifier()
    calib = image_batches(0, SHAPE, 16, 2)
    held_out = image_batches(1, SHAPE, 16, 4)
    amax = activation_amax(model, calib)
    return model, amax, held_out, Reference(model, held_out)


def test_outlier_layer_has_the_worst_local_sqnr(setup):
    model, amax, held_out, _ = setup
    local = local_sqnr(quantize_model(model, amax).model, held_out)
    assert set(local) == {"conv1", "conv2", "conv3", "gap", "fc"}
    # r1's scale is set by its outlier channel (50x the others): the other channels get a few INT8 levels.
    assert local["conv2"] < 10.0
    assert min(v for k, v in local.items() if k != "conv2") > 30.0


def test_ranking_measures_the_worst_alone_and_puts_them_first(setup):
    model, amax, held_out, reference = setup
    ranking = layer_sensitivity(model, amax, held_out, measure_top=2, reference=reference)
    assert [s.node for s in ranking[:1]] == ["conv2"]
    assert [s.measured for s in ranking] == [True, True, False, False, False]
    rest = [s.local_sqnr_db for s in ranking[2:]]
    assert rest == sorted(rest)
    assert ranking[0].alone_sqnr_db < ranking[1].alone_sqnr_db
    assert ranking[0].alone_top1_agreement is not None and ranking[0].alone_top1_agreement < 0.95
    table = ranking_table(ranking)
    assert table[0]["rank"] == 1 and table[0]["node"] == "conv2"


def test_alone_metric_is_the_output_error_with_only_that_layer_quantized(setup):
    model, amax, held_out, reference = setup
    ranking = layer_sensitivity(model, amax, held_out, measure_top=None, reference=reference)
    assert all(s.measured for s in ranking)
    qdq = quantize_model(model, amax).model
    by_node = {s.node: s for s in ranking}
    for node in ("conv2", "gap"):
        alone = only_layers(qdq, [node])
        ref = np.concatenate([run(model, f)[0] for f in held_out])
        out = np.concatenate([run(alone, f)[0] for f in held_out])
        assert by_node[node].alone_sqnr_db == pytest.approx(sqnr_db(ref, out), abs=0.01)


def test_nothing_measured_alone_ranks_by_local_sqnr(setup):
    model, amax, held_out, _ = setup
    ranking = layer_sensitivity(model, amax, held_out, QuantizeConfig(exclude_nodes=["conv2"]), measure_top=0)
    assert "conv2" not in [s.node for s in ranking]
    local = [s.local_sqnr_db for s in ranking]
    assert local == sorted(local) and all(math.isfinite(v) for v in local)
    assert not any(s.measured for s in ranking)


def test_by_default_every_layer_is_measured_alone(setup):
    model, amax, held_out, reference = setup
    ranking = layer_sensitivity(model, amax, held_out, reference=reference)
    assert ranking and all(s.measured for s in ranking)
    alone = [s.alone_sqnr_db for s in ranking]
    assert alone == sorted(alone)
