"""`trtq build` on a language model: a BERT-like encoder (tests/lm_models.py) with int64 `input_ids` and
`attention_mask`, calibrated on real English text turned into token ids (tests/lm_text.py).

SQNR floor: INT8 with 127 levels per sign gives about 6.02 * 7 + 1.76 = 44 dB for one full-scale
rounding; the encoder quantizes 16 MatMuls in series (2 layers x (Q/K/V, Q@K^T, P@V, output, 2 FFN))
plus the pooler and the classifier, and LayerNorm/Softmax amplify the noise, so each output loses
over 10 dB. Measured with --method auto on this machine: 31.9 (last_hidden_state), 30.0 (pooled)
and 28.7 dB (logits) on the 20 held-out sentences. Entropy without the zero-bin flattening
(calibrators/entropy.py) clipped the Softmax output, 43 % exact zeros on padded data, to 0.125
(observed max 0.89) and gave 10-15 dB; with it, 29-31 dB. The floor of 25 dB keeps a margin for
numeric noise across platforms and still fails a calibration as broken as that.
"""

from __future__ import annotations

import json
import math

import jsonschema
import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, numpy_helper

from tests.lm_models import MAX_SEQ, save_bert_encoder
from tests.lm_text import sentences, write_tokens
from tests.qdq.helpers import dq_inputs_of, qdq_nodes, session, sqnr_db
from trtq.cache import read_table
from trtq.cli import main
from trtq.config import Config, DataConfig
from trtq.data import make_readers
from trtq.data.split import split_indices
from trtq.engine.profiles import derive_profiles
from trtq.onnx_model.model import graph_inputs
from trtq.onnx_model.tensors import tensor_types
from trtq.pipeline.engine_stage import engine_unavailable_reason, observed_shapes
from trtq.qdq import lint_model
from trtq.report.report import SCHEMA_PATH

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

OUTPUTS = ("last_hidden_state", "pooled", "logits")
INT_INPUTS = ("input_ids", "attention_mask")
SQNR_FLOOR_DB = 25.0  # see the module docstring
SAMPLES = 100
SHORT, LONG = 16, MAX_SEQ


def _build(model, calib, *extra: str):
    return CliRunner().invoke(main, ["-q", "build", str(model), "--calib", str(calib), "--method", "auto", *extra])


def _report(out) -> dict:
    data = json.loads((out / "report.json").read_text())
    jsonschema.Draft202012Validator(json.loads(SCHEMA_PATH.read_text())).validate(data)
    return data


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One build of the encoder on 100 real sentences padded to 32 tokens: (folder, CLI result)."""
    root = tmp_path_factory.mktemp("lm")
    save_bert_encoder(root / "bert.onnx")
    write_tokens(root / "tokens.npz", sentences()[:SAMPLES], MAX_SEQ)
    return root, _build(root / "bert.onnx", root / "tokens.npz")


def test_build_exits_0_and_reports_every_output_above_the_floor(built):
    root, result = built
    assert result.exit_code == 0, result.output
    if engine_unavailable_reason():
        assert "skipped engine:" in result.stdout
    data = _report(root / "bert_trtq")
    assert data["provenance"]["calibration_samples"] == 80 and data["comparison"]["samples"] == 20
    outputs = data["comparison"]["outputs"]
    assert set(outputs) == set(OUTPUTS)
    for name in OUTPUTS:
        assert math.isfinite(outputs[name]["sqnr_db"]) and outputs[name]["sqnr_db"] > SQNR_FLOOR_DB, name
    assert outputs["logits"]["top1_agreement"] >= 0.9  # at most 2 of 20 sentences change class


def test_report_sqnr_is_that_of_the_held_out_sentences(built):
    """Recompute each output's SQNR from scratch: the held-out rows, FP32 vs the Q/DQ model on ONNX Runtime."""
    root, _ = built
    data = _report(root / "bert_trtq")
    if not data["comparison"]["candidate"].endswith("bert.qdq.onnx"):
        pytest.skip("the report compares the TensorRT engine here, not the Q/DQ model")
    with np.load(root / "tokens.npz") as npz:
        arrays = {name: npz[name] for name in INT_INPUTS}
    _, held = split_indices([f"tokens.npz:{row}" for row in range(SAMPLES)], 0.2, data["config"]["data"]["seed"])
    feeds = {name: array[held] for name, array in arrays.items()}
    reference = session(onnx.load(str(root / "bert.onnx"))).run(list(OUTPUTS), feeds)
    candidate = session(onnx.load(str(root / "bert_trtq" / "bert.qdq.onnx"))).run(list(OUTPUTS), feeds)
    real = feeds["attention_mask"].astype(bool)
    for name, ref, cand in zip(OUTPUTS, reference, candidate, strict=True):
        if ref.ndim == 3:  # token embeddings: over the real tokens only (padded positions are read by nothing)
            assert real.sum() < real.size  # the test means something: some positions are padding
            ref, cand = ref[real], cand[real]
        assert data["comparison"]["outputs"][name]["sqnr_db"] == pytest.approx(sqnr_db(ref, cand), abs=0.05), name


def test_int64_inputs_are_neither_calibrated_nor_quantized(built):
    root, _ = built
    model = onnx.load(str(root / "bert.onnx"))
    types = tensor_types(model)
    table = read_table(root / "bert_trtq" / "bert.cache")
    assert table.amax and all(types[name] == TensorProto.FLOAT for name in table.amax)
    assert not set(table.amax) & {"input_ids", "attention_mask", "embeddings.seq_len"}
    qdq = onnx.load(str(root / "bert_trtq" / "bert.qdq.onnx"))
    qdq_types = {**tensor_types(qdq), **{t.name: t.data_type for t in qdq.graph.initializer}}
    assert all(qdq_types[tensor] == TensorProto.FLOAT for tensor in qdq_nodes(qdq))
    readers = {name: sorted(n.op_type for n in qdq.graph.node if name in n.input) for name in INT_INPUTS}
    assert readers == {"input_ids": ["Gather", "Shape"], "attention_mask": ["Cast"]}


def test_qdq_scales_come_from_the_cache_and_the_weights(built):
    """Activation scale = cached amax / 127 (per tensor); MatMul weight B[K, N]: axis 1, max |B[:, n]| / 127."""
    root, _ = built
    qdq = onnx.load(str(root / "bert_trtq" / "bert.qdq.onnx"))
    inits = {t.name: numpy_helper.to_array(t) for t in qdq.graph.initializer}
    amax = read_table(root / "bert_trtq" / "bert.cache").amax
    for layer in range(2):  # the default --attention float: both attention MatMuls read float inputs
        for node in (f"layer{layer}.attention.qk", f"layer{layer}.attention.pv"):
            assert dq_inputs_of(qdq, node) == [None, None]
    checked = 0
    for tensor, (q,) in qdq_nodes(qdq).items():
        axis = next((a.i for a in q.attribute if a.name == "axis"), None)
        scale = inits[q.input[1]]
        if tensor in inits:  # a MatMul weight [K, N]
            assert axis == 1 and scale.shape == (inits[tensor].shape[1],), tensor
            np.testing.assert_allclose(scale, np.abs(inits[tensor]).max(axis=0) / 127, rtol=1e-6)
        else:
            assert axis is None and scale.shape == (), tensor
            assert float(scale) == pytest.approx(amax[tensor] / 127, rel=1e-6), tensor
            checked += 1
    assert checked == 18 - 2 * 4  # those tests/qdq/test_lm_placement.py lists, less the 4 inputs of each attention


def test_qdq_model_passes_the_checker_runs_any_length_and_lints_clean(built):
    root, _ = built
    path = root / "bert_trtq" / "bert.qdq.onnx"
    qdq = onnx.load(str(path))
    onnx.checker.check_model(qdq, full_check=True)
    sess = session(qdq)
    for seq in (3, 11, MAX_SEQ):  # dynamic batch and sequence length
        ids = np.random.default_rng(seq).integers(3, 1000, (2, seq))
        outputs = dict(zip(OUTPUTS, sess.run(list(OUTPUTS), {"input_ids": ids, "attention_mask": np.ones_like(ids)}),
                           strict=True))
        assert outputs["last_hidden_state"].shape == (2, seq, 64) and outputs["logits"].shape == (2, 2)
        assert all(np.isfinite(v).all() for v in outputs.values())
    assert not [f for f in lint_model(qdq) if f.severity == "error"]
    lint = CliRunner().invoke(main, ["lint", str(path)])
    assert lint.exit_code == 0, lint.output
    assert "0 errors" in lint.output


# ---- dynamic shapes: two files of different sequence lengths


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """The encoder and a data folder of two .npz files: 50 sentences at 16 tokens, 50 at 32."""
    root = tmp_path_factory.mktemp("lm_mixed")
    save_bert_encoder(root / "bert.onnx")
    (root / "data").mkdir()
    texts = sentences()[SAMPLES:2 * SAMPLES]
    write_tokens(root / "data" / "short.npz", texts[:50], SHORT)
    write_tokens(root / "data" / "long.npz", texts[50:], LONG)
    return root


def _calib_reader(mixed):
    config = Config(data=DataConfig(calib=str(mixed / "data"), workers=0))
    inputs = graph_inputs(onnx.load(str(mixed / "bert.onnx")))
    return make_readers(config, inputs, default_eval_fraction=0.2).calib, inputs


def test_two_sequence_lengths_calibrate_and_the_report_lists_both(mixed):
    result = _build(mixed / "bert.onnx", mixed / "data")
    assert result.exit_code == 0, result.output
    data = _report(mixed / "bert_trtq")
    assert data["provenance"]["calibration_samples"] == 80
    shapes = data["provenance"]["calibration_shapes"]
    assert set(shapes) == set(INT_INPUTS) and shapes["input_ids"] == shapes["attention_mask"]
    assert {int(s.split("x")[1]) for s in shapes["input_ids"]} == {SHORT, LONG}
    assert all(int(s.split("x")[0]) <= 8 for s in shapes["input_ids"])  # --batch-size 8
    for name in OUTPUTS:
        assert data["comparison"]["outputs"][name]["sqnr_db"] > SQNR_FLOOR_DB, name


def test_reader_records_every_batch_shape_and_never_mixes_lengths(mixed):
    reader, inputs = _calib_reader(mixed)
    assert reader.batch_shapes == {}
    batches = list(reader)
    assert reader.batch_shapes["input_ids"] == [b.feeds["input_ids"].shape for b in batches]
    next(iter(reader))  # a partial pass (e.g. a peek at the first batch) keeps the last complete record
    assert len(reader.batch_shapes["input_ids"]) == len(batches)
    for batch in batches:
        files = {key.split(":")[0] for key in batch.keys}
        assert len(files) == 1  # a batch ends where the sequence length changes
        assert batch.feeds["input_ids"].shape[1] == (SHORT if files == {"short.npz"} else LONG)
    (ids_range, mask_range) = derive_profiles(inputs, reader.batch_shapes)
    smallest = min(b.feeds["input_ids"].shape[0] for b in batches)
    assert (ids_range.min, ids_range.max) == ((smallest, SHORT), (8, LONG))
    assert mask_range.min == ids_range.min and mask_range.max == ids_range.max


def test_engine_profile_covers_both_sequence_lengths(mixed):
    reader, inputs = _calib_reader(mixed)
    list(reader)  # `trtq build` calibrates on the reader before the engine step
    ids_range = derive_profiles(inputs, observed_shapes(reader, inputs))[0]
    assert ids_range.min[1] == SHORT and ids_range.max[1] == LONG


def test_the_report_says_the_attention_matmuls_are_left_float_and_how_to_change_it(built):
    root, _ = built
    lines = [line for line in _report(root / "bert_trtq")["info"] if "attention MatMuls" in line]
    assert lines == ["4 attention MatMuls (Q@K^T, softmax@V) left float (--attention float): TensorRT runs them in "
                     "FP32 unless you build with --fp16; --attention int8 quantizes them (TensorRT's INT8 fused "
                     "attention)"]
