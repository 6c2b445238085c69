"""Entropy calibration on a padded language model: the exact zeros of masked attention do not shrink ranges."""

from __future__ import annotations

import onnx
import pytest

from tests.lm_models import MAX_SEQ, save_bert_encoder
from tests.lm_text import sentences, write_tokens
from trtq.calibrators import compute_amax
from trtq.config import load_config
from trtq.pipeline.calibrate import calibrate

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def test_softmax_of_padded_sentences_keeps_most_of_its_range(tmp_path):
    # 40 real sentences padded to 32 tokens: the masked keys get probability exactly 0, over 40 %
    # of every attention Softmax output. Searched as it is, the histogram's zero bin dominates the
    # KL and entropy clips those outputs to 0.125 (about 1/7 of their max: ~10 dB output SQNR).
    model = tmp_path / "bert.onnx"
    save_bert_encoder(model)
    write_tokens(tmp_path / "tokens.npz", sentences()[:40], MAX_SEQ)
    config = load_config([], {"calib": str(tmp_path / "tokens.npz"), "method": "entropy",
                              "cache": str(tmp_path / "bert.cache")})
    outcome = calibrate(model, config, show_progress=False)
    softmax = [n.output[0] for n in onnx.load(str(model)).graph.node if n.op_type == "Softmax"]
    assert softmax
    for name in softmax:
        stats = outcome.stats[name]
        assert stats.hist.zero_count > 0.3 * stats.count, name
        assert outcome.table.amax[name] > 0.6 * stats.hist.amax, name
        assert compute_amax("entropy", stats, flatten_zero_bin=False) < 0.2 * stats.hist.amax, name
