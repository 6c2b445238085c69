"""An FP32 model that computes what an FP16 TensorRT engine computes, to measure FP16 accuracy on CPU.

An FP16 engine stores weights and activations in FP16 and accumulates convolutions and matrix
products in FP32 on tensor cores; it folds BatchNorm into the convolution before choosing
precisions. trtq.qdq.fp16.convert_to_fp16 makes a real FP16 model for TensorRT 11, but on ONNX
Runtime CPU such a model runs every op in FP16, BatchNorm included (see that module: ~2 dB on the
PP-OCRv4 detector), which is not what the engine does. This simulation instead rounds to FP16 where
the engine stores FP16 and computes in FP32 elsewhere:

- every float weight of a Conv/ConvTranspose/Gemm/MatMul is rounded to the nearest FP16 value
  (clipped to +-65504), kept as FP32;
- every float activation read by those layers, and every float graph output, passes through
  Cast(FLOAT16) -> Cast(FLOAT) (round to nearest even, as FP16 storage does).

Not modelled: FP16 rounding inside fused elementwise chains and FP16 accumulation (TensorRT may pick
FP16-accumulating kernels), so the simulated SQNR is an upper bound that FP16 engines reach when
they accumulate in FP32.
"""

from __future__ import annotations

import copy

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from trtq.qdq.graph import NameScope, name_nodes

COMPUTE_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
_FP16_MAX = float(np.finfo(np.float16).max)


def _float_tensors(model: onnx.ModelProto) -> set[str]:
    inferred = onnx.shape_inference.infer_shapes(model)
    values = (*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output)
    return {v.name for v in values if v.type.tensor_type.elem_type == TensorProto.FLOAT}


def _round_weights(model: onnx.ModelProto, names: set[str]) -> None:
    for i, tensor in enumerate(model.graph.initializer):
        if tensor.name in names and tensor.data_type == TensorProto.FLOAT:
            array = numpy_helper.to_array(tensor)
            rounded = np.clip(array, -_FP16_MAX, _FP16_MAX).astype(np.float16).astype(np.float32)
            model.graph.initializer[i].CopyFrom(numpy_helper.from_array(rounded, tensor.name))


def _round_trip(tensor: str, names: NameScope) -> tuple[str, list[onnx.NodeProto]]:
    """(the rounded tensor's name, the two Cast nodes making it)."""
    half, back = names.fresh(f"{tensor}_fp16"), names.fresh(f"{tensor}_fp16_rounded")
    return back, [helper.make_node("Cast", [tensor], [half], name=names.fresh(f"{tensor}_to_fp16"),
                                   to=TensorProto.FLOAT16),
                  helper.make_node("Cast", [half], [back], name=names.fresh(f"{tensor}_from_fp16"),
                                   to=TensorProto.FLOAT)]


def simulate_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of `model` with FP16 storage rounding at compute-layer weights and inputs and at the outputs."""
    work = copy.deepcopy(model)
    name_nodes(work)
    floats = _float_tensors(work)
    weights = {t.name for t in work.graph.initializer}
    compute = [n for n in work.graph.node if n.op_type in COMPUTE_OPS]
    _round_weights(work, {t for n in compute for t in n.input if t in weights})
    names = NameScope(work)
    rounded: dict[str, str] = {}
    nodes: list[onnx.NodeProto] = []
    for node in work.graph.node:
        if node.op_type in COMPUTE_OPS:
            for i, tensor in enumerate(node.input):
                if tensor and tensor not in weights and tensor in floats:
                    if tensor not in rounded:
                        rounded[tensor], casts = _round_trip(tensor, names)
                        nodes.extend(casts)
                    node.input[i] = rounded[tensor]
        nodes.append(node)
    for output in work.graph.output:
        if output.name in floats:
            producer = next((n for n in nodes if output.name in n.output), None)
            if producer is None:
                continue
            raw = names.fresh(f"{output.name}_fp32")
            producer.output[list(producer.output).index(output.name)] = raw
            for n in nodes:  # other readers of the output keep reading the unrounded value
                n.input[:] = [raw if t == output.name else t for t in n.input]
            half = names.fresh(f"{output.name}_fp16")
            nodes += [helper.make_node("Cast", [raw], [half], name=names.fresh(f"{output.name}_to_fp16"),
                                       to=TensorProto.FLOAT16),
                      helper.make_node("Cast", [half], [output.name], name=names.fresh(f"{output.name}_from_fp16"),
                                       to=TensorProto.FLOAT)]
    del work.graph.node[:]
    work.graph.node.extend(nodes)
    return work
