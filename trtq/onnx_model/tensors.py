"""Which tensors of a model trtq calibrates.

TensorRT may quantize any activation, so by default every float tensor that
flows between nodes (plus the graph inputs) gets statistics. The narrower
'quantizable' scope keeps only the inputs of ops TensorRT runs in INT8 and
that trtq's Q/DQ placement quantizes.
"""

from __future__ import annotations

import onnx

# Ops whose inputs are quantized (TENSORRT.md section 4; ModelOpt's INT8 op list).
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


def tensor_types(model: onnx.ModelProto) -> dict[str, int]:
    """Element type of every tensor that shape inference can type."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    except Exception:  # inference is a best effort; fall back to what the model states
        inferred = model
    graph = inferred.graph
    types = {}
    for vi in (*graph.input, *graph.value_info, *graph.output):
        if vi.type.HasField("tensor_type"):
            types[vi.name] = vi.type.tensor_type.elem_type
    return types


def activation_tensors(model: onnx.ModelProto, scope: str = "all") -> list[str]:
    """Names of the tensors to calibrate, in graph order.

    Args:
        model: the FP32 model.
        scope: "all" (every float activation and graph input) or "quantizable"
            (only inputs of QUANTIZABLE_OPS).

    Tensors of unknown type are kept; collection skips non-float arrays at run time.
    """
    if scope not in ("all", "quantizable"):
        raise ValueError(f"scope must be 'all' or 'quantizable', got {scope!r}")
    const = constant_tensors(model)
    types = tensor_types(model)
    wanted: set[str] | None = None
    if scope == "quantizable":
        wanted = {i for n in model.graph.node if n.op_type in QUANTIZABLE_OPS for i in n.input if i}

    ordered: list[str] = []
    seen: set[str] = set()
    initializers = {t.name for t in model.graph.initializer}
    candidates = [i.name for i in model.graph.input if i.name not in initializers]
    candidates += [o for n in model.graph.node for o in n.output if o]
    for name in candidates:
        if name in seen or name in const:
            continue
        seen.add(name)
        elem = types.get(name)
        if elem is not None and elem not in _FLOAT_TYPES:
            continue
        if wanted is not None and name not in wanted:
            continue
        ordered.append(name)
    return ordered
