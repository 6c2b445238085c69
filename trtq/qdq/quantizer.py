"""FP32 ONNX model + activation amax table -> explicitly quantized (Q/DQ) ONNX model.

The steps: copy the model, plan the placement (trtq.qdq.placement), raise the
opset if the Q/DQ types need it (trtq.qdq.opset), insert the Q/DQ nodes
(trtq.qdq.insert), optionally convert the float parts to FP16 (trtq.qdq.fp16),
and check the result with the ONNX checker. The input model is never modified.

Scales are symmetric with zero point 0, as TensorRT requires:
activations scale = amax / 127 (INT8) or amax / 448 (FP8 E4M3), one per tensor;
weights scale = max|w| / 127 (or / 448) per output channel.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import onnx

from trtq.config import QuantizeConfig
from trtq.errors import CacheError, ConfigError, ModelError
from trtq.onnx_model.large_models import exceeds_protobuf_limit
from trtq.onnx_model.model import opset_version
from trtq.qdq.graph import GraphIndex, name_nodes
from trtq.qdq.insert import InsertOptions, insert_qdq
from trtq.qdq.opset import FP8_OPSET, FP16_SCALE_OPSET, PER_CHANNEL_OPSET, ensure_opset, set_ir_version
from trtq.qdq.placement import Exclusions, Placement, QuantizedNode, SkippedNode, place
from trtq.qdq.scales import QTYPES, QType

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class QuantizeReport:
    """What the quantizer did.

    Attributes:
        precision: "int8" or "fp8".
        opset: (default-domain opset before, after).
        quantized: nodes that read Q/DQ inputs, with the quantized input tensors.
        skipped: quantization candidates left in float, with the reason.
        activation_scales: quantized activation tensor -> its scale (amax / 127 or / 448).
        weights: number of weight tensors quantized.
        fp16: whether the float parts were converted to FP16.
    """

    precision: str
    opset: tuple[int, int]
    quantized: tuple[QuantizedNode, ...]
    skipped: tuple[SkippedNode, ...]
    activation_scales: dict[str, float] = field(default_factory=dict)
    weights: int = 0
    fp16: bool = False

    @property
    def warnings(self) -> list[str]:
        """One line per skipped node that the user should look at (e.g. a missing amax)."""
        return [f"{s.op_type} '{s.name}' left in float: {s.reason}" for s in self.skipped if s.warning]

    def summary(self) -> str:
        """A few human-readable lines."""
        before, after = self.opset
        lines = [
            f"{self.precision}: {len(self.quantized)} nodes quantized, {len(self.activation_scales)} activations "
            f"and {self.weights} weights with Q/DQ, {len(self.skipped)} candidates left in float",
        ]
        if after != before:
            lines.append(f"opset raised from {before} to {after}")
        lines.extend(f"warning: {w}" for w in self.warnings)
        return "\n".join(lines)


@dataclass(frozen=True)
class QuantizeResult:
    """The Q/DQ model and the report of what was quantized."""

    model: onnx.ModelProto
    report: QuantizeReport


def quantize_model(model: onnx.ModelProto, amax: Mapping[str, float],
                   options: QuantizeConfig | None = None, weights_dir: Path | None = None) -> QuantizeResult:
    """Insert Q/DQ nodes into a copy of `model` following TensorRT's placement rules.

    Args:
        model: the FP32 model (left unchanged).
        amax: activation tensor name -> symmetric amax (largest |x| the scale must cover),
            e.g. from a calibration table. Tensors not in the model are ignored.
        options: precision, exclusions, weight storage and FP16 settings.
        weights_dir: for a model loaded by reference (trtq.onnx_model.model.load_model_by_reference),
            the folder its external data is read from, one weight at a time; the result keeps
            referring to those files (save it with the same folder).

    Returns:
        The quantized model (ONNX-checked, IR version readable by ONNX Runtime) and a report.

    Raises:
        CacheError: an amax is negative, NaN or infinite.
        ConfigError: an option value is invalid (unknown precision, bad regex, unknown node name).
        ModelError: the model cannot be converted to the opset the Q/DQ nodes need.
    """
    options = options or QuantizeConfig()
    qtype = _qtype(options)
    _check_amax(amax)
    work = copy.deepcopy(model)
    name_nodes(work)
    exclusions = Exclusions.from_options(options, work)
    opset_before = opset_version(work)
    index = GraphIndex.build(work, weights_dir=weights_dir)
    placement = place(index, amax, exclusions)
    needed = _required_opset(placement, qtype, options.fp16)
    if opset_before < needed:
        work = ensure_opset(work, needed)
        index = GraphIndex.build(work, weights_dir=weights_dir)
        placement = place(index, amax, exclusions)
    scales = insert_qdq(index, placement, InsertOptions(qtype, options.weights, options.fp16, options.weight_clipping,
                                                        options.pow2))
    if options.fp16:
        from trtq.qdq.fp16 import convert_to_fp16

        work = convert_to_fp16(work)
    set_ir_version(work)
    _check(work, model)
    report = QuantizeReport(
        precision=qtype.name, opset=(opset_before, opset_version(work)),
        quantized=tuple(placement.quantized), skipped=tuple(placement.skipped),
        activation_scales=scales, weights=len(placement.weights), fp16=options.fp16,
    )
    for warning in report.warnings:
        log.warning(warning)
    return QuantizeResult(work, report)


def to_fp16_twin(qdq_model: onnx.ModelProto) -> onnx.ModelProto:
    """The FP16 variant of an FP32 Q/DQ model (what `fp16=True` would have produced), for models
    changed after quantization (bias correction) that cannot simply be quantized again."""
    work = ensure_opset(copy.deepcopy(qdq_model), FP16_SCALE_OPSET)
    from trtq.qdq.fp16 import convert_to_fp16

    work = convert_to_fp16(work)
    set_ir_version(work)
    return work


def _qtype(options: QuantizeConfig) -> QType:
    if options.precision not in QTYPES:
        raise ConfigError(f"precision {options.precision!r} is not supported", hint="use int8 or fp8")
    if options.weights not in ("qdq", "int8"):
        raise ConfigError(f"weights {options.weights!r} is not supported", hint="use qdq or int8")
    if options.pow2 and options.precision != "int8":
        raise ConfigError(f"--pow2 makes INT8 scales powers of two; precision {options.precision} has no such "
                          "fixed-point form", hint="use --precision int8 with --pow2")
    return QTYPES[options.precision]


def _check_amax(amax: Mapping[str, float]) -> None:
    for name, value in amax.items():
        try:
            ok = math.isfinite(float(value)) and float(value) >= 0
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise CacheError(f"amax of tensor '{name}' is {value!r}; it must be a finite number >= 0",
                             hint="recalibrate, or remove the tensor from the table to leave it in float")


def _required_opset(placement: Placement, qtype: QType, fp16: bool) -> int:
    needed = qtype.min_opset
    if placement.per_channel:
        needed = max(needed, PER_CHANNEL_OPSET)
    if fp16:
        needed = max(needed, FP16_SCALE_OPSET)
    if qtype.name == "fp8":
        needed = max(needed, FP8_OPSET)
    return needed


def _check(result: onnx.ModelProto, original: onnx.ModelProto) -> None:
    """Run the ONNX checker on the result; blame trtq only if the original model passes it."""
    if exceeds_protobuf_limit(result):
        return  # the in-memory checker cannot serialise > 2 GiB; save_model writes external data
    try:
        onnx.checker.check_model(result)
    except onnx.checker.ValidationError as exc:
        try:
            onnx.checker.check_model(original)
        except onnx.checker.ValidationError:
            log.warning("the input model already fails the ONNX checker; the Q/DQ model does too: %s", exc)
            return
        raise ModelError(f"the quantized model fails the ONNX checker: {exc}",
                         hint="please report this with the model; use --exclude-nodes on the node named") from None
