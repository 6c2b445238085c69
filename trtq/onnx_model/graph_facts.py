"""Facts about a graph's tensors that several modules need: which are constants, and their element types.

Kept apart from trtq.onnx_model.tensors so that trtq.onnx_model.masks can use them without a cycle.
"""

from __future__ import annotations

import onnx


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
