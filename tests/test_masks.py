"""Attention masks hold -inf or finfo.min by construction (trtq/onnx_model/masks.py,
trtq/calibration/collect.py): the real Hugging Face export patterns (tests/lm_models.py: SDPA's
`Where(mask, 0, -inf)`, eager `(1 - mask) * finfo.min`) calibrate with the default --nan-policy error,
and the mask tensors get no cache entry and no Q/DQ; Inf where a Q/DQ pair reads it, and NaN anywhere,
still fail."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from tests.lm_models import LAYERS, MAX_SEQ, bert_encoder, save_bert_encoder
from tests.lm_text import encode, sentences, write_tokens
from tests.qdq.helpers import qdq_nodes, session
from trtq.cache import read_cache, read_table
from trtq.cli import main
from trtq.config import load_config
from trtq.errors import DataError
from trtq.onnx_model.masks import MASK_BIAS, MASKED_SCORES
from trtq.onnx_model.model import save_model
from trtq.onnx_model.tensors import activation_tensors, attention_masks
from trtq.pipeline.calibrate import calibrate

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

SCORES = {f"layer{i}.attention.mask_add": MASKED_SCORES for i in range(LAYERS)}
EXPECTED = {
    "additive": {**dict.fromkeys(("mask.float", "mask.inverted", "mask.additive", "mask.extended"), MASK_BIAS),
                 **SCORES},
    "where": {**{f"layer{i}.attention.mask_where": MASK_BIAS for i in range(LAYERS)}, **SCORES},
}
EXPECTED["finfo"] = EXPECTED["additive"]


@pytest.mark.parametrize("mask", ["additive", "finfo", "where"])
def test_the_graph_shows_exactly_the_attention_masks(mask):
    """The mask path and the masked scores, nothing else: not the embeddings (a table lookup by int ids),
    not the position table sliced to the sequence length, not the token types."""
    model = bert_encoder(mask=mask, token_types=True)
    assert attention_masks(model) == EXPECTED[mask]
    calibrated = activation_tensors(model)
    assert not set(calibrated) & set(EXPECTED[mask])
    assert {"embeddings.tokens", "embeddings.positions", "embeddings.types", "embeddings.norm.out",
            "layer0.attention.softmax"} <= set(calibrated)


def test_masked_fill_is_a_mask_and_mean_pooling_by_the_mask_is_not():
    """scores.masked_fill(~mask, -inf) -> Softmax is a masked score; the 0/1 mask of hidden * mask -> ReduceSum
    (mean pooling) and the product stay data."""
    table = numpy_helper.from_array(np.random.default_rng(0).normal(0, 1, (50, 8)).astype(np.float32), "table")
    consts = [table, numpy_helper.from_array(np.array(-np.inf, np.float32), "neg_inf"),
              numpy_helper.from_array(np.array([1], np.int64), "ax1"), numpy_helper.from_array(np.array([2], np.int64),
                                                                                               "ax2")]
    nodes = [helper.make_node("Gather", ["table", "ids"], ["emb"]),
             helper.make_node("Transpose", ["emb"], ["emb_t"], perm=[0, 2, 1]),
             helper.make_node("MatMul", ["emb", "emb_t"], ["scores"]),
             helper.make_node("Unsqueeze", ["mask", "ax1"], ["mask_rows"]),
             helper.make_node("Cast", ["mask_rows"], ["keep"], to=TensorProto.BOOL),
             helper.make_node("Where", ["keep", "scores", "neg_inf"], ["filled"]),
             helper.make_node("Softmax", ["filled"], ["probs"], axis=-1),
             helper.make_node("MatMul", ["probs", "emb"], ["context"]),
             helper.make_node("Unsqueeze", ["mask", "ax2"], ["mask_cols"]),
             helper.make_node("Cast", ["mask_cols"], ["weights"], to=TensorProto.FLOAT),
             helper.make_node("Mul", ["context", "weights"], ["weighted"]),
             helper.make_node("ReduceSum", ["weighted", "ax1"], ["pooled"], keepdims=0)]
    inputs = [helper.make_tensor_value_info(n, TensorProto.INT64, ["N", "S"]) for n in ("ids", "mask")]
    graph = helper.make_graph(nodes, "masked_fill", inputs,
                              [helper.make_tensor_value_info("pooled", TensorProto.FLOAT, ["N", 8])], consts)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    assert attention_masks(model) == {"filled": MASKED_SCORES}  # the bool condition is no float tensor
    assert {"weights", "weighted"} <= set(activation_tensors(model)) and "filled" not in activation_tensors(model)


def _exposed_values(model: onnx.ModelProto, names: list[str], feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    exposed = onnx.ModelProto.FromString(model.SerializeToString())
    exposed.graph.output.extend(helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in names)
    return dict(zip(names, session(exposed).run(names, feeds), strict=True))


@pytest.mark.parametrize("mask, fill", [("where", -np.inf), ("finfo", np.finfo(np.float32).min)])
def test_the_masks_really_hold_the_fill_where_padded(mask, fill):
    ids, attention = encode(sentences()[:4], MAX_SEQ)
    assert (attention == 0).any()  # short sentences: padded keys
    bias = "layer0.attention.mask_where" if mask == "where" else "mask.extended"
    values = _exposed_values(bert_encoder(mask=mask), [bias, "layer0.attention.mask_add"],
                             {"input_ids": ids, "attention_mask": attention})
    padded = np.broadcast_to((attention == 0)[:, None, None, :], values["layer0.attention.mask_add"].shape)
    np.testing.assert_array_equal(np.broadcast_to(values[bias], padded.shape)[padded], fill)
    assert np.isfinite(values["layer0.attention.mask_add"][~padded]).all()


@pytest.fixture(scope="module")
def where_build(tmp_path_factory):
    """`trtq build` with no flags on the SDPA-style encoder (token_type_ids too), 40 real sentences."""
    root = tmp_path_factory.mktemp("where")
    save_bert_encoder(root / "bert.onnx", mask="where", token_types=True)
    write_tokens(root / "tokens.npz", sentences()[:40], MAX_SEQ, token_types=True)
    result = CliRunner().invoke(main, ["-q", "build", str(root / "bert.onnx"), "--calib", str(root / "tokens.npz")])
    return root, result


def test_the_where_mask_export_builds_with_the_default_nan_policy(where_build):
    root, result = where_build
    assert result.exit_code == 0, result.output
    assert "warning" not in result.output.lower()  # no flood, and no "no amax" for the mask Add either
    report = json.loads((root / "bert_trtq" / "report.json").read_text())
    assert report["config"]["calibration"]["nan_policy"] == "error"
    notes = [line for line in report["info"] if line.startswith("left out of the cache and the Q/DQ model")]
    assert len(notes) == 2  # one line per kind
    assert f"{LAYERS} attention-mask bias tensors (layer0.attention.mask_where, layer1.attention.mask_where)" \
        in notes[0]
    assert f"{LAYERS} masked-score tensors" in notes[1]
    outputs = report["comparison"]["outputs"]
    for output in ("last_hidden_state", "pooled"):
        assert outputs[output]["sqnr_db"] > 25.0  # tests/test_build_lm.py's floor
    # The sentence-embedding view of the token output (tests/compare/test_pooled_cosine.py checks the values).
    assert 0.99 < outputs["last_hidden_state"]["pooled_cosine_min"] <= outputs["last_hidden_state"][
        "pooled_cosine_mean"] < 1.0
    assert outputs["pooled"]["pooled_cosine_mean"] is None
    assert "Mean-pooled embedding cosine" in (root / "bert_trtq" / "report.md").read_text()
    assert "mean-pooled embedding cosine: mean" in result.output  # the terminal summary (as trtq compare's)


def test_masks_have_no_cache_entry_and_no_qdq(where_build):
    root, _ = where_build
    masks = set(EXPECTED["where"])
    table = read_table(root / "bert_trtq" / "bert.cache")
    assert table.amax and not set(table.amax) & masks
    assert all(np.isfinite(v) for v in table.amax.values())
    qdq = onnx.load(str(root / "bert_trtq" / "bert.qdq.onnx"))
    assert not set(qdq_nodes(qdq)) & masks
    dq_outputs = {n.output[0] for n in qdq.graph.node if n.op_type == "DequantizeLinear"}
    for node in qdq.graph.node:
        if node.op_type in ("Where", "Softmax") or node.name.endswith("mask_add"):
            assert not set(node.input) & dq_outputs, node.name


# ---- masks the graph does not show: a float bias input, found from the data


def _float_mask_model() -> onnx.ModelProto:
    """y = softmax(x @ x^T + bias) @ (x @ W): the additive mask is a float input the user feeds."""
    w = numpy_helper.from_array(np.random.default_rng(0).normal(0, 0.3, (8, 8)).astype(np.float32), "w")
    nodes = [helper.make_node("Transpose", ["x"], ["xt"], perm=[0, 2, 1]),
             helper.make_node("MatMul", ["x", "xt"], ["scores"]),
             helper.make_node("Add", ["scores", "bias"], ["masked"]),
             helper.make_node("Softmax", ["masked"], ["probs"], axis=-1),
             helper.make_node("MatMul", ["x", "w"], ["v"]),
             helper.make_node("MatMul", ["probs", "v"], ["y"])]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, 8]),
              helper.make_tensor_value_info("bias", TensorProto.FLOAT, ["N", 1, 4])]
    graph = helper.make_graph(nodes, "float_mask", inputs,
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 8])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    return model


def _calibrate_float_mask(tmp_path, x: np.ndarray, fill: float):
    bias = np.zeros((len(x), 1, 4), np.float32)
    bias[::2, :, 3] = fill  # every other sample has its last key masked
    np.savez(tmp_path / "data.npz", x=x, bias=bias)
    save_model(_float_mask_model(), tmp_path / "m.onnx")
    config = load_config([], {"calib": str(tmp_path / "data.npz"), "eval_fraction": 0.0, "method": "minmax",
                              "workers": 0})
    return calibrate(tmp_path / "m.onnx", config, show_progress=False)


@pytest.mark.parametrize("fill, kind", [(-np.inf, "infinite-fill"), (-3.0e38, "huge-negative-fill")])
def test_a_mask_fill_no_qdq_reads_is_left_out_from_the_data(tmp_path, fill, kind):
    x = np.random.default_rng(1).normal(0, 1, (12, 4, 8)).astype(np.float32)
    assert attention_masks(_float_mask_model()) == {}  # a float input: nothing to see in the graph
    outcome = _calibrate_float_mask(tmp_path, x, fill)
    assert set(outcome.table.amax) == {"x", "xt", "scores", "probs", "v", "y"}
    assert outcome.table.provenance.left_out == {"bias": kind, "masked": kind}
    assert outcome.table.amax["x"] == pytest.approx(float(np.abs(x).max()))
    assert [n for n in outcome.notes if "from the calibration data" in n and "2 " + kind in n]
    again = _calibrate_float_mask(tmp_path, x, fill)  # the cache lacking them still fits the model
    assert again.reused and set(again.table.amax) == set(read_cache(outcome.cache_path).amax) == set(outcome.table.amax)


def test_inf_where_a_qdq_pair_reads_and_nan_anywhere_still_fail(tmp_path):
    x = np.random.default_rng(2).normal(0, 1, (12, 4, 8)).astype(np.float32)
    x[5, 0, 0] = np.inf  # x feeds the quantized MatMuls
    with pytest.raises(DataError, match="activation 'x' has 1 NaN/Inf values"):
        _calibrate_float_mask(tmp_path, x, -np.inf)
    x[5, 0, 0] = 0.0
    with pytest.raises(DataError, match=r"activation 'bias' has \d+ NaN/Inf values"):
        _calibrate_float_mask(tmp_path, x, np.nan)  # NaN is no mask fill, even where nothing is quantized
