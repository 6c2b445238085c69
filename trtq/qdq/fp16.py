"""Convert the non-quantized parts of a Q/DQ model to FP16 (TensorRT 11 strongly typed networks).

TensorRT 11 takes every precision from the ONNX types: an FP32 tensor runs in
FP32. To get FP16 for the layers that are not INT8/FP8, the model itself must
be FP16 (what ModelOpt's `high_precision_dtype="fp16"` does). This pass:

- converts FLOAT initializers and Constant values to FLOAT16 (clipped to +-65504),
  including the Q/DQ scales, so QuantizeLinear reads FP16 and DequantizeLinear
  writes FP16 (a DQ's output type is its scale's type; FP16 scales need opset 19);
- retargets Cast(to=FLOAT) and ConstantOfShape to FLOAT16;
- keeps the graph interface in FP32: a Cast after each float input and before
  each float output, so callers feed and read the same types as before;
- casts back to FP32 the few inputs ONNX requires in FP32 (Resize scales).

Limitation: every float op is converted; there is no range-based FP32 fallback
like ModelOpt's AutoCast. On the PP-OCRv4 detector a BatchNormalization reads
a conv output of ~2e4 and cancels catastrophically in FP16 (x - mean at FP16
spacing 16), so the FP16 model is inaccurate on ONNX Runtime CPU (plain FP16,
without any Q/DQ, gives the same ~2 dB SQNR). TensorRT folds BN into the
convolution before choosing precisions, so an engine may not suffer from it.

onnxruntime.transformers.float16.convert_float_to_float16 was tried first: it
leaves the graph-input Casts after their consumers (the model then fails the
ONNX checker's topological-order check), so trtq does its own, smaller pass.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from trtq.qdq.graph import GraphIndex, NameScope

# (op type, input index) that ONNX types as FP32 only.
_FLOAT32_ONLY = {("Resize", 2), ("Upsample", 1)}
_FP16_MAX = float(np.finfo(np.float16).max)


def convert_to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """Return `model` (modified in place) with its float internals in FP16 and FP32 inputs/outputs."""
    graph = model.graph
    index = GraphIndex.build(model)
    float_inputs = [i for i in index.graph_inputs if index.types.get(i) == TensorProto.FLOAT]
    float_outputs = [o.name for o in graph.output if index.types.get(o.name) == TensorProto.FLOAT]
    _convert_initializers(model)
    _convert_nodes(model)
    names = NameScope(model)
    front = [_cast_input(model, name, names) for name in float_inputs]
    back = [_cast_output(model, name, names) for name in float_outputs]
    nodes = front + list(graph.node) + back
    del graph.node[:]
    graph.node.extend(nodes)
    _keep_float32_inputs(model, names)
    del graph.value_info[:]  # stale FP32 types; ONNX Runtime and TensorRT infer them again
    return model


def _to_fp16(tensor: TensorProto) -> TensorProto:
    array = np.clip(numpy_helper.to_array(tensor), -_FP16_MAX, _FP16_MAX).astype(np.float16)
    return numpy_helper.from_array(array, tensor.name)


def _convert_initializers(model: onnx.ModelProto) -> None:
    graph = model.graph
    converted = []
    for tensor in graph.initializer:
        converted.append(_to_fp16(tensor) if tensor.data_type == TensorProto.FLOAT else tensor)
    names = {t.name for t in converted if t.data_type == TensorProto.FLOAT16}
    del graph.initializer[:]
    graph.initializer.extend(converted)
    # Old exporters list initializers as graph inputs; their declared FP32 type would now be wrong.
    inputs = [i for i in graph.input if i.name not in names]
    del graph.input[:]
    graph.input.extend(inputs)


def _convert_nodes(model: onnx.ModelProto) -> None:
    for node in model.graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.TENSOR and attr.t.data_type == TensorProto.FLOAT:
                attr.t.CopyFrom(_to_fp16(attr.t))
            elif node.op_type == "Cast" and attr.name == "to" and attr.i == TensorProto.FLOAT:
                attr.i = TensorProto.FLOAT16
        if node.op_type == "Constant":
            for attr in list(node.attribute):
                if attr.name in ("value_float", "value_floats"):
                    value = np.asarray(helper.get_attribute_value(attr), np.float32)
                    node.attribute.remove(attr)
                    node.attribute.append(helper.make_attribute("value", numpy_helper.from_array(
                        np.clip(value, -_FP16_MAX, _FP16_MAX).astype(np.float16))))


def _rename_uses(model: onnx.ModelProto, old: str, new: str) -> None:
    for node in model.graph.node:
        for j, name in enumerate(node.input):
            if name == old:
                node.input[j] = new


def _cast_input(model: onnx.ModelProto, name: str, names: NameScope) -> onnx.NodeProto:
    """Feed the FP32 graph input `name` to the graph as FP16."""
    fp16 = names.fresh(f"{name}_fp16")
    _rename_uses(model, name, fp16)
    return helper.make_node("Cast", [name], [fp16], name=names.fresh(f"{name}_to_fp16"), to=TensorProto.FLOAT16)


def _cast_output(model: onnx.ModelProto, name: str, names: NameScope) -> onnx.NodeProto:
    """Produce the graph output `name` in FP16 under a new name, then cast it back to FP32."""
    fp16 = names.fresh(f"{name}_fp16")
    for node in model.graph.node:
        for j, out in enumerate(node.output):
            if out == name:
                node.output[j] = fp16
    _rename_uses(model, name, fp16)
    return helper.make_node("Cast", [fp16], [name], name=names.fresh(f"{name}_to_fp32"), to=TensorProto.FLOAT)


def _keep_float32_inputs(model: onnx.ModelProto, names: NameScope) -> None:
    """Insert Cast(to=FLOAT) before inputs that ONNX types as FP32 only (e.g. Resize scales)."""
    graph = model.graph
    nodes: list[onnx.NodeProto] = []
    for node in graph.node:
        for j, name in enumerate(node.input):
            if name and (node.op_type, j) in _FLOAT32_ONLY:
                fp32 = names.fresh(f"{name}_fp32")
                nodes.append(helper.make_node("Cast", [name], [fp32], name=names.fresh(f"{name}_to_fp32"),
                                              to=TensorProto.FLOAT))
                node.input[j] = fp32
        nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
