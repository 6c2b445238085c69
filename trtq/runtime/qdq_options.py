"""Running trtq's Q/DQ models on ONNX Runtime CPU (the accuracy path without a GPU).

ONNX Runtime's CPU provider executes INT8 and FP8 E4M3 QuantizeLinear/
DequantizeLinear (checked with onnxruntime 1.31). One catch for FP8: at graph
optimization level "extended" and above, ORT's QDQ propagation rewrites
`DQ -> MaxPool` so that MaxPool reads the FP8 tensor, and MaxPool has no FP8
kernel, so the session fails to load ("Type 'tensor(float8e4m3fn)' of input
parameter ... of operator (MaxPool) ... is invalid"). FP8 models must therefore
be run with the "basic" level, which keeps the Q/DQ nodes as written.
The same holds for Q/DQ with FP16 scales (trtq's --fp16 output): at "extended"
ORT fuses `DQ -> Concat -> Q` into its QLinearConcat, which accepts FP32
scales only.
"""

from __future__ import annotations

import onnx

from trtq.qdq.opset import FP8_TYPES


def uses_fp8(model: onnx.ModelProto) -> bool:
    """True if the model has FP8 zero points or weights (i.e. FP8 Q/DQ nodes)."""
    return any(t.data_type in FP8_TYPES for t in model.graph.initializer)


def has_fp16_scales(model: onnx.ModelProto) -> bool:
    """True if some QuantizeLinear/DequantizeLinear reads an FP16 scale initializer."""
    fp16 = {t.name for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT16}
    return any(n.op_type in ("QuantizeLinear", "DequantizeLinear") and len(n.input) > 1 and n.input[1] in fp16
               for n in model.graph.node)


def ort_optimization_level(model: onnx.ModelProto) -> str:
    """The highest ORT graph optimization level that runs `model` on CPU: "basic" for FP8 or FP16-scale
    Q/DQ models, else "all".

    Map it with `getattr(onnxruntime.GraphOptimizationLevel, {"basic": "ORT_ENABLE_BASIC",
    "all": "ORT_ENABLE_ALL"}[level])`.
    """
    return "basic" if uses_fp8(model) or has_fp16_scales(model) else "all"


# Session config entries for running a Q/DQ model as written (see the module docstring).
QDQ_SESSION_ENTRIES = {"session.disable_quant_qdq": "1"}
