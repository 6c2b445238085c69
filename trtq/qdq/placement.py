"""Where the Q/DQ pairs go: TensorRT's explicit-quantization placement rules.

TensorRT builds INT8/FP8 kernels from the Q/DQ nodes it finds: it propagates DQ
forward and Q backward through ops that commute with them, then fuses
`DQ -> op -> Q` patterns into quantized kernels. The rules below follow the
"Q/DQ layer-placement recommendations" of TensorRT's developer guide (Working
with Quantized Types > Explicit Quantization; docs/tensorrt.md §4, ref [30])
and what ModelOpt's ONNX INT8 mode does for TensorRT (docs/peers.md). Each rule, and
why:

1. Conv, ConvTranspose, Gemm, MatMul: quantize every data input, not the
   output. TensorRT picks an INT8 kernel only when both the activation and the
   weight arrive through DQ, and fuses those DQs into the kernel; an output
   Q/DQ is needed only where the next op consumes INT8, and that op's own input
   rule adds it ("quantize all inputs of weighted operations ... do not
   quantize their outputs by default").
   - Activations get one per-tensor scale: TensorRT supports per-channel scales
     on weights only.
   - A weight (initializer or Constant output) gets per-channel scales over the
     output channels, scale = max|w| over the channel / 127 (what TensorRT does
     for implicit INT8), with the `axis` attribute always written because
     TensorRT's ONNX parser defaults a missing axis to 0 where ONNX defaults to
     1: Conv W[K,C,kh,kw] axis 0; ConvTranspose W[Cin,Cout/g,...] axis 1;
     MatMul B[K,N] axis 1; Gemm B[N,K] (transB=1) axis 0, B[K,N] axis 1.
     Grouped ConvTranspose (group > 1) gets a per-tensor weight scale: its
     axis-1 channels are Cout/g per group, so per-output-channel is ambiguous.
     A weight that is neither 2-D (MatMul/Gemm) nor laid out as above (e.g. a
     3-D MatMul constant, or the A input) gets a per-tensor scale.
   - MatMul of two activations (attention Q@K^T, P@V): both per-tensor.
   - The node is quantized only if all its data inputs can be (an INT8 kernel
     needs both; a lone weight DQ would only cost accuracy). Biases stay float:
     TensorRT quantizes them itself from the input and weight scales.
2. Add: only a residual Add is quantized, and only its residual input: the
   input that does NOT come straight from a quantized Conv/ConvTranspose/Gemm/
   MatMul (possibly through a BatchNormalization or a bias Add with a constant,
   which TensorRT folds into the convolution/GEMM). TensorRT then fuses `conv + add(DQ(residual))` into one kernel
   ("quantize the residual input of Add so Conv+Add fuses"). If both inputs come
   from such convolutions, the one whose producer comes first in the graph (the
   shortcut) is quantized and the later one fuses. A fusing input must have the
   Add as its only consumer. Adds with a constant input (bias, hard-swish's +3)
   or of two plain activations stay float: there is nothing to fuse with.
3. AveragePool, GlobalAveragePool: quantize the input; TensorRT fuses
   `DQ -> pool -> Q` into an INT8 pool.
4. MaxPool: no pair. Q and DQ commute with MaxPool, so TensorRT moves them
   through it; a pair of its own would be redundant.
5. Concat: when its output is quantized (a quantized consumer reads it), all
   its inputs are quantized too, and the inputs and the output share one scale
   (the largest amax among them). With equal scales TensorRT moves the output Q
   back through the Concat and concatenates INT8 data (ModelOpt shares Concat
   scales the same way); unequal scales would force a requantization.
6. BatchNormalization, Relu and other activation functions: no Q/DQ around
   them. TensorRT folds BN into the preceding convolution and fuses the
   activation; a Q/DQ between them would split that fusion ("do not simulate
   batch-normalization and ReLU fusions").
7. One Q/DQ pair per tensor, shared by all its quantized consumers
   (ModelOpt's DedicatedQDQPair=False): duplicates would be separate layers to
   TensorRT. Consumers that are not quantized (or excluded) keep reading the
   float tensor.
8. Excluded nodes (by op type, name or regex) get no Q/DQ on their inputs and
   run in higher precision.
9. An activation with no amax in the table is left unquantized, and the nodes
   that needed it are reported as skipped with a warning.
10. Transformer attention, Q@K^T -> [scale] -> [+ mask] -> Softmax -> P@V
   (trtq.qdq.attention): both batched MatMuls are quantized as rule 1 says,
   each of their two activation inputs per tensor (Q and K^T; the Softmax
   output and V), and nothing in between: no Q/DQ on the scores, the scale, the
   mask bias, the masked scores or the Softmax input. This is the layout of
   TensorRT's fused multi-head attention (developer guide, "Fused Attention":
   BMM1 -> scale -> mask -> Softmax -> BMM2 becomes one kernel, which keeps the
   scores on chip) and what ModelOpt's INT8 ONNX mode places for TensorRT
   (modelopt.onnx.quantization: the MHA partition's MatMuls get Q/DQ inputs,
   `find_nodes_from_mha_to_exclude` leaves them in float only above sequence
   length 512, where TensorRT has no INT8 fused kernel; "the mask add of MHA
   should not be quantized"). That is what `--attention int8` places (INT8
   attention is the faster kernel up to length 512). The default,
   `--attention float`, leaves both BMMs without Q/DQ, so TensorRT runs the
   whole attention core in FP16 with --fp16 (its FP16 fused kernel, any
   length). Why: the BMMs are a small share of an encoder's arithmetic,
   2 L^2 H of 2 L^2 H + 12 L H^2 per layer (L/(6H): 2.8 % for H = 768 and
   L = 128), while quantizing them costs the most on hard inputs: the
   softmax output P is one-sided in [0, 1] and a diffuse row over 128
   tokens holds values near one INT8 step (1/127). On all-mpnet-base-v2
   (benchmarks/bench_lm.py, 200 held-out sentences) INT8 attention took
   the worst sentence's pooled cosine from 0.971 to 0.929, the mean from
   0.9892 to 0.9885 (all-MiniLM-L6-v2: 0.983 to 0.957). With
   `--attention int8`:
   - the mask Add is never a residual Add (rule 2), although its scores input
     comes straight from a quantized MatMul when the scale sits on Q and K
     (torch's scaled_dot_product_attention export): its other input is the
     -inf mask bias (trtq.onnx_model.masks), which no scale holds;
   - the two BMMs go together: when one is excluded, so is the other (a
     half-INT8 attention gets neither the INT8 nor the FP16 fused kernel, and
     the lone Q/DQ pairs only split it).
   `trtq lint` warns on Q/DQ between BMM1 and Softmax and on half-quantized
   attention (rules mha-scores-qdq, mha-half-quantized).
11. Transformer blocks otherwise follow rules 1, 2 and 6: the Q/K/V, output and
   FFN projections (MatMul/Gemm with a weight) get per-tensor activation and
   per-channel weight scales. A residual Add that feeds a LayerNormalization
   (projection + bias + shortcut, then LayerNorm) gets no pair: the residual
   stream stays float, as in SmoothQuant's own INT8 kernels (torch-int's
   dq_add_layernorm_q adds the dequantized GEMM output to a float residual and
   quantizes the LayerNorm output). The shortcut there is a LayerNorm output
   with outlier channels that one per-tensor scale cannot hold, and with
   SmoothQuant it is not the tensor the next projections read (they read x / s
   through a Mul), so its pair would not even be shared. Measured (benchmarks/
   bench_lm.py, 200 held-out sentences, every projection/FFN MatMul INT8):
   all-MiniLM-L6-v2 pooled cosine 0.9877 -> 0.9959 (worst 0.9499 -> 0.9596),
   all-mpnet-base-v2 0.9615 -> 0.9885 (worst 0.8800 -> 0.9152) against rule 2's
   quantized shortcut. LayerNormalization, Softmax,
   Gelu/Erf, Where, Cast, Tanh and all integer shape arithmetic (Shape, Gather
   of shapes, Concat of int64 sizes, Range) stay in float or integer: they are
   not in ModelOpt's INT8 op list (docs/tensorrt.md §4), ModelOpt keeps
   LayerNorm and GELU partitions unquantized, and rule 1's type check refuses
   non-float tensors.
"""

from __future__ import annotations

import difflib
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import onnx

from trtq.errors import ConfigError
from trtq.qdq.attention import find_attention
from trtq.qdq.graph import GraphIndex, Use

if TYPE_CHECKING:
    from trtq.config import QuantizeConfig

FLOAT_ATTENTION = "attention MatMul: left float"  # the skip reason of --attention float (rule 10)

log = logging.getLogger(__name__)

WEIGHTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
POOL_OPS = ("AveragePool", "GlobalAveragePool")
FLOAT_TYPES = frozenset({
    onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16, onnx.TensorProto.DOUBLE,
})


@dataclass(frozen=True)
class WeightKey:
    """A constant quantized with its own Q/DQ: tensor name and per-channel axis (None: per-tensor)."""

    tensor: str
    axis: int | None


@dataclass(frozen=True)
class QuantizedNode:
    """A node whose inputs got Q/DQ: its name, op type and the quantized input tensors."""

    name: str
    op_type: str
    inputs: tuple[str, ...]


@dataclass(frozen=True)
class SkippedNode:
    """A quantization candidate left in float, with why; `warning` marks what the user should look at."""

    name: str
    op_type: str
    reason: str
    warning: bool = False


@dataclass
class Placement:
    """The plan: which tensor is read through a DQ by which node input.

    Attributes:
        activations: activation tensor -> the uses rewired to its DQ output.
        weights: constant (and axis) -> the uses rewired to its DQ output.
        amax: symmetric amax of each quantized activation, after Concat scale sharing.
        quantized: nodes that got Q/DQ inputs, in graph order of planning.
        skipped: candidate nodes left in float, with the reason.
    """

    activations: dict[str, list[Use]] = field(default_factory=dict)
    weights: dict[WeightKey, list[Use]] = field(default_factory=dict)
    amax: dict[str, float] = field(default_factory=dict)
    quantized: list[QuantizedNode] = field(default_factory=list)
    skipped: list[SkippedNode] = field(default_factory=list)

    @property
    def per_channel(self) -> bool:
        """True when some weight has a per-channel scale (needs opset 13)."""
        return any(key.axis is not None for key in self.weights)


class Exclusions:
    """Which nodes stay in higher precision (QuantizeConfig exclude_op_types/exclude_nodes/exclude_regex).

    Raises:
        ConfigError: the regex does not compile, or a named node is not in the model.
    """

    def __init__(self, op_types: Iterable[str] = (), nodes: Iterable[str] = (), regex: str | None = None,
                 model: onnx.ModelProto | None = None, attention: str = "int8") -> None:
        self.op_types = set(op_types)
        self.nodes = set(nodes)
        self.attention = attention  # "float": rule 10's attention MatMuls get no Q/DQ
        try:
            self.regex = re.compile(regex) if regex else None
        except re.error as exc:
            raise ConfigError(f"--exclude-regex {regex!r} is not a valid regular expression ({exc})",
                              hint="use Python regex syntax, e.g. 'head|/decoder/.*'") from None
        if model is not None:
            self._check_names(model)

    def _check_names(self, model: onnx.ModelProto) -> None:
        names = [n.name for n in model.graph.node]
        for name in sorted(self.nodes - set(names)):
            close = difflib.get_close_matches(name, names, n=1)
            hint = f"did you mean '{close[0]}'?" if close else "list node names with a model viewer (e.g. Netron)"
            raise ConfigError(f"--exclude-nodes names '{name}', which is not a node of the model", hint=hint)
        present = sorted({n.op_type for n in model.graph.node})
        for op_type in sorted(self.op_types - set(present)):
            # A warning, not an error: one exclusion list (a preset) may serve several models.
            close = difflib.get_close_matches(op_type, present, n=1)
            log.warning("--exclude-op-types: the model has no %s node%s", op_type,
                        f" (did you mean '{close[0]}'?)" if close else "")

    @classmethod
    def from_options(cls, options: QuantizeConfig, model: onnx.ModelProto | None = None) -> Exclusions:
        """The exclusions the quantize options ask for (checked against `model` when given)."""
        return cls(options.exclude_op_types, options.exclude_nodes, options.exclude_regex, model,
                   options.attention)

    def reason(self, node: onnx.NodeProto) -> str | None:
        """Why `node` is excluded, or None."""
        if node.op_type in self.op_types:
            return f"excluded by --exclude-op-types ({node.op_type})"
        if node.name in self.nodes:
            return "excluded by --exclude-nodes"
        if self.regex is not None and self.regex.search(node.name):
            return f"excluded by --exclude-regex ({self.regex.pattern})"
        return None


def place(index: GraphIndex, amax: Mapping[str, float], exclusions: Exclusions) -> Placement:
    """Plan the Q/DQ placement of `index.model` (rules in the module docstring).

    Args:
        index: index of the (copied) model.
        amax: activation tensor name -> symmetric amax (max |x| the scale must cover).
        exclusions: nodes to keep in higher precision.
    """
    return _Planner(index, amax, exclusions).run()


class _Planner:
    def __init__(self, index: GraphIndex, amax: Mapping[str, float], exclusions: Exclusions) -> None:
        self.index = index
        self.amax = amax
        self.exclusions = exclusions
        self.plan = Placement()
        self.weighted: set[int] = set()  # indices of quantized Conv/ConvTranspose/Gemm/MatMul nodes
        self._parent: dict[str, str] = {}  # union-find over tensors sharing a scale (Concat)
        attention = find_attention(index)
        self.mask_adds = {add for a in attention for add in a.bias_adds}
        self.bmm_partner = {a.bmm1: a.bmm2 for a in attention} | {a.bmm2: a.bmm1 for a in attention}

    def run(self) -> Placement:
        nodes = list(enumerate(self.index.model.graph.node))
        for i, node in nodes:
            if node.op_type in WEIGHTED_OPS and _default_domain(node):
                self._weighted(i, node)
        for i, node in nodes:
            if node.op_type in POOL_OPS and _default_domain(node):
                self._pool(i, node)
            elif node.op_type == "Add" and _default_domain(node):
                self._residual_add(i, node)
        for i, node in reversed(nodes):  # reverse: a Concat feeding a Concat is reached after its consumer
            if node.op_type == "Concat" and _default_domain(node):
                self._concat(i, node)
        self._share_scales()
        return self.plan

    # ---- rule 1: weighted ops
    def _weighted(self, i: int, node: onnx.NodeProto) -> None:
        if self._skip_excluded(node):
            return
        partner = self.bmm_partner.get(i)
        if partner is not None and self.exclusions.attention == "float":
            return self._skip(node, f"{FLOAT_ATTENTION}, FP16 with --fp16 (rule 10; --attention int8 quantizes it)")
        if partner is not None and self.exclusions.reason(self.index.node(partner)):
            name = self.index.node(partner).name
            return self._skip(node, f"the other MatMul of its attention, '{name}', is excluded (rule 10)")
        acts: list[tuple[str, Use]] = []
        weights: list[tuple[WeightKey, Use]] = []
        for pos in (0, 1):
            tensor = node.input[pos] if pos < len(node.input) else ""
            problem = self._input_problem(tensor)
            if problem:
                return self._skip(node, problem, warning=True)
            if self.index.is_constant(tensor):
                rank = self.index.constant_rank(tensor)  # the values are read only when the Q/DQ nodes are written
                if rank is None:
                    return self._skip(node, f"weight '{tensor}' is computed from constants, not stored; fold "
                                            "constants first (polygraphy surgeon sanitize --fold-constants)", True)
                weights.append((WeightKey(tensor, _weight_axis(node, pos, rank)), (i, pos)))
            elif tensor not in self.amax:
                return self._skip(node, f"no amax for input '{tensor}'", warning=True)
            else:
                acts.append((tensor, (i, pos)))
        for tensor, use in acts:
            self._use_activation(tensor, use)
        for key, use in weights:
            self.plan.weights.setdefault(key, []).append(use)
        self.weighted.add(i)
        self.plan.quantized.append(QuantizedNode(node.name, node.op_type, tuple(node.input[:2])))

    # ---- rule 3: pools
    def _pool(self, i: int, node: onnx.NodeProto) -> None:
        if self._skip_excluded(node):
            return
        tensor = node.input[0]
        problem = self._input_problem(tensor) or self._activation_problem(tensor)
        if problem:
            return self._skip(node, problem, warning=True)
        self._use_activation(tensor, (i, 0))
        self.plan.quantized.append(QuantizedNode(node.name, node.op_type, (tensor,)))

    # ---- rule 2: residual Add
    def _residual_add(self, i: int, node: onnx.NodeProto) -> None:
        if self._skip_excluded(node):
            return
        if i in self.mask_adds:
            return self._skip(node, "attention mask Add: stays float inside TensorRT's fused attention (rule 10)")
        inputs = list(node.input)
        if any(self.index.is_constant(t) for t in inputs):
            return  # a bias or offset Add: not a quantization candidate, not worth a report line
        fusing = [self._fusing_producer(t) for t in inputs]
        if all(f is None for f in fusing):
            return self._skip(node, "not a residual Add: no input comes straight from a quantized "
                                    "Conv/ConvTranspose/Gemm/MatMul")
        if any(c.op_type == "LayerNormalization" for c in self.index.consumer_nodes(node.output[0])):
            return self._skip(node, "residual Add before LayerNormalization: the residual stream stays float (rule 11)")
        if fusing[0] is not None and fusing[1] is not None:
            pos = 0 if fusing[0] < fusing[1] else 1  # quantize the shortcut (earlier producer); the later fuses
        else:
            pos = 0 if fusing[0] is None else 1
        tensor = inputs[pos]
        problem = self._input_problem(tensor) or self._activation_problem(tensor)
        if problem:
            return self._skip(node, problem, warning=True)
        self._use_activation(tensor, (i, pos))
        self.plan.quantized.append(QuantizedNode(node.name, node.op_type, (tensor,)))

    def _fusing_producer(self, tensor: str) -> int | None:
        """Index of the quantized weighted node `tensor` comes straight from (BN folded), if it can fuse."""
        if len(self.index.consumers.get(tensor, [])) != 1 or tensor in self.index.graph_outputs:
            return None
        p = self.index.producer.get(tensor)
        if p is None:
            return None
        node = self.index.node(p)
        if node.op_type == "BatchNormalization":
            return self._fusing_producer(node.input[0])
        if node.op_type == "Add":
            # A bias Add (one constant input) folds into the GEMM/conv epilogue like a bias.
            inputs = list(node.input)
            const = [t for t in inputs if self.index.is_constant(t)]
            if len(const) == 1:
                return self._fusing_producer(inputs[1 - inputs.index(const[0])])
        return p if p in self.weighted else None

    # ---- rule 5: Concat
    def _concat(self, i: int, node: onnx.NodeProto) -> None:
        out = node.output[0]
        if out not in self.plan.activations or self._skip_excluded(node):
            return
        for tensor in node.input:
            problem = self._input_problem(tensor) or self._activation_problem(tensor)
            if problem:
                return self._skip(node, f"{problem}; the Concat stays float, only its output is quantized",
                                  warning=not self.index.is_constant(tensor))
        for pos, tensor in enumerate(node.input):
            self._use_activation(tensor, (i, pos))
            self._union(out, tensor)
        self.plan.quantized.append(QuantizedNode(node.name, node.op_type, tuple(node.input)))

    def _union(self, a: str, b: str) -> None:
        ra, rb = self._find(a), self._find(b)
        if ra != rb:
            self._parent[rb] = ra

    def _find(self, t: str) -> str:
        while self._parent.get(t, t) != t:
            t = self._parent[t]
        return t

    def _share_scales(self) -> None:
        groups: dict[str, float] = {}
        for tensor in self.plan.activations:
            root = self._find(tensor)
            groups[root] = max(groups.get(root, 0.0), float(self.amax[tensor]))
        self.plan.amax = {t: groups[self._find(t)] for t in self.plan.activations}

    # ---- helpers
    def _use_activation(self, tensor: str, use: Use) -> None:
        uses = self.plan.activations.setdefault(tensor, [])
        if use not in uses:
            uses.append(use)

    def _input_problem(self, tensor: str) -> str | None:
        if not tensor:
            return "an input is missing"
        elem = self.index.types.get(tensor)
        if elem is not None and elem not in FLOAT_TYPES:
            return f"input '{tensor}' is {onnx.TensorProto.DataType.Name(elem)}, not a float tensor"
        return None

    def _activation_problem(self, tensor: str) -> str | None:
        if self.index.is_constant(tensor):
            return f"input '{tensor}' is a constant"
        if tensor not in self.amax:
            return f"no amax for input '{tensor}'"
        return None

    def _skip_excluded(self, node: onnx.NodeProto) -> bool:
        reason = self.exclusions.reason(node)
        if reason:
            self._skip(node, reason)
        return reason is not None

    def _skip(self, node: onnx.NodeProto, reason: str, warning: bool = False) -> None:
        self.plan.skipped.append(SkippedNode(node.name, node.op_type, reason, warning))


def _default_domain(node: onnx.NodeProto) -> bool:
    return node.domain in ("", "ai.onnx")


def _attr(node: onnx.NodeProto, name: str, default: int) -> int:
    for attr in node.attribute:
        if attr.name == name:
            return int(onnx.helper.get_attribute_value(attr))
    return default


def _weight_axis(node: onnx.NodeProto, pos: int, rank: int) -> int | None:
    """Per-channel axis (output channels) of the constant at input `pos`, or None for per-tensor."""
    if pos != 1:
        return None
    op = node.op_type
    if op == "Conv" and rank >= 3:
        return 0
    if op == "ConvTranspose" and rank >= 3:
        return 1 if _attr(node, "group", 1) == 1 else None
    if op == "Gemm" and rank == 2:
        return 0 if _attr(node, "transB", 0) else 1
    if op == "MatMul" and rank == 2:
        return 1
    return None


def planned_activations(model: onnx.ModelProto) -> set[str]:
    """The activations the rules above give a Q/DQ pair when every float tensor has a range.

    Calibration needs finite statistics for these only (trtq.calibration.collect): any other tensor may hold the
    -inf of an attention mask.
    """
    index = GraphIndex.build(model)
    tensors = [*index.graph_inputs, *(o for node in model.graph.node for o in node.output if o)]
    every = {t: 1.0 for t in tensors if index.types.get(t, onnx.TensorProto.FLOAT) in FLOAT_TYPES}
    return set(place(index, every, Exclusions()).activations)

