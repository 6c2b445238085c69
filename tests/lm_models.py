"""A small BERT-like encoder built in code (onnx.helper, no torch) for the language-model tests.

Inputs: int64 `input_ids` and `attention_mask`, both [batch, seq] with dynamic batch and seq.
Token embedding (Gather) + position embedding (Slice of a table, Add), embedding LayerNorm, LAYERS
post-LN transformer layers (Q/K/V MatMul+Add, Reshape/Transpose to HEADS heads, Q@K^T, Div by
sqrt(head dim), additive mask, Softmax, P@V, output projection, residual Add, LayerNorm, FFN MatMul ->
Gelu in its Erf form -> MatMul, residual Add, LayerNorm), then a pooler on the first token (Tanh) and
a 2-class classifier head. Outputs: `last_hidden_state` [batch, seq, HIDDEN], `pooled` [batch, HIDDEN],
`logits` [batch, 2]. Opset 17 (LayerNormalization) with Gelu in the Erf form exporters write before
opset 20, or opset 20 with the Gelu op (`gelu="op"`). Weights are seeded Xavier-uniform, biases small,
so activations have a realistic spread.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from trtq.onnx_model.model import save_model

VOCAB = 1000
HIDDEN = 64
HEADS = 4
HEAD_DIM = HIDDEN // HEADS
FFN = 4 * HIDDEN
LAYERS = 2
MAX_SEQ = 32
CLASSES = 2
OPSET = 17
GELU_OPSET = 20  # first opset with a Gelu op
MASK_VALUE = -10000.0  # added to the scores of padded keys (BERT's extended attention mask)


class _Graph:
    """Collects nodes and seeded initializers while the encoder is written out."""

    def __init__(self, seed: int, gelu: str) -> None:
        self.rng = np.random.default_rng(seed)
        self.gelu_op = gelu == "op"
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []

    def const(self, name: str, value: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def xavier(self, name: str, fan_in: int, fan_out: int) -> str:
        limit = math.sqrt(6.0 / (fan_in + fan_out))
        return self.const(name, self.rng.uniform(-limit, limit, (fan_in, fan_out)).astype(np.float32))

    def bias(self, name: str, size: int) -> str:
        return self.const(name, self.rng.normal(0.0, 0.02, size).astype(np.float32))

    def node(self, op: str, inputs: list[str], output: str, **attrs) -> str:
        self.nodes.append(helper.make_node(op, inputs, [output], name=output, **attrs))
        return output

    def linear(self, x: str, name: str, fan_in: int, fan_out: int) -> str:
        """x @ W[fan_in, fan_out] + b: MatMul then a bias Add, as exporters write nn.Linear."""
        mm = self.node("MatMul", [x, self.xavier(f"{name}.weight", fan_in, fan_out)], f"{name}.matmul")
        return self.node("Add", [mm, self.bias(f"{name}.bias", fan_out)], f"{name}.out")

    def layer_norm(self, x: str, name: str) -> str:
        scale = self.const(f"{name}.weight", (1.0 + self.rng.normal(0.0, 0.05, HIDDEN)).astype(np.float32))
        return self.node("LayerNormalization", [x, scale, self.bias(f"{name}.bias", HIDDEN)], f"{name}.out",
                         axis=-1, epsilon=1e-12)

    def gelu(self, x: str, name: str) -> str:
        """0.5 * x * (1 + erf(x / sqrt 2)): the Gelu op, or the form torch.onnx writes before opset 20."""
        if self.gelu_op:
            return self.node("Gelu", [x], f"{name}.out")
        scaled = self.node("Div", [x, "const.sqrt2"], f"{name}.div")
        erf = self.node("Erf", [scaled], f"{name}.erf")
        one_plus = self.node("Add", [erf, "const.one"], f"{name}.add")
        mul = self.node("Mul", [x, one_plus], f"{name}.mul")
        return self.node("Mul", [mul, "const.half"], f"{name}.out")


def _heads(g: _Graph, x: str, name: str, perm: list[int]) -> str:
    """[B, S, HIDDEN] -> [B, S, HEADS, HEAD_DIM] -> transposed by `perm`."""
    split = g.node("Reshape", [x, "const.heads_shape"], f"{name}.reshape")
    return g.node("Transpose", [split], f"{name}.transpose", perm=perm)


def _attention(g: _Graph, x: str, mask: str, name: str) -> str:
    q = _heads(g, g.linear(x, f"{name}.query", HIDDEN, HIDDEN), f"{name}.q", [0, 2, 1, 3])  # [B, H, S, D]
    k = _heads(g, g.linear(x, f"{name}.key", HIDDEN, HIDDEN), f"{name}.k", [0, 2, 3, 1])  # [B, H, D, S]
    v = _heads(g, g.linear(x, f"{name}.value", HIDDEN, HIDDEN), f"{name}.v", [0, 2, 1, 3])  # [B, H, S, D]
    scores = g.node("MatMul", [q, k], f"{name}.qk")  # [B, H, S, S]
    scaled = g.node("Div", [scores, "const.sqrt_head_dim"], f"{name}.scale")
    masked = g.node("Add", [scaled, mask], f"{name}.mask_add")
    probs = g.node("Softmax", [masked], f"{name}.softmax", axis=-1)
    context = g.node("MatMul", [probs, v], f"{name}.pv")  # [B, H, S, D]
    merged = g.node("Transpose", [context], f"{name}.merge_transpose", perm=[0, 2, 1, 3])
    merged = g.node("Reshape", [merged, "const.hidden_shape"], f"{name}.merge_reshape")
    return g.linear(merged, f"{name}.output", HIDDEN, HIDDEN)


def _layer(g: _Graph, x: str, mask: str, name: str) -> str:
    attended = g.node("Add", [x, _attention(g, x, mask, f"{name}.attention")], f"{name}.attention.residual")
    x = g.layer_norm(attended, f"{name}.attention.norm")
    hidden = g.gelu(g.linear(x, f"{name}.ffn.in", HIDDEN, FFN), f"{name}.ffn.gelu")
    ffn_out = g.linear(hidden, f"{name}.ffn.out", FFN, HIDDEN)
    return g.layer_norm(g.node("Add", [x, ffn_out], f"{name}.ffn.residual"), f"{name}.ffn.norm")


def _shared_constants(g: _Graph) -> None:
    if not g.gelu_op:
        g.const("const.sqrt2", np.array(math.sqrt(2.0), np.float32))
        g.const("const.half", np.array(0.5, np.float32))
    g.const("const.one", np.array(1.0, np.float32))
    g.const("const.sqrt_head_dim", np.array(math.sqrt(HEAD_DIM), np.float32))
    g.const("const.mask_value", np.array(MASK_VALUE, np.float32))
    g.const("const.heads_shape", np.array([0, 0, HEADS, HEAD_DIM], np.int64))
    g.const("const.hidden_shape", np.array([0, 0, HIDDEN], np.int64))
    g.const("const.zero_1d", np.array([0], np.int64))
    g.const("const.first", np.array(0, np.int64))


def _embeddings(g: _Graph) -> tuple[str, str]:
    """Embedded tokens [B, S, HIDDEN] (normalized) and the additive mask [B, 1, 1, S]."""
    tokens = g.node("Gather", [g.const("embeddings.word", g.rng.normal(0, 0.5, (VOCAB, HIDDEN)).astype(np.float32)),
                               "input_ids"], "embeddings.tokens")
    seq = g.node("Shape", ["input_ids"], "embeddings.seq_len", start=1, end=2)
    table = g.const("embeddings.position", g.rng.normal(0, 0.5, (MAX_SEQ, HIDDEN)).astype(np.float32))
    positions = g.node("Slice", [table, "const.zero_1d", seq, "const.zero_1d"], "embeddings.positions")
    summed = g.node("Add", [tokens, positions], "embeddings.sum")
    x = g.layer_norm(summed, "embeddings.norm")
    mask = g.node("Cast", ["attention_mask"], "mask.float", to=TensorProto.FLOAT)
    inverted = g.node("Sub", ["const.one", mask], "mask.inverted")
    additive = g.node("Mul", [inverted, "const.mask_value"], "mask.additive")
    axes = g.const("const.mask_axes", np.array([1, 2], np.int64))
    return x, g.node("Unsqueeze", [additive, axes], "mask.extended")


def bert_encoder(seed: int = 0, gelu: str = "erf") -> onnx.ModelProto:
    """The encoder described in the module docstring, weights seeded by `seed`; `gelu` is "erf" or "op"."""
    if gelu not in ("erf", "op"):
        raise ValueError(f"gelu must be 'erf' or 'op', got {gelu!r}")
    g = _Graph(seed, gelu)
    _shared_constants(g)
    x, mask = _embeddings(g)
    for i in range(LAYERS):
        x = _layer(g, x, mask, f"layer{i}")
    g.node("Identity", [x], "last_hidden_state")
    first = g.node("Gather", [x, "const.first"], "pooler.first_token", axis=1)  # [B, HIDDEN]
    pooled = g.node("Tanh", [g.linear(first, "pooler.dense", HIDDEN, HIDDEN)], "pooled")
    g.node("Identity", [g.linear(pooled, "classifier", HIDDEN, CLASSES)], "logits")
    ids = [helper.make_tensor_value_info(name, TensorProto.INT64, ["batch", "seq"])
           for name in ("input_ids", "attention_mask")]
    outputs = [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["batch", "seq", HIDDEN]),
               helper.make_tensor_value_info("pooled", TensorProto.FLOAT, ["batch", HIDDEN]),
               helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", CLASSES])]
    graph = helper.make_graph(g.nodes, "bert_encoder", ids, outputs, g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", GELU_OPSET if g.gelu_op else OPSET)])
    model.ir_version = 10  # onnx writes 14; ONNX Runtime 1.31 reads <= 13
    onnx.checker.check_model(model, full_check=True)
    return model


def save_bert_encoder(path: Path, seed: int = 0, gelu: str = "erf") -> Path:
    """Build the encoder and write it with trtq.onnx_model.model.save_model (IR version ONNX Runtime reads)."""
    save_model(bert_encoder(seed, gelu), path)
    return path
