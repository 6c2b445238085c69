"""Q/DQ placement on a BERT-like encoder (tests/lm_models.py), checked rule by rule against the
trtq.qdq.placement docstring: weighted ops (rule 1, incl. attention MatMuls of two activations),
residual Adds before LayerNorm left float (rule 11), activation functions/normalizations untouched
(rule 6), one pair per tensor (rule 7), non-float tensors never quantized. Ranges: max |x| over real
English sentences."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, numpy_helper

from tests.lm_models import LAYERS, MAX_SEQ, bert_encoder
from tests.lm_text import encode, sentences
from tests.qdq.helpers import activation_amax, dq_inputs_of, qdq_nodes, session, sqnr_db
from trtq.config import QuantizeConfig
from trtq.onnx_model.tensors import tensor_types
from trtq.qdq.quantizer import quantize_model

LAYER_ACTIVATIONS = ("attention.q.transpose", "attention.k.transpose", "attention.v.transpose",
                     "attention.softmax", "attention.merge_reshape", "attention.norm.out", "ffn.gelu.out")
LINEARS = ("attention.query", "attention.key", "attention.value", "attention.output", "ffn.in", "ffn.out")
# Rule 1: every input of every MatMul; the residual Adds feed LayerNorms and get no pair (rule 11).
# layer1.ffn.norm.out feeds no MatMul.
ACTIVATIONS = {"embeddings.norm.out", "layer0.ffn.norm.out", "pooler.first_token", "pooled"} | {
    f"layer{i}.{name}" for i in range(LAYERS) for name in LAYER_ACTIVATIONS}
WEIGHTS = {"pooler.dense.weight", "classifier.weight"} | {
    f"layer{i}.{name}.weight" for i in range(LAYERS) for name in LINEARS}
NON_RESIDUAL_ADDS = {"embeddings.sum"} | {f"layer{i}.attention.mask_add" for i in range(LAYERS)}
FLOAT_OPS = ("Softmax", "LayerNormalization", "Gelu", "Erf", "Div", "Mul", "Tanh", "Gather", "Slice", "Cast",
             "Sub", "Unsqueeze", "Reshape", "Transpose", "Identity", "Shape")


def _feeds(texts: list[str], seq: int = MAX_SEQ) -> dict[str, np.ndarray]:
    ids, mask = encode(texts, seq)
    return {"input_ids": ids, "attention_mask": mask}


@pytest.fixture(scope="module")
def amax() -> dict[str, float]:
    """max |x| of every float tensor over 64 real sentences (the same for both Gelu forms: same weights)."""
    texts = sentences()[:64]
    return activation_amax(bert_encoder(), [_feeds(texts[i:i + 16]) for i in range(0, len(texts), 16)])


def _quantize(amax: dict[str, float], gelu: str = "erf", **options):
    options.setdefault("attention", "int8")  # rule 10's INT8 layout (the default float one: test_attention_placement)
    return quantize_model(bert_encoder(gelu=gelu), amax, QuantizeConfig(**options))


def _axis(node: onnx.NodeProto) -> int | None:
    return next((a.i for a in node.attribute if a.name == "axis"), None)


def _inits(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def test_exactly_the_documented_tensors_get_one_pair_each(amax):
    result = _quantize(amax)
    q = qdq_nodes(result.model)
    assert set(q) == ACTIVATIONS | WEIGHTS
    assert all(len(nodes) == 1 for nodes in q.values())  # rule 7: shared by the Q/K/V MatMuls
    quantized = {n.name: n.op_type for n in result.report.quantized}
    assert sorted(quantized.values()).count("MatMul") == 6 * LAYERS + 2 * LAYERS + 2  # linears, QK^T, PV, head
    assert "Add" not in quantized.values()


def test_weights_are_per_channel_over_the_output_axis(amax):
    """MatMul B[K, N]: axis 1 (always written), one scale per output column = max |B[:, n]| / 127."""
    model = _quantize(amax).model
    inits = _inits(model)
    for weight in WEIGHTS:
        (q,) = qdq_nodes(model)[weight]
        assert _axis(q) == 1, weight
        np.testing.assert_allclose(inits[q.input[1]], np.abs(inits[weight]).max(axis=0) / 127, rtol=1e-6)


def test_attention_matmuls_quantize_both_activations_per_tensor(amax):
    model = _quantize(amax).model
    inits = _inits(model)
    for i in range(LAYERS):
        a = f"layer{i}.attention"
        assert dq_inputs_of(model, f"{a}.qk") == [f"{a}.q.transpose", f"{a}.k.transpose"]
        assert dq_inputs_of(model, f"{a}.pv") == [f"{a}.softmax", f"{a}.v.transpose"]
        for tensor in (f"{a}.q.transpose", f"{a}.k.transpose", f"{a}.softmax", f"{a}.v.transpose"):
            (q,) = qdq_nodes(model)[tensor]
            scale = inits[q.input[1]]
            assert _axis(q) is None and scale.shape == ()
            assert float(scale) == pytest.approx(amax[tensor] / 127, rel=1e-6)


def test_residual_adds_before_layernorm_and_bias_adds_get_no_pair(amax):
    result = _quantize(amax)
    model = result.model
    residual = {f"layer{i}.{part}.residual" for i in range(LAYERS) for part in ("attention", "ffn")}
    for i in range(LAYERS):
        for name in (f"layer{i}.attention.residual", f"layer{i}.ffn.residual"):
            assert dq_inputs_of(model, name) == [None, None]  # rule 11: the residual stream stays float
        for linear in LINEARS:
            assert dq_inputs_of(model, f"layer{i}.{linear}.out") == [None, None]  # bias Add, folded by TensorRT
    skipped = {s.name: s for s in result.report.skipped}
    assert set(skipped) == NON_RESIDUAL_ADDS | residual
    for name in residual:
        assert "residual Add before LayerNormalization" in skipped[name].reason
    assert not any(s.warning for s in skipped.values())
    assert "not a residual Add" in skipped["embeddings.sum"].reason
    for i in range(LAYERS):  # rule 10: the mask Add stays inside the fused attention
        assert "attention mask Add" in skipped[f"layer{i}.attention.mask_add"].reason
    for name in NON_RESIDUAL_ADDS:
        assert dq_inputs_of(model, name) == [None, None]


@pytest.mark.parametrize("gelu", ["erf", "op"])
def test_softmax_layernorm_and_gelu_stay_float(amax, gelu):
    """Rule 6: no Q/DQ around activations and normalizations; only MatMuls read a DQ (rule 11: not the
    residual Adds)."""
    model = _quantize(amax, gelu).model
    dq_outputs = {n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    readers = {n.op_type for n in model.graph.node if set(n.input) & dq_outputs}
    assert readers == {"MatMul"}
    ops = {n.op_type for n in model.graph.node}
    assert ("Gelu" in ops) == (gelu == "op") and ("Erf" in ops) == (gelu == "erf")
    for node in model.graph.node:
        if node.op_type in FLOAT_OPS:
            assert not set(node.input) & dq_outputs, node.name


def test_non_float_tensors_are_never_quantized_even_with_an_amax(amax):
    """A table that lists the int64 inputs (e.g. a foreign cache) changes nothing: they are not float."""
    model = bert_encoder()
    types = tensor_types(model)
    ints = [name for name, elem in types.items() if elem == TensorProto.INT64]
    assert set(ints) >= {"input_ids", "attention_mask", "embeddings.seq_len"}
    plain = _quantize(amax).model
    polluted = _quantize({**amax, **dict.fromkeys(ints, 5.0)}).model
    assert set(qdq_nodes(polluted)) == set(qdq_nodes(plain))
    assert not set(qdq_nodes(polluted)) & set(ints)


def test_fp8_places_the_same_pairs(amax):
    int8 = _quantize(amax).model
    fp8 = _quantize(amax, precision="fp8").model
    assert set(qdq_nodes(fp8)) == set(qdq_nodes(int8))
    zero_points = {n.input[2] for n in fp8.graph.node if n.op_type == "QuantizeLinear"}
    assert {t.data_type for t in fp8.graph.initializer if t.name in zero_points} == {TensorProto.FLOAT8E4M3FN}


def test_qdq_model_tracks_fp32_on_held_out_sentences_of_any_length(amax):
    """Sentences the ranges never saw, at 12 and 32 tokens: every output within 25 dB SQNR of FP32
    (the floor of tests/test_build_lm.py; with max-|x| ranges this model measures about 29-31 dB)."""
    fp32, qdq = session(bert_encoder()), session(_quantize(amax).model)
    texts = sentences()[64:96]
    for seq in (12, MAX_SEQ):
        feeds = _feeds(texts, seq)
        for name, ref, got in zip(("last_hidden_state", "pooled", "logits"), fp32.run(None, feeds),
                                  qdq.run(None, feeds), strict=True):
            assert sqnr_db(ref, got) > 25.0, (name, seq)
