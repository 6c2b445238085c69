"""`--precision int4-weights`: the weight-only INT4 model of `trtq quantize` and `trtq build`.

Weight-only quantization needs no activation ranges, so there is no calibration pass and no
cache: `trtq quantize --precision int4-weights MODEL` rounds to nearest (RTN) from the weights
alone; `trtq build --precision int4-weights --calib DATA MODEL` can also search the block scales
and round with GPTQ (`--weight-rounding learned`, trtq.accuracy.int4_rounding) from the calibration
inputs, and then checks the model against FP32 on the held-out samples like any build.

    outcome = quantize_weight_only(model, config.quantize, calib_batches)
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx

from trtq.accuracy.evaluation import Batches
from trtq.accuracy.int4_rounding import Int4RoundingReport, gptq_integers
from trtq.atomic import check_writable
from trtq.config import Config, QuantizeConfig
from trtq.errors import ConfigError, ModelError
from trtq.onnx_model import model as model_io
from trtq.pipeline.quantize import default_qdq_path, save_qdq_model
from trtq.qdq.graph import name_nodes
from trtq.qdq.int4_weights import Int4Report, apply_int4, check_block_size, int4_targets, nearest_integers
from trtq.qdq.placement import Exclusions

log = logging.getLogger(__name__)

WEIGHT_ONLY = "int4-weights"


def is_weight_only(options: QuantizeConfig) -> bool:
    """Whether the precision is INT4 weight-only."""
    return options.precision == WEIGHT_ONLY


def uses_gptq(options: QuantizeConfig) -> bool:
    """Whether INT4 weights are rounded with GPTQ (--weight-rounding learned, not --fast)."""
    return options.weight_rounding == "learned" and not options.fast


@dataclass(frozen=True)
class WeightOnlyOutcome:
    """The INT4 weight-only model, what was quantized and, with GPTQ, what the rounding gained."""

    model: onnx.ModelProto
    report: Int4Report
    rounding: Int4RoundingReport | None = None

    def summaries(self) -> list[str]:
        return [self.report.summary()] + ([self.rounding.summary()] if self.rounding else [])

    def to_dict(self) -> dict[str, Any]:
        return {**self.report.to_dict(), "gptq": self.rounding.to_dict() if self.rounding else None}


def quantize_weight_only(model: onnx.ModelProto, options: QuantizeConfig,
                         calib: Batches | None = None) -> WeightOnlyOutcome:
    """Block-wise INT4 weights for every MatMul/Gemm that can take them (the model is not modified).

    Args:
        model: the FP32 model.
        options: block_size, weight_rounding (nearest: RTN; learned: GPTQ), exclusions.
        calib: calibration feed dicts, needed for GPTQ.

    Raises:
        ConfigError: bad block size, GPTQ without data, or FP16 / int8 weight storage asked for.
        ModelError: the model has no MatMul/Gemm weight INT4 can take.
        DataError: the calibration data does not fit the model.
    """
    _check_options(options, calib)
    work = copy.deepcopy(model)
    name_nodes(work)
    exclusions = Exclusions.from_options(options, work)
    targets, skipped = int4_targets(work, options.block_size, exclusions)
    if not targets:
        first = f" (first: {skipped[0].op_type} '{skipped[0].name}': {skipped[0].reason})" if skipped else ""
        raise ModelError(f"the model has no MatMul/Gemm weight that INT4 weight-only quantization can take{first}",
                         hint="int4-weights needs 2-D constant MatMul/Gemm weights; use --precision int8")
    rounding = None
    if uses_gptq(options) and calib is not None:
        integers, targets, rounding = gptq_integers(work, targets, calib)
        log.info("%s", rounding.summary())
    else:
        integers = {t.node: nearest_integers(t) for t in targets}
    result, report = apply_int4(work, targets, integers, skipped, "gptq" if rounding else "nearest")
    log.info("%s", report.summary())
    return WeightOnlyOutcome(result, report, rounding)


def _check_options(options: QuantizeConfig, calib: Batches | None) -> None:
    check_block_size(options.block_size)
    if options.fp16:
        raise ConfigError("--fp16 is not supported with --precision int4-weights",
                          hint="leave out --fp16: TensorRT computes the INT4 weight-only GEMMs in the activations' "
                               "float type")
    if options.weights != "qdq":
        raise ConfigError("--weights int8 does not apply to --precision int4-weights (its weights are INT4)",
                          hint="leave out --weights")
    if uses_gptq(options) and calib is None:
        raise ConfigError("--weight-rounding learned needs calibration data for INT4 weights",
                          hint="use trtq build --calib DATA, or the default nearest rounding")


def check_build_options(config: Config) -> None:
    """Refuse build options that have no meaning for weight-only INT4, before any long step runs.

    Raises:
        ConfigError: --implicit, --fallback, --bias-correction, AdaRound or activation ranges with
            --precision int4-weights (its learned rounding is --weight-rounding learned).
    """
    asked = [flag for flag, on in (("--implicit", config.build.implicit), ("--fallback", config.check.fallback),
                                   ("--bias-correction", config.quantize.bias_correction != "none"),
                                   ("--weight-rounding adaround", config.quantize.weight_rounding == "adaround"),
                                   ("--activation-ranges layer-output",
                                    config.quantize.activation_ranges != "histogram")) if on]
    if asked:
        raise ConfigError(f"{asked[0]} does not apply to --precision int4-weights",
                          hint="INT4 weight-only models are explicit (Q/DQ) and have no activation "
                               "quantization to fall back from or correct; leave it out")
    _check_options(config.quantize, calib=[])


def quantize_weight_only_file(model_path: str | Path, out_path: str | Path | None,
                              options: QuantizeConfig) -> tuple[Path, WeightOnlyOutcome]:
    """`trtq quantize --precision int4-weights`: RTN INT4 weights of the model file, written atomically.

    Returns:
        The path written and the outcome.
    """
    model_path = Path(model_path)
    out = Path(out_path) if out_path else default_qdq_path(model_path)
    check_writable(out.parent, out)
    if uses_gptq(options):
        raise ConfigError("trtq quantize rounds INT4 weights to nearest only",
                          hint="use trtq build --calib DATA --precision int4-weights --weight-rounding learned")
    outcome = quantize_weight_only(model_io.load_model(model_path), options)
    save_qdq_model(outcome.model, out)
    return out, outcome
