"""Views of a Q/DQ model for measuring its layers: partly quantized copies and the probe model.

A quantized layer is a node that reads a DequantizeLinear output. Its float source is the
tensor the matching QuantizeLinear reads, so a layer can be switched back to float by
rewiring its inputs from the DQ outputs to those sources.

- `only_layers(qdq, keep)`: only the layers in `keep` read Q/DQ inputs.
- `probe_model(qdq)`: every layer reads float inputs, so the main path computes the FP32
  model, and next to each layer sits a copy of it (its "probe") reading the Q/DQ inputs.
  One run then gives, for every layer at once, its FP32 output and its output with only
  its own inputs quantized: the error the layer adds by itself, on FP32 activations.

Pre-quantized INT8 weights (QuantizeConfig.weights = "int8") have a DQ but no Q, hence no
float source; layers reading them keep that DQ in every view.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import onnx

from trtq.accuracy.metrics import sqnr_from_sums
from trtq.onnx_model.large_models import drop_initializers
from trtq.qdq.graph import NameScope
from trtq.qdq.insert import names_read

QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear"})


def quantized_layers(qdq_model: onnx.ModelProto) -> list[tuple[str, str]]:
    """(node name, op type) of every node reading a DequantizeLinear output, in graph order."""
    dq_outputs = {o for n in qdq_model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    return [(n.name, n.op_type) for n in qdq_model.graph.node
            if n.op_type not in QDQ_OPS and any(i in dq_outputs for i in n.input)]


def float_sources(model: onnx.ModelProto) -> dict[str, str]:
    """DQ output -> the float tensor its QuantizeLinear read (Q -> DQ pairs only)."""
    producers = {o: n for n in model.graph.node for o in n.output}
    sources = {}
    for node in model.graph.node:
        if node.op_type == "DequantizeLinear":
            q = producers.get(node.input[0])
            if q is not None and q.op_type == "QuantizeLinear":
                sources[node.output[0]] = q.input[0]
    return sources


def only_layers(qdq_model: onnx.ModelProto, keep: Iterable[str]) -> onnx.ModelProto:
    """A copy of `qdq_model` where only the layers named in `keep` read Q/DQ inputs.

    Every other layer reads the float tensors its Q/DQ pairs were fed, and the Q/DQ nodes
    nobody reads any more are dropped (with their initializers).
    """
    work = _copy(qdq_model)
    keep = set(keep)
    sources = float_sources(work)
    for node in work.graph.node:
        if node.op_type not in QDQ_OPS and node.name not in keep:
            _rewire(node, sources)
    _drop_dead_qdq(work)
    return work


def probe_model(qdq_model: onnx.ModelProto, layers: Iterable[str] | None = None
                ) -> tuple[onnx.ModelProto, dict[str, tuple[str, str]]]:
    """The probe model (module docstring) and, per probed layer, (its float output, its probe's output).

    Args:
        qdq_model: the Q/DQ model (left unchanged).
        layers: names of the layers to probe (default: every quantized layer with a float source).
            The other layers only read float inputs.
    """
    work = _copy(qdq_model)
    sources = float_sources(work)
    names = NameScope(work)
    wanted = {name for name, _ in quantized_layers(work)} if layers is None else set(layers)
    pairs: dict[str, tuple[str, str]] = {}
    nodes: list[onnx.NodeProto] = []
    for node in work.graph.node:
        nodes.append(node)
        if node.op_type in QDQ_OPS or not any(i in sources for i in node.input):
            continue
        if node.name in wanted:
            probe = onnx.NodeProto()
            probe.CopyFrom(node)
            probe.name = names.fresh(f"{node.name}_probe")
            del probe.output[:]
            probe.output.extend(names.fresh(f"{o}_probe") if o else "" for o in node.output)
            nodes.append(probe)
            pairs[node.name] = (node.output[0], probe.output[0])
        _rewire(node, sources)
    del work.graph.node[:]
    work.graph.node.extend(nodes)
    _drop_dead_qdq(work)
    return work, pairs


@dataclass
class SqnrSums:
    """Signal and noise energy of a (reference, test) tensor pair over batches, for an SQNR in dB.

    Float32 dot products per batch, float64 across batches: leaner than ErrorSums for the
    many large tensors of a probe run. Non-finite elements are left out.
    """

    signal: float = 0.0
    noise: float = 0.0

    def update(self, ref: np.ndarray, test: np.ndarray) -> None:
        r = np.asarray(ref, dtype=np.float32).ravel()
        d = np.asarray(test, dtype=np.float32).ravel() - r
        signal, noise = float(np.dot(r, r)), float(np.dot(d, d))
        if not (np.isfinite(signal) and np.isfinite(noise)):
            finite = np.isfinite(r) & np.isfinite(d)
            r64, d64 = r[finite].astype(np.float64), d[finite].astype(np.float64)
            signal, noise = float(np.dot(r64, r64)), float(np.dot(d64, d64))
        self.signal += signal
        self.noise += noise

    @property
    def sqnr_db(self) -> float:
        return sqnr_from_sums(self.signal, self.noise)


def _copy(model: onnx.ModelProto) -> onnx.ModelProto:
    work = onnx.ModelProto()
    work.CopyFrom(model)
    return work


def _rewire(node: onnx.NodeProto, sources: Mapping[str, str]) -> None:
    for j, name in enumerate(node.input):
        if name in sources:
            node.input[j] = sources[name]


def _drop_dead_qdq(model: onnx.ModelProto) -> None:
    """Remove Q/DQ nodes whose outputs nobody reads (repeated: a dead DQ makes its Q dead) and their
    scale/zero-point/weight initializers that nothing else reads."""
    graph = model.graph
    outputs = {o.name for o in graph.output}
    freed: set[str] = set()
    while True:
        read = names_read(graph) | outputs
        dead = {i for i, n in enumerate(graph.node)
                if n.op_type in QDQ_OPS and not any(o in read for o in n.output)}
        if not dead:
            break
        freed.update(t for i in dead for t in graph.node[i].input)
        keep = [n for i, n in enumerate(graph.node) if i not in dead]
        del graph.node[:]
        graph.node.extend(keep)
    unused = freed - names_read(graph) - outputs - {i.name for i in graph.input}
    if unused:
        drop_initializers(graph, unused)
