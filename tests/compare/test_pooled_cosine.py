"""The mean-pooled embedding cosine of token-embedding outputs (trtq.accuracy.metrics): against a hand
computation, streamed and merged, in compare_models and Reference.measure, and as what --min-cosine checks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.lm_models import MAX_SEQ, bert_encoder
from tests.lm_text import encode, sentences
from tests.qdq.helpers import activation_amax, session
from trtq.accuracy import compare_models
from trtq.accuracy.evaluation import Reference, worst_pooled_cosine
from trtq.accuracy.feeds import attention_mask_input
from trtq.accuracy.gates import Gates, check_gates
from trtq.accuracy.metrics import OutputAccumulator, pooled_cosines
from trtq.accuracy.probe import only_layers
from trtq.accuracy.sensitivity import layer_sensitivity
from trtq.config import QuantizeConfig
from trtq.onnx_model.model import TensorSpec
from trtq.qdq import quantize_model

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _by_hand(ref, cand, mask) -> list[float]:
    """Mean over the real tokens, then cosine, written out element by element."""
    result = []
    for n in range(len(ref)):
        tokens = [t for t in range(len(mask[n])) if mask[n][t]]
        r = [sum(float(ref[n][t][h]) for t in tokens) / len(tokens) for h in range(len(ref[n][0]))]
        c = [sum(float(cand[n][t][h]) for t in tokens) / len(tokens) for h in range(len(ref[n][0]))]
        dot = sum(a * b for a, b in zip(r, c, strict=True))
        result.append(dot / (math.sqrt(sum(a * a for a in r)) * math.sqrt(sum(b * b for b in c))))
    return result


def test_pooled_cosine_matches_a_hand_computation():
    ref = np.array([[[1.0, 2.0], [3.0, -1.0], [100.0, 100.0]],
                    [[0.5, 0.5], [-7.0, 7.0], [7.0, -7.0]]], np.float32)
    cand = np.array([[[1.0, 2.5], [2.0, -1.0], [-50.0, 3.0]],
                     [[0.5, -0.5], [9.0, 9.0], [1.0, 1.0]]], np.float32)
    mask = np.array([[1, 1, 0], [1, 0, 0]], np.int64)
    got = pooled_cosines(ref, cand, mask)
    # sample 0: means (2, 0.5) and (1.5, 0.75) -> 3.375 / (sqrt 4.25 * sqrt 2.8125); sample 1: (0.5,0.5).(0.5,-0.5) = 0
    assert got[0] == pytest.approx(3.375 / math.sqrt(4.25 * 2.8125), rel=1e-12)
    assert got[1] == pytest.approx(0.0, abs=1e-12)
    np.testing.assert_allclose(got, _by_hand(ref, cand, mask), rtol=1e-12, atol=1e-12)


def test_streamed_in_any_chunks_gives_the_mean_and_the_worst_sample():
    rng = np.random.default_rng(0)
    ref = rng.normal(0, 1, (10, 7, 5)).astype(np.float32)
    cand = (ref + rng.normal(0, 0.5, ref.shape)).astype(np.float32)
    mask = (np.arange(7)[None, :] < rng.integers(1, 8, 10)[:, None]).astype(np.int64)
    cand[:, :, :][mask == 0] = 1e6  # padded positions must not count
    expected = _by_hand(ref, cand, mask)
    one, chunked, merged = OutputAccumulator("e"), OutputAccumulator("e"), OutputAccumulator("e")
    one.update(ref, cand, 10, mask=mask)
    for lo, hi in ((0, 3), (3, 4), (4, 10)):
        chunked.update(ref[lo:hi], cand[lo:hi], hi - lo, mask=mask[lo:hi])
    merged.update(ref[:5], cand[:5], 5, mask=mask[:5])
    other = OutputAccumulator("e")
    other.update(ref[5:], cand[5:], 5, mask=mask[5:])
    merged.merge(other)
    for acc in (one, chunked, merged):
        m = acc.result()
        assert m.pooled_cosine_mean == pytest.approx(np.mean(expected), rel=1e-9)
        assert m.pooled_cosine_min == pytest.approx(min(expected), rel=1e-9)
    no_mask = OutputAccumulator("e")
    no_mask.update(ref, cand, 10)
    assert no_mask.result().pooled_cosine_mean is None
    real = mask.astype(bool)  # SQNR and the other element metrics: over the real tokens only
    r, c = ref[real].astype(np.float64), cand[real].astype(np.float64)
    signal, noise = (r ** 2).sum(), ((c - r) ** 2).sum()
    for acc in (one, chunked, merged):
        m = acc.result()
        assert m.sqnr_db == pytest.approx(10 * math.log10(signal / noise), rel=1e-9)
        assert m.max_abs_error < 1e3  # the 1e6 at padded positions is not an error of the model
    assert no_mask.result().max_abs_error > 1e5  # without a mask every position counts


def test_the_mask_input_is_found_by_name():
    ids = TensorSpec("input_ids", ("batch", "seq"), np.dtype(np.int64))
    assert attention_mask_input([ids, TensorSpec("attention_mask", ("batch", "seq"), np.dtype(np.int64))]) \
        == "attention_mask"
    assert attention_mask_input([ids, TensorSpec("input_mask", ("batch", "seq"), np.dtype(np.int32))]) == "input_mask"
    assert attention_mask_input([TensorSpec("x", ("N", 3, 8, 8), np.dtype(np.float32))]) is None


@pytest.fixture(scope="module")
def encoder_case():
    """The encoder, its Q/DQ model (max |x| ranges of 32 sentences) and 12 held-out sentences at 2 lengths."""
    model = bert_encoder(mask="where")
    ids, mask = encode(sentences()[:32], MAX_SEQ)
    amax = activation_amax(model, [{"input_ids": ids, "attention_mask": mask}])
    qdq = quantize_model(model, {k: v for k, v in amax.items() if np.isfinite(v)}, QuantizeConfig()).model
    texts = sentences()[200:212]
    batches = [dict(zip(("input_ids", "attention_mask"), encode(texts[:6], 12), strict=True)),
               dict(zip(("input_ids", "attention_mask"), encode(texts[6:], MAX_SEQ), strict=True))]
    return model, qdq, batches


def _expected(model, qdq, batches) -> list[float]:
    values = []
    for feeds in batches:
        ref = session(model).run(["last_hidden_state"], feeds)[0]
        cand = session(qdq).run(["last_hidden_state"], feeds)[0]
        values += _by_hand(ref, cand, feeds["attention_mask"])
    return values


def test_compare_and_measure_report_the_pooled_cosine_of_token_embeddings_only(encoder_case):
    model, qdq, batches = encoder_case
    expected = _expected(model, qdq, batches)
    compared = compare_models(model, qdq, batches, progress=False)
    measured = Reference(model, batches).measure(qdq)
    for result in (compared, measured):
        hidden = result.outputs["last_hidden_state"]
        assert hidden.pooled_cosine_mean == pytest.approx(np.mean(expected), rel=1e-6)
        assert hidden.pooled_cosine_min == pytest.approx(min(expected), rel=1e-6)
        assert result.outputs["pooled"].pooled_cosine_mean is None  # [N, H]: not token embeddings
        assert result.outputs["logits"].pooled_cosine_min is None
        assert worst_pooled_cosine(result) == hidden.pooled_cosine_mean
    assert 0.99 < min(expected) < 1.0  # INT8 is close, but not identical


def test_min_cosine_checks_the_pooled_cosine_of_token_embeddings(encoder_case):
    model, qdq, batches = encoder_case
    result = Reference(model, batches).measure(qdq)
    hidden = result.outputs["last_hidden_state"]
    assert hidden.pooled_cosine_mean != hidden.cosine
    between = (hidden.pooled_cosine_mean + 1.0) / 2
    failures = check_gates(result, Gates(min_cosine=between))
    metrics = {(f.output, f.metric) for f in failures}
    assert ("last_hidden_state", "pooled_cosine") in metrics
    assert ("last_hidden_state", "cosine") not in metrics
    assert not check_gates(result, Gates(min_cosine=min(hidden.pooled_cosine_mean, result.outputs["pooled"].cosine,
                                                        result.outputs["logits"].cosine) - 1e-6))


def test_sensitivity_ranks_by_the_pooled_cosine_when_asked(encoder_case):
    model, _, batches = encoder_case
    ids, mask = encode(sentences()[:32], MAX_SEQ)
    amax = {k: v for k, v in activation_amax(model, [{"input_ids": ids, "attention_mask": mask}]).items()
            if np.isfinite(v)}
    reference = Reference(model, batches)
    ranked = layer_sensitivity(model, amax, batches, measure_top=3, reference=reference, rank_by="pooled_cosine")
    measured = [layer for layer in ranked if layer.measured]
    assert len(measured) == 3
    cosines = [layer.alone_pooled_cosine for layer in measured]
    assert cosines == sorted(cosines) and all(c is not None and 0.99 < c < 1.0 for c in cosines)
    for layer in measured:  # the value is the pooled cosine of the model with only that layer quantized
        alone = reference.measure(only_layers(quantize_model(model, amax, QuantizeConfig(weights="qdq")).model,
                                              [layer.node]))
        assert layer.alone_pooled_cosine == pytest.approx(worst_pooled_cosine(alone), rel=1e-9)
