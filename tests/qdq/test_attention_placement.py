"""Placement rules 10 and 11 (trtq.qdq.placement) on a transformer block as current exporters write it:
scaled_dot_product_attention's Q and K scaled before Q@K^T, `Where(mask, 0, -inf)` added to the scores
(tests/lm_models.py, mask="where"). Which tensors get Q/DQ, which never do, and what `trtq lint` says
about placements that break TensorRT's fused attention."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from tests.lm_models import LAYERS, MAX_SEQ, bert_encoder
from tests.lm_text import encode, sentences
from tests.qdq.helpers import activation_amax, dq_inputs_of, qdq_nodes, session, sqnr_db
from trtq.config import QuantizeConfig
from trtq.qdq import lint_model, quantize_model
from trtq.qdq.attention import find_attention
from trtq.qdq.graph import GraphIndex

LINEARS = ("attention.query", "attention.key", "attention.value", "attention.output", "ffn.in", "ffn.out")
# Rule 10: Q and K as scaled for BMM1, the Softmax output and V for BMM2; rule 11: the projections' inputs
# (LayerNorm outputs, the merged heads, the GELU output) and the residual shortcuts (shared pairs).
LAYER_ACTIVATIONS = ("attention.q_scaled", "attention.k_scaled", "attention.softmax", "attention.v.transpose",
                     "attention.merge_reshape", "attention.norm.out", "ffn.gelu.out")
ACTIVATIONS = {"embeddings.norm.out", "layer0.ffn.norm.out", "pooler.first_token", "pooled"} | {
    f"layer{i}.{name}" for i in range(LAYERS) for name in LAYER_ACTIVATIONS}
WEIGHTS = {"pooler.dense.weight", "classifier.weight"} | {
    f"layer{i}.{name}.weight" for i in range(LAYERS) for name in LINEARS}
# Never a Q/DQ pair: the scores, the mask bias, the masked scores, the unscaled Q/K heads (read by the
# scaling Mul only), integer inputs and shape arithmetic.
NEVER = {"input_ids", "attention_mask", "token_type_ids", "mask.bool", "mask.extended", "embeddings.seq_len"} | {
    f"layer{i}.attention.{t}" for i in range(LAYERS)
    for t in ("qk", "mask_where", "mask_add", "q.transpose", "k.transpose")}
INT8_ATTENTION = QuantizeConfig(attention="int8")  # rule 10's INT8 layout (the default leaves attention float)
FLOAT_OPS = ("Softmax", "LayerNormalization", "Erf", "Where", "Cast", "Div", "Mul", "Tanh", "Gather", "Slice",
             "Unsqueeze", "Reshape", "Transpose", "Identity", "Shape")


@pytest.fixture(scope="module")
def amax() -> dict[str, float]:
    """max |x| of every float tensor over 32 real sentences (finite ones: the mask tensors hold -inf)."""
    ids, mask = encode(sentences()[:32], MAX_SEQ)
    feeds = [{"input_ids": ids[i:i + 16], "attention_mask": mask[i:i + 16], "token_type_ids": np.zeros_like(ids[:16])}
             for i in range(0, 32, 16)]
    return {k: v for k, v in activation_amax(_model(), feeds).items() if np.isfinite(v)}


def _model() -> onnx.ModelProto:
    return bert_encoder(mask="where", token_types=True)


def test_the_attention_cores_are_found():
    index = GraphIndex.build(_model())
    cores = find_attention(index)
    names = [(index.node(c.bmm1).name, index.node(c.softmax).name, index.node(c.bmm2).name,
              index.node(c.mask_add).name) for c in cores]
    assert names == [(f"layer{i}.attention.qk", f"layer{i}.attention.softmax", f"layer{i}.attention.pv",
                      f"layer{i}.attention.mask_add") for i in range(LAYERS)]
    assert set(cores[0].score_tensors) == {"layer0.attention.qk", "layer0.attention.mask_add",
                                           "layer0.attention.mask_where"}


def test_exactly_the_projection_ffn_and_attention_inputs_get_one_pair_each(amax):
    result = quantize_model(_model(), amax, INT8_ATTENTION)
    q = qdq_nodes(result.model)
    assert set(q) == ACTIVATIONS | WEIGHTS
    assert not set(q) & NEVER
    assert all(len(nodes) == 1 for nodes in q.values())
    for i in range(LAYERS):
        a = f"layer{i}.attention"
        assert dq_inputs_of(result.model, f"{a}.qk") == [f"{a}.q_scaled", f"{a}.k_scaled"]
        assert dq_inputs_of(result.model, f"{a}.pv") == [f"{a}.softmax", f"{a}.v.transpose"]
        assert dq_inputs_of(result.model, f"{a}.mask_add") == [None, None]
    skipped = {s.name: s for s in result.report.skipped}
    for i in range(LAYERS):  # the scores come straight from a quantized MatMul, yet it is no residual Add
        assert "attention mask Add" in skipped[f"layer{i}.attention.mask_add"].reason
        assert not skipped[f"layer{i}.attention.mask_add"].warning
    assert not result.report.warnings


def test_by_default_attention_stays_float_and_every_projection_is_int8(amax):
    result = quantize_model(_model(), amax, QuantizeConfig())
    q = qdq_nodes(result.model)
    bmm_inputs = {f"layer{i}.attention.{t}" for i in range(LAYERS)
                  for t in ("q_scaled", "k_scaled", "softmax", "v.transpose")}
    assert set(q) == (ACTIVATIONS - bmm_inputs) | WEIGHTS
    skipped = {s.name: s for s in result.report.skipped}
    for i in range(LAYERS):
        for bmm in ("qk", "pv"):
            assert dq_inputs_of(result.model, f"layer{i}.attention.{bmm}") == [None, None]
            assert "attention MatMul: left float" in skipped[f"layer{i}.attention.{bmm}"].reason
            assert not skipped[f"layer{i}.attention.{bmm}"].warning
    assert [f.line() for f in lint_model(result.model) if f.severity != "info"] == []


def test_no_qdq_reaches_layernorm_softmax_gelu_where_or_cast(amax):
    model = quantize_model(_model(), amax, INT8_ATTENTION).model
    dq_outputs = {n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    # only MatMuls: the residual Adds feed LayerNorms, so the residual stream stays float (rule 11)
    assert {n.op_type for n in model.graph.node if set(n.input) & dq_outputs} == {"MatMul"}
    for node in model.graph.node:
        if node.op_type in FLOAT_OPS:
            assert not set(node.input) & dq_outputs, node.name


def test_the_qdq_model_lints_clean_and_tracks_fp32(amax):
    model = quantize_model(_model(), amax, INT8_ATTENTION).model
    assert [f.line() for f in lint_model(model) if f.severity != "info"] == []
    ids, mask = encode(sentences()[64:80], MAX_SEQ)
    feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
    ref, got = session(_model()).run(["last_hidden_state"], feeds)[0], session(model).run(["last_hidden_state"],
                                                                                           feeds)[0]
    assert sqnr_db(ref, got) > 25.0


def test_excluding_one_attention_matmul_leaves_its_partner_in_float(amax):
    result = quantize_model(_model(), amax, QuantizeConfig(exclude_nodes=["layer0.attention.pv"], attention="int8"))
    assert dq_inputs_of(result.model, "layer0.attention.qk") == [None, None]
    skipped = {s.name: s.reason for s in result.report.skipped}
    assert "'layer0.attention.pv', is excluded (rule 10)" in skipped["layer0.attention.qk"]
    assert dq_inputs_of(result.model, "layer1.attention.qk") == ["layer1.attention.q_scaled",
                                                                 "layer1.attention.k_scaled"]
    assert not [f for f in lint_model(result.model) if f.rule.startswith("mha-")]


def _insert_pair(model: onnx.ModelProto, tensor: str, scale: float) -> onnx.ModelProto:
    """A copy with a Q/DQ pair on `tensor` right after its producer, read by every former consumer."""
    out = onnx.ModelProto.FromString(model.SerializeToString())
    pair = [helper.make_node("QuantizeLinear", [tensor, f"{tensor}.s", f"{tensor}.zp"], [f"{tensor}.q"],
                             name=f"{tensor}.Q"),
            helper.make_node("DequantizeLinear", [f"{tensor}.q", f"{tensor}.s", f"{tensor}.zp"], [f"{tensor}.dq"],
                             name=f"{tensor}.DQ")]
    nodes = []
    for node in out.graph.node:
        node.input[:] = [f"{tensor}.dq" if t == tensor else t for t in node.input]
        nodes.append(node)
        if tensor in node.output:
            nodes.extend(pair)
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    out.graph.initializer.extend([numpy_helper.from_array(np.array(scale, np.float32), f"{tensor}.s"),
                                  numpy_helper.from_array(np.array(0, np.int8), f"{tensor}.zp")])
    onnx.checker.check_model(out)
    return out


def test_lint_warns_on_qdq_between_bmm1_and_softmax(amax):
    good = quantize_model(_model(), amax, INT8_ATTENTION).model
    bad = _insert_pair(good, "layer1.attention.qk", amax["layer1.attention.qk"] / 127)
    findings = [f for f in lint_model(bad) if f.severity == "warning"]
    assert [(f.rule, f.node) for f in findings] == [("mha-scores-qdq", "layer1.attention.qk.Q")]
    assert "Softmax 'layer1.attention.softmax'" in findings[0].message


def test_lint_warns_on_half_quantized_attention(amax):
    model = quantize_model(_model(), amax, INT8_ATTENTION).model
    for node in model.graph.node:  # layer 0's P@V reads the float Softmax output and V again
        if node.name == "layer0.attention.pv":
            node.input[:] = ["layer0.attention.softmax", "layer0.attention.v.transpose"]
    findings = [f for f in lint_model(model) if f.rule == "mha-half-quantized"]
    assert [(f.node, f.severity) for f in findings] == [("layer0.attention.qk", "warning")]
    assert "read 2 and 0 of their 2 inputs" in findings[0].message
