"""Raising a model's default-domain opset so the Q/DQ nodes trtq writes are valid.

QuantizeLinear/DequantizeLinear exist since opset 10 (per-tensor INT8/UINT8),
take the `axis` attribute for per-channel scales since 13, FP8 types and FP16
scales since 19, INT4 and `block_size` since 21 (ONNX operator spec).

Bumping only the opset import is not enough: several ops changed signature on
the way (at 13 Split/Squeeze/Unsqueeze/ReduceSum moved attributes to inputs, at
18 the other Reduce* ops and Pad did). onnx's version converter rewrites those
nodes; it was checked on the PP-OCR detector/recognizer (opset 12) and the
direction classifier (opset 11): outputs after conversion to 13 and 19 match the
originals on ONNX Runtime CPU.
"""

from __future__ import annotations

import logging

import onnx
from onnx import version_converter

from trtq.errors import ModelError
from trtq.onnx_model.model import MAX_IR_VERSION, opset_version

log = logging.getLogger(__name__)

PER_CHANNEL_OPSET = 13
FP8_OPSET = 19
FP16_SCALE_OPSET = 19
INT4_OPSET = 21
# The FP8 element types a Q/DQ node may carry (zero points, pre-quantized weights).
FP8_TYPES = frozenset({
    onnx.TensorProto.FLOAT8E4M3FN, onnx.TensorProto.FLOAT8E4M3FNUZ,
    onnx.TensorProto.FLOAT8E5M2, onnx.TensorProto.FLOAT8E5M2FNUZ,
})


def ensure_opset(model: onnx.ModelProto, version: int) -> onnx.ModelProto:
    """`model` itself if its default-domain opset is >= `version`, else a converted copy.

    Raises:
        ModelError: the version converter cannot convert some node of the model.
    """
    current = opset_version(model)
    if current >= version:
        return model
    log.info("raising the model's opset from %d to %d for Q/DQ", current, version)
    try:
        converted = version_converter.convert_version(model, version)
    except Exception as exc:  # the converter raises RuntimeError/ValueError/C++ errors
        raise ModelError(
            f"cannot convert the model from opset {current} to {version} ({type(exc).__name__}: {exc})",
            hint=f"export the model at opset {version} or newer",
        ) from None
    set_ir_version(converted)
    return converted


def set_ir_version(model: onnx.ModelProto) -> None:
    """At least the IR version the opsets need (FP8 types need IR 9), at most what ONNX Runtime reads."""
    try:
        needed = onnx.helper.find_min_ir_version_for(list(model.opset_import), ignore_unknown=True)
    except Exception:  # unknown custom domains; keep what the model says
        needed = model.ir_version
    model.ir_version = min(max(model.ir_version, needed), MAX_IR_VERSION)
