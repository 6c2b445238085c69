"""Repeated measurements against cached FP32 outputs agree with trtq.accuracy.compare_models."""

from __future__ import annotations

import numpy as np
import pytest

from tests.compare.models import batches, branchy_classifier, quantized
from trtq.accuracy import Gates, check_gates, compare_models
from trtq.accuracy.evaluation import Reference, limit_samples, replayable, run_batches, worst_sqnr, worst_top1
from trtq.errors import ConfigError, DataError, ModelError


@pytest.fixture(scope="module")
def models():
    model = branchy_classifier()
    return model, quantized(model, batches(0, (16, 16)), shrink={"rb": 0.3})


def test_measure_matches_compare_models(models):
    model, qdq = models
    feeds = batches(1, (8, 8, 5))
    ours = Reference(model, feeds).measure(qdq, atol=0.02, rtol=0.1)  # fails 1 of 3 batches
    theirs = compare_models(model, qdq, feeds, atol=0.02, rtol=0.1, progress=False)
    assert (ours.samples, ours.batches) == (theirs.samples, theirs.batches) == (21, 3)
    a, b = ours.outputs["prob"], theirs.outputs["prob"]
    for name in ("sqnr_db", "cosine", "max_abs_error", "mean_abs_error", "top1_agreement", "max_rel_error"):
        assert getattr(a, name) == pytest.approx(getattr(b, name), rel=1e-6), name
    assert a.tolerance is not None and b.tolerance is not None
    failed = (a.tolerance.batches, a.tolerance.failed_batches)
    assert failed == (b.tolerance.batches, b.tolerance.failed_batches) == (3, 1)
    assert a.tolerance.max_abs_error == pytest.approx(b.tolerance.max_abs_error, rel=1e-6)
    assert a.tolerance.max_rel_error == pytest.approx(b.tolerance.max_rel_error, rel=1e-6)  # Polygraphy: float32
    gates = Gates(min_sqnr=a.sqnr_db + 1.0, atol=0.02, rtol=0.1)
    assert [f.metric for f in check_gates(ours, gates)] == [f.metric for f in check_gates(theirs, gates)]
    assert worst_sqnr(ours) == a.sqnr_db and worst_top1(ours) == a.top1_agreement


def test_uncached_reference_gives_the_same_result(models):
    model, qdq = models
    feeds = batches(2, (8, 8))
    cached = Reference(model, feeds).measure(qdq)
    uncached = Reference(model, feeds, max_cached_bytes=0)
    assert uncached._cache is None
    assert uncached.measure(qdq).outputs["prob"].sqnr_db == cached.outputs["prob"].sqnr_db


def test_batches_can_be_replayed_from_lists_generators_and_callables():
    feeds = batches(3, (2, 3))
    once = replayable(iter(feeds))
    assert [f["x"].shape[0] for f in once()] == [2, 3] == [f["x"].shape[0] for f in once()]
    calls = []
    factory = replayable(lambda: calls.append(1) or iter(feeds))
    list(factory()), list(factory())
    assert len(calls) == 2
    cut = limit_samples(feeds, 4)
    assert [f["x"].shape[0] for f in cut()] == [2, 2]
    np.testing.assert_array_equal(list(cut())[1]["x"], feeds[1]["x"][:2])
    with pytest.raises(ConfigError, match="max_samples"):
        limit_samples(feeds, 0)


def test_bad_data_and_models_are_clear_errors(models):
    model, qdq = models
    with pytest.raises(DataError, match="no data"):
        Reference(model, [])
    with pytest.raises(DataError, match="batch 0 has no array for model input 'x'"):
        list(run_batches(model, [{"y": np.zeros((1, 3, 8, 8), np.float32)}]))
    reference = Reference(model, batches(4, (2,)))
    renamed = qdq.__deepcopy__()
    renamed.graph.output[0].name = "other"
    renamed.graph.node[-1].output[0] = "other"
    with pytest.raises(ModelError, match="no output named 'prob'"):
        reference.measure(renamed)
