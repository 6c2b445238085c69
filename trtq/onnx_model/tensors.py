"""Which tensors of a model trtq calibrates.

TensorRT may quantize any activation, so by default every float tensor that
flows between nodes (plus the graph inputs) gets statistics. The narrower
'quantizable' scope keeps only the inputs of ops TensorRT runs in INT8 and
that trtq's Q/DQ placement quantizes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import onnx

from trtq.onnx_model.masks import mask_tensors

# Ops whose inputs are quantized (docs/tensorrt.md §4; ModelOpt's INT8 op list).
QUANTIZABLE_OPS = frozenset({
    "Conv", "ConvTranspose", "Gemm", "MatMul", "Add", "AveragePool", "GlobalAveragePool",
    "MaxPool", "Concat", "Mul", "BatchNormalization", "Clip", "Resize",
})

_FLOAT_TYPES = frozenset({
    onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16, onnx.TensorProto.DOUBLE,
})


def constant_tensors(model: onnx.ModelProto) -> set[str]:
    """Initializers, Constant outputs and everything computed from constants only.

    Such tensors are weights, not activations: they need no calibration.
    """
    const = {t.name for t in model.graph.initializer}
    for node in model.graph.node:  # nodes are topologically sorted in valid ONNX
        inputs = [i for i in node.input if i]
        if node.op_type == "Constant" or (inputs and all(i in const for i in inputs)):
            const.update(o for o in node.output if o)
    return const


# Initializers with more elements than this are weights: shape inference needs their type and
# dims only. No shape function reads the values of a tensor this large (the inputs whose values
# decide a shape, Reshape's shape, Slice's starts, Resize's scales, Pad's pads, hold a few elements
# per dimension).
WEIGHT_ELEMENTS = 1024


def inferred_value_info(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    """The graph inputs, value_info and outputs of ONNX shape inference (strict_mode off) on `model`.

    onnx.shape_inference.infer_shapes serializes the whole model, weights included, to run its C++
    inference and parses the result back: about 1 s for the 90 MB all-MiniLM-L6-v2 on a 2-core
    machine, and calibration asked for it four times. Here it runs on a stand-in without the
    weights (each initializer above WEIGHT_ELEMENTS becomes a graph input of its type and dims),
    which gives the same types and shapes; the stand-in inputs are left out of the result. Models
    over 2 GiB with their weights in memory, which infer_shapes refuses, are inferred this way too.
    On a model shape inference cannot handle, what the model itself states.
    """
    stub, stand_ins = _without_weights(model)
    try:
        graph = onnx.shape_inference.infer_shapes(stub, strict_mode=False).graph
    except Exception:  # inference is a best effort; fall back to what the model states
        graph = model.graph
    return [vi for vi in (*graph.input, *graph.value_info, *graph.output) if vi.name not in stand_ins]


def _without_weights(model: onnx.ModelProto) -> tuple[onnx.ModelProto, set[str]]:
    """A copy of `model` whose large initializers are typed graph inputs instead, and their names."""
    stub = onnx.ModelProto(ir_version=model.ir_version, producer_name=model.producer_name)
    stub.opset_import.extend(model.opset_import)
    stub.functions.extend(model.functions)
    graph, source = stub.graph, model.graph
    graph.name = source.name
    for field in ("node", "input", "output", "value_info", "sparse_initializer"):
        getattr(graph, field).extend(getattr(source, field))
    inputs = {i.name for i in source.input}
    stand_ins: set[str] = set()
    for tensor in source.initializer:
        if math.prod(tensor.dims) <= WEIGHT_ELEMENTS:
            graph.initializer.append(tensor)
            continue
        if tensor.name not in inputs:  # IR < 4 lists initializers among the inputs already, with their type
            graph.input.append(onnx.helper.make_tensor_value_info(tensor.name, tensor.data_type, tensor.dims))
            stand_ins.add(tensor.name)
    return stub, stand_ins


def tensor_types(model: onnx.ModelProto) -> dict[str, int]:
    """Element type of every tensor that shape inference can type."""
    types = {}
    for vi in inferred_value_info(model):
        if vi.type.HasField("tensor_type"):
            types[vi.name] = vi.type.tensor_type.elem_type
    return types


def activation_tensors(model: onnx.ModelProto, scope: str = "all") -> list[str]:
    """Names of the tensors to calibrate, in graph order.

    Args:
        model: the FP32 model.
        scope: "all" (every float activation and graph input) or "quantizable"
            (only inputs of QUANTIZABLE_OPS).

    Tensors of unknown type are kept; collection skips non-float arrays at run time. Attention-mask
    tensors (trtq.onnx_model.masks: -inf or huge negative by construction) are left out: no scale can hold
    them and none is needed, they are never quantized.
    """
    if scope not in ("all", "quantizable"):
        raise ValueError(f"scope must be 'all' or 'quantizable', got {scope!r}")
    const = constant_tensors(model)
    types = tensor_types(model)
    masks = mask_tensors(model, const, types)
    wanted: set[str] | None = None
    if scope == "quantizable":
        wanted = {i for n in model.graph.node if n.op_type in QUANTIZABLE_OPS for i in n.input if i}

    ordered: list[str] = []
    seen: set[str] = set()
    initializers = {t.name for t in model.graph.initializer}
    candidates = [i.name for i in model.graph.input if i.name not in initializers]
    candidates += [o for n in model.graph.node for o in n.output if o]
    for name in candidates:
        if name in seen or name in const or name in masks:
            continue
        seen.add(name)
        elem = types.get(name)
        if elem is not None and elem not in _FLOAT_TYPES:
            continue
        if wanted is not None and name not in wanted:
            continue
        ordered.append(name)
    return ordered


def attention_masks(model: onnx.ModelProto) -> dict[str, str]:
    """The attention-mask tensors of `model` and their kind (trtq.onnx_model.masks), in graph order."""
    return mask_tensors(model, constant_tensors(model), tensor_types(model))



def conv_only_inputs(model: onnx.ModelProto) -> list[str]:
    """Graph inputs read only by Conv/ConvTranspose layers, as their data input (no normalizing op of
    the model's own in front of them): the inputs trtq.data.sanity checks for raw pixels."""
    weights = {t.name for t in model.graph.initializer}
    readers: dict[str, list[tuple[str, int]]] = {}
    for node in model.graph.node:
        for pos, name in enumerate(node.input):
            readers.setdefault(name, []).append((node.op_type, pos))
    return [i.name for i in model.graph.input if i.name not in weights and readers.get(i.name)
            and all(op in ("Conv", "ConvTranspose") and pos == 0 for op, pos in readers[i.name])]


def producer_names(model: onnx.ModelProto, tensors: Iterable[str]) -> dict[str, str]:
    """tensor -> name of the node producing it, for those of `tensors` a named node produces.

    Per-layer comparison measures tensors; fallback, sensitivity and --exclude-nodes name nodes:
    this maps the first onto the second, so that every report names a layer the same way.
    """
    wanted = set(tensors)
    return {output: node.name for node in model.graph.node if node.name
            for output in node.output if output in wanted}
