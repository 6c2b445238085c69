"""Padding does not change the ranges (trtq/onnx_model/token_axes.py, trtq/calibration/collect.py):
calibration observes the real tokens of per-token tensors only, so the same sentences padded to 16 or to
32 tokens give the same ranges, which they do not when every position is observed."""

from __future__ import annotations

import numpy as np
import pytest

from tests.lm_models import HEAD_DIM, bert_encoder
from tests.lm_text import encode, sentences, words
from trtq.calibration.collect import collect_statistics
from trtq.calibration.ranges import ranges_from_stats
from trtq.calibrators import TensorStats
from trtq.config import CalibrationConfig
from trtq.data import Batch
from trtq.onnx_model.tensors import activation_tensors
from trtq.onnx_model.token_axes import axes_from_probe, probe_feeds, real_tokens
from trtq.qdq.placement import planned_activations

SHORT, LONG = HEAD_DIM, 2 * HEAD_DIM  # 16 = the head size: shapes alone cannot find the sequence axis


def _texts() -> list[str]:
    """32 real sentences that fit in SHORT tokens with [CLS] and [SEP]: padding is all that differs."""
    texts = [t for t in sentences() if len(words(t)) <= SHORT - 2][:32]
    assert len(texts) == 32
    return texts


def _collect(model, seq: int, mask_input: str | None):
    ids, mask = encode(_texts(), seq)
    batches = [Batch({"input_ids": ids[i:i + 8], "attention_mask": mask[i:i + 8]}, [str(j) for j in range(i, i + 8)])
               for i in range(0, len(ids), 8)]
    names = [n for n in activation_tensors(model) if n in planned_activations(model) or n == "pooled"
             or n == "embeddings.norm.out"]
    return collect_statistics(model, None, names, batches, lambda: TensorStats(ema_constant=None),
                              providers=["CPUExecutionProvider"], show_progress=False, mask_input=mask_input)


@pytest.fixture(scope="module")
def runs():
    model = bert_encoder(mask="where")
    return model, {(seq, mask_input): _collect(model, seq, mask_input)
                   for seq in (SHORT, LONG) for mask_input in ("attention_mask", None)}


@pytest.mark.parametrize("method", ["auto", "minmax"])
def test_padding_to_another_length_leaves_every_quantized_range_unchanged(runs, method):
    model, results = runs
    quantized = planned_activations(model)
    cal = CalibrationConfig(method=method)
    def ranges(seq: int, mask_input: str | None) -> dict[str, float]:
        stats = results[(seq, mask_input)].stats
        assert quantized <= set(stats)
        return ranges_from_stats({name: stats[name] for name in quantized}, cal)

    short, long = ranges(SHORT, "attention_mask"), ranges(LONG, "attention_mask")
    for name in quantized:
        assert long[name] == pytest.approx(short[name], rel=1e-5), name
    # Observing every position instead: the padded ones move the ranges (by 8-20 % here).
    short_all, long_all = ranges(SHORT, None), ranges(LONG, None)
    assert max(abs(long_all[n] / short_all[n] - 1) for n in quantized) > 0.05


def test_only_real_tokens_are_counted(runs):
    _, results = runs
    _, mask = encode(_texts(), LONG)
    real = int(mask.sum())
    stats = results[(LONG, "attention_mask")].stats
    assert stats["embeddings.norm.out"].count == real * 64  # [N, L, H]: real tokens x hidden
    assert stats["layer0.attention.k_scaled"].count == real * 64  # [N, heads, D, L]: along the last axis
    assert stats["pooled"].count == 32 * 64  # [N, H]: not per token, observed whole
    assert results[(LONG, None)].stats["embeddings.norm.out"].count == mask.size * 64


def test_the_probe_finds_the_sequence_axis_even_where_the_head_size_equals_the_length():
    full = {"hidden": (4, SHORT, 64), "q": (4, 4, SHORT, HEAD_DIM), "kt": (4, 4, HEAD_DIM, SHORT),
            "scores": (4, 4, SHORT, SHORT), "pooled": (4, 64), "table": (SHORT, 64)}
    cut = {"hidden": (4, SHORT - 1, 64), "q": (4, 4, SHORT - 1, HEAD_DIM), "kt": (4, 4, HEAD_DIM, SHORT - 1),
           "scores": (4, 4, SHORT - 1, SHORT - 1), "pooled": (4, 64), "table": (SHORT - 1, 64)}
    assert axes_from_probe(full, cut, (4, SHORT)) == {"hidden": 1, "q": 2, "kt": 3, "scores": 2}
    feeds = {"input_ids": np.ones((4, SHORT), np.int64), "attention_mask": np.ones((4, SHORT), np.int64),
             "other": np.ones((4, 3), np.float32)}
    cut_feeds = probe_feeds(feeds, "attention_mask")
    assert cut_feeds["input_ids"].shape == (4, SHORT - 1) and cut_feeds["other"].shape == (4, 3)


def test_real_tokens_selects_the_masked_positions_along_the_axis():
    x = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)  # [N, H=3, L=4]
    mask = np.array([[1, 1, 0, 0], [1, 0, 0, 0]])
    np.testing.assert_array_equal(real_tokens(x, 2, mask), [x[0, :, 0], x[0, :, 1], x[1, :, 0]])
    assert real_tokens(x, None, mask) is x and real_tokens(x[:1], 2, mask) is not None
