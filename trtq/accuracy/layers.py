"""Which intermediate tensors a per-layer comparison marks as outputs in both models.

trtq's quantizer keeps the FP32 activation names: a quantized Conv still writes
its original output tensor, and only the Q/DQ nodes add new names. So a layer
of the candidate is matched to the reference by the name of its output tensor.
"""

from __future__ import annotations

import onnx

from trtq.onnx_model.tensors import QUANTIZABLE_OPS, constant_tensors

_QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear"})


def _produced(model: onnx.ModelProto) -> set[str]:
    """Non-constant tensors written by a node of the main graph."""
    const = constant_tensors(model)
    return {o for n in model.graph.node if n.op_type != "Constant" for o in n.output if o and o not in const}


def layer_tensors(reference: onnx.ModelProto, candidate: onnx.ModelProto) -> list[tuple[str, str]]:
    """(tensor name, producing op type) of the candidate's quantized layer outputs found in the reference.

    A quantized layer is a node reading a DequantizeLinear output. When the candidate has no
    Q/DQ nodes (an FP16 or FP32 candidate), the outputs of every op TensorRT could quantize
    (trtq.onnx_model.tensors.QUANTIZABLE_OPS) are used instead. Graph order; op types from the candidate.
    """
    shared = _produced(reference) & _produced(candidate)
    dq_outputs = {o for n in candidate.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    quantized = [n for n in candidate.graph.node
                 if n.op_type not in _QDQ_OPS and any(i in dq_outputs for i in n.input)]
    nodes = quantized or [n for n in candidate.graph.node if n.op_type in QUANTIZABLE_OPS]
    seen: set[str] = set()
    tensors = []
    for node in nodes:
        for name in node.output:
            if name in shared and name not in seen:
                seen.add(name)
                tensors.append((name, node.op_type))
    return tensors
