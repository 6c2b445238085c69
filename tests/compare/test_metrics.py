"""Streaming metrics equal direct numpy computations, whatever the chunking."""

from __future__ import annotations

import math

import numpy as np
import pytest

from trtq.accuracy.metrics import (
    REL_EPSILON,
    ClassAgreement,
    ErrorSums,
    LogHistogram,
    OutputAccumulator,
    class_scores,
    json_float,
)

HIST_PRECISION = 0.012  # geometric bin centre, 200 bins per decade (module docstring)


def _pair(seed: int, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ref = rng.standard_normal(shape).astype(np.float32)
    ref.flat[::7] = 0.0  # exact zeros exercise Polygraphy's epsilon in the relative error
    cand = (ref + rng.normal(0, 0.05, shape)).astype(np.float32)
    cand.flat[::14] = ref.flat[::14]  # some exact matches, including 0 == 0
    return ref, cand


def _numpy_metrics(ref: np.ndarray, cand: np.ndarray) -> dict[str, float]:
    r, c = ref.astype(np.float64).ravel(), cand.astype(np.float64).ravel()
    err = np.abs(c - r)
    rel = err / np.where(r == 0, REL_EPSILON, np.abs(r))
    return {
        "max_abs_error": err.max(), "mean_abs_error": err.mean(), "max_rel_error": rel.max(),
        "mean_rel_error": rel.mean(), "cosine": np.dot(r, c) / (np.linalg.norm(r) * np.linalg.norm(c)),
        "sqnr_db": 10 * np.log10(np.sum(r**2) / np.sum((r - c) ** 2)),
        "p99_abs_error": np.quantile(err, 0.99, method="inverted_cdf"),
        "p99_rel_error": np.quantile(rel, 0.99, method="inverted_cdf"),
    }


def _accumulate(ref: np.ndarray, cand: np.ndarray, cuts: list[int], labels: np.ndarray | None = None):
    acc = OutputAccumulator("y")
    for lo, hi in zip([0, *cuts], [*cuts, len(ref)], strict=True):
        acc.update(ref[lo:hi], cand[lo:hi], hi - lo, None if labels is None else labels[lo:hi])
    return acc


@pytest.mark.parametrize("cuts", [[], [5], [3, 17, 18, 29], list(range(1, 40))])
def test_streaming_equals_numpy_on_the_whole_array(cuts):
    ref, cand = _pair(0, (40, 7))
    m = _accumulate(ref, cand, cuts).result()
    expected = _numpy_metrics(ref, cand)
    for name in ("max_abs_error", "mean_abs_error", "max_rel_error", "mean_rel_error", "cosine", "sqnr_db"):
        assert getattr(m, name) == pytest.approx(expected[name], rel=1e-9), name
    for name in ("p99_abs_error", "p99_rel_error"):
        assert getattr(m, name) == pytest.approx(expected[name], rel=HIST_PRECISION), name
    assert (m.samples, m.elements, m.nonfinite) == (40, 280, 0)
    # [40, 7] is classifier-like: agreement against numpy argmax, top-5 = reference argmax in candidate's top 5
    ref_top1, cand_top5 = ref.argmax(1), np.argsort(-cand, axis=1)[:, :5]
    assert m.top1_agreement == pytest.approx(np.mean(ref_top1 == cand.argmax(1)))
    assert m.top5_agreement == pytest.approx(np.mean([t in row for t, row in zip(ref_top1, cand_top5, strict=True)]))


def test_chunked_results_are_identical_for_counts_and_histograms():
    ref, cand = _pair(1, (64, 12))
    one, many = _accumulate(ref, cand, []), _accumulate(ref, cand, [1, 9, 40, 41])
    np.testing.assert_array_equal(one.abs_hist.counts, many.abs_hist.counts)
    np.testing.assert_array_equal(one.rel_hist.counts, many.rel_hist.counts)
    assert one.result().p99_abs_error == many.result().p99_abs_error
    assert one.result().top1_agreement == many.result().top1_agreement


def test_merge_equals_one_pass():
    ref, cand = _pair(2, (30, 6))
    first, second = _accumulate(ref[:11], cand[:11], []), _accumulate(ref[11:], cand[11:], [4])
    first.merge(second)
    whole = _accumulate(ref, cand, []).result()
    merged = first.result()
    assert merged.samples == whole.samples == 30
    assert merged.sqnr_db == pytest.approx(whole.sqnr_db, rel=1e-12)
    assert merged.p99_rel_error == whole.p99_rel_error
    assert merged.top1_agreement == whole.top1_agreement


def test_identical_outputs_have_infinite_sqnr_and_zero_errors():
    ref, _ = _pair(3, (5, 4))
    m = _accumulate(ref, ref.copy(), [2]).result()
    assert math.isinf(m.sqnr_db) and m.sqnr_db > 0
    assert m.cosine == pytest.approx(1.0)
    assert m.max_abs_error == m.p99_abs_error == m.max_rel_error == 0.0
    assert m.top1_agreement == 1.0
    assert m.top5_agreement is None  # only 4 classes


def test_nonfinite_values_are_counted_and_left_out():
    ref = np.array([[1.0, np.nan, np.inf, 2.0, 3.0]], np.float32)
    cand = np.array([[1.5, np.nan, np.inf, np.nan, 3.0]], np.float32)  # only index 3 differs
    sums = ErrorSums()
    sums.update(ref, cand)
    assert sums.nonfinite == 1
    assert sums.elements == 2  # indices 0 and 4
    assert sums.sum_err2 == pytest.approx(0.25)
    assert sums.sqnr_db == pytest.approx(10 * np.log10((1 + 9) / 0.25))


def test_class_scores_squeezes_size_one_axes_only():
    assert class_scores(np.zeros((4, 10, 1, 1)), 4).shape == (4, 10)
    assert class_scores(np.zeros((1, 1, 10)), 1).shape == (1, 10)
    assert class_scores(np.zeros((4, 1)), 4) is None  # a single score is not a class distribution
    assert class_scores(np.zeros((4, 3, 5)), 4) is None  # a map, not [N, C]
    assert class_scores(np.zeros((2, 10)), 4) is None  # axis 0 is not the batch


def test_accuracy_against_labels_ignores_unlabeled_samples():
    rng = np.random.default_rng(4)
    ref, cand = rng.standard_normal((50, 8)), rng.standard_normal((50, 8))
    labels = rng.integers(0, 8, 50)
    labels[::5] = -1
    agreement = ClassAgreement()
    for lo in range(0, 50, 15):
        agreement.update(ref[lo:lo + 15], cand[lo:lo + 15], labels[lo:lo + 15])
    known = labels >= 0
    rates = agreement.rates()
    assert agreement.labeled == known.sum() == 40
    assert rates["reference_top1_accuracy"] == pytest.approx(np.mean(ref.argmax(1)[known] == labels[known]))
    assert rates["candidate_top1_accuracy"] == pytest.approx(np.mean(cand.argmax(1)[known] == labels[known]))


def test_log_histogram_quantiles_over_many_decades():
    rng = np.random.default_rng(5)
    values = 10.0 ** rng.uniform(-12, 12, 10_001)
    values[:50] = 0.0
    hist = LogHistogram()
    for chunk in np.array_split(values, 7):
        hist.update(chunk)
    for q in (0.001, 0.01, 0.5, 0.9, 0.99, 0.999):
        exact = np.quantile(values, q, method="inverted_cdf")
        estimate = hist.quantile(q, values.max())
        assert estimate == (0.0 if exact == 0 else pytest.approx(exact, rel=HIST_PRECISION)), q
    assert hist.quantile(1.0, values.max()) <= values.max()
    assert LogHistogram().quantile(0.99, 0.0) is None


def test_json_float_spells_out_infinities():
    assert json_float(math.inf) == "inf"
    assert json_float(-math.inf) == "-inf"
    assert json_float(float("nan")) == "nan"
    assert json_float(np.float32(0.5)) == 0.5
    assert json_float(None) is None
