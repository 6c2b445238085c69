"""The quantize step of `trtq build`: ranges -> the Q/DQ model that is checked and shipped.

    plain:     quantize with the configured exclusions
    --fallback (needs a gate and held-out data): quantize, then leave the most sensitive
               layers in float one at a time until the gates pass (trtq.accuracy.fallback)
    --bias-correction always|auto: shift Conv/Gemm biases on the calibration data; auto keeps
               the shift only if the held-out SQNR rises (trtq.accuracy.bias_correction)
    --per-layer: also rank the layers by their effect on the outputs alone (trtq.accuracy.sensitivity)

Bias correction runs once, on the model the fallback settled on: running it inside every
fallback step would cost a pass per layer level per step. The accuracy check after this
stage measures the final model, so the gates judge exactly what is shipped.

All measurements share one FP32 reference on the held-out data (trtq.accuracy.evaluation.Reference),
computed on first use.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx

from trtq.accuracy import Gates
from trtq.accuracy.activation_shift import SHIFT_SAMPLES, ActivationShiftReport, shift_activations
from trtq.accuracy.bias_correction import BiasCorrectionReport, apply_bias_correction
from trtq.accuracy.evaluation import Reference
from trtq.accuracy.fallback import FallbackResult, check_gate_set, check_max_excluded, fallback
from trtq.accuracy.sensitivity import LayerSensitivity, layer_sensitivity, ranking_table
from trtq.accuracy.tasks import TaskMap
from trtq.accuracy.weight_rounding import WeightRoundingReport, round_weights
from trtq.cluster.ray_runtime import optional_ray
from trtq.cluster.tasks import RayMap
from trtq.config import ClusterConfig, Config
from trtq.data import DataReader
from trtq.errors import ConfigError
from trtq.progress import timed_step
from trtq.qdq import QuantizeResult, quantize_model

log = logging.getLogger(__name__)

# Calibration samples bias correction measures on: the shifts are means, which settle long before
# the data runs out, and the sequential method makes one pass per layer level.
BIAS_CORRECTION_SAMPLES = 128
# Calibration samples learned weight rounding sums input moments over (256 random positions each):
# one pass per layer level, so its cost is what bounds the count.
WEIGHT_ROUNDING_SAMPLES = 32


@dataclass
class QdqOutcome:
    """The Q/DQ model the build ships (FP32 interface, checked on ONNX Runtime) and how it came about.

    Attributes:
        model: the final Q/DQ model.
        result: the quantizer's result for the final settings (its report lists what was quantized).
        fallback: what the fallback did, or None if it did not run.
        bias_correction: what bias correction did, or None if it was off.
        weight_rounding: what learned weight rounding did, or None if weights were rounded to nearest.
        sensitivity: layers ranked most sensitive first (with --per-layer or after a fallback), else empty.
    """

    model: onnx.ModelProto
    result: QuantizeResult
    fallback: FallbackResult | None = None
    bias_correction: BiasCorrectionReport | None = None
    sensitivity: list[LayerSensitivity] = field(default_factory=list)
    weight_rounding: WeightRoundingReport | None = None
    activation_shift: ActivationShiftReport | None = None

    def summaries(self) -> list[str]:
        """One line per accuracy mechanism that ran, for report.md (make_qdq_model logs each as it ends)."""
        lines = [self.fallback.summary()] if self.fallback else []
        lines += [self.weight_rounding.summary()] if self.weight_rounding else []
        lines += [self.activation_shift.summary()] if self.activation_shift else []
        return lines + ([self.bias_correction.summary()] if self.bias_correction else [])

    def to_dict(self) -> dict[str, Any]:
        """The report's `accuracy` section."""
        return {
            "fallback": self.fallback.to_dict() if self.fallback else None,
            "bias_correction": self.bias_correction.to_dict() if self.bias_correction else None,
            "sensitivity": ranking_table(self.sensitivity) if self.sensitivity else None,
            "weight_rounding": self.weight_rounding.to_dict() if self.weight_rounding else None,
            "activation_shift": self.activation_shift.to_dict() if self.activation_shift else None,
        }


def check_qdq_options(config: Config, has_eval: bool) -> None:
    """Refuse combinations that cannot work, before any long step runs.

    Raises:
        ConfigError: --fallback without a gate or without held-out samples.
    """
    check_max_excluded(config.check.max_excluded)
    if not config.check.fallback:
        return
    check_gate_set(Gates.from_config(config.check))
    if not has_eval:
        raise ConfigError("--fallback needs held-out samples to measure on",
                          hint="give --eval DATA or an --eval-fraction above 0")


def needs_loaded_weights(config: Config) -> bool:
    """Whether a step the config turns on rewrites the weights in memory (equalization, learned rounding,
    layer-output ranges, the FP16 twin), so that a model over 2 GiB cannot keep its weights in their files
    (trtq.onnx_model.model.load_model_by_reference). The fallback, per-layer sensitivity and bias
    correction read them from there (their sessions through trtq.runtime.session.cpu_session)."""
    q = config.quantize
    return bool((not q.fast and (q.equalization != "none" or q.weight_rounding != "nearest"
                                 or q.activation_ranges != "histogram")) or q.fp16)


def make_qdq_model(model: onnx.ModelProto, amax: dict[str, float], config: Config, calib: DataReader,
                   evaluation: DataReader | None, show_progress: bool = False,
                   weights_dir: Path | None = None) -> QdqOutcome:
    """Quantize `model` with `amax` as the config asks (see the module docstring).

    The FP16 option is ignored here: the returned model is the FP32 variant ONNX Runtime checks;
    trtq.qdq.to_fp16_twin makes the TensorRT 11 variant from it. `weights_dir`: the folder of a model
    loaded by reference (needs_loaded_weights says which steps need the weights loaded instead).
    With --ray the sensitivity and fallback measurements run as Ray tasks (same ranking, same layers chosen).
    """
    searches = config.check.fallback or (config.check.per_layer and evaluation is not None)
    with optional_ray(config.cluster if searches else ClusterConfig()) as workers:
        return _make_qdq_model(model, amax, config, calib, evaluation, show_progress,
                               RayMap(workers) if workers else None, weights_dir)


def _make_qdq_model(model: onnx.ModelProto, amax: dict[str, float], config: Config, calib: DataReader,
                    evaluation: DataReader | None, show_progress: bool, tasks: TaskMap | None,
                    weights_dir: Path | None) -> QdqOutcome:
    options = dataclasses.replace(config.quantize, fp16=False)
    reference = _LazyReference(model, evaluation, weights_dir)
    if config.check.fallback:
        log.info("fallback: measuring the Q/DQ model against the gates on the held-out samples")
        found = fallback(model, amax, None, options, Gates.from_config(config.check), config.check.max_excluded,
                         reference=reference.get(), show_progress=show_progress, tasks=tasks, weights_dir=weights_dir)
        log.info("%s", found.summary())
        outcome = QdqOutcome(found.model, found.quantize_result, fallback=found, sensitivity=list(found.sensitivity))
        options = found.options
    else:
        with timed_step(log, "inserting Q/DQ nodes"):
            result = quantize_model(model, amax, options, weights_dir)
        outcome = QdqOutcome(result.model, result)
    if config.check.per_layer and not outcome.sensitivity and evaluation is not None:
        outcome.sensitivity = layer_sensitivity(model, amax, None, options, reference=reference.get(),
                                                show_progress=show_progress, tasks=tasks, weights_dir=weights_dir)
    learned, ranges = learned_rounding(config, outcome.result), range_search(config, outcome.result)
    if learned or ranges:
        steps = [f"{config.quantize.weight_rounding} weight rounding"] * learned + \
            ["activation ranges by layer output error"] * ranges
        log.info("%s on %d calibration samples, layer by layer", " and ".join(steps), WEIGHT_ROUNDING_SAMPLES)
        # target "self": the "fp32" target's compensation of upstream errors did not carry over to held-out
        # data on MobileNetV2 (12.9 dB nearest -> 10.0 dB; the plain least-squares weight: -0.8 dB)
        outcome.model, outcome.weight_rounding = round_weights(
            model, outcome.model, calib.feed_dicts(), method=ROUNDING_METHODS[config.quantize.weight_rounding],
            target="self", max_samples=WEIGHT_ROUNDING_SAMPLES, ranges=ranges)
        log.info("%s", outcome.weight_rounding.summary())
    # The worst held-out SQNR of outcome.model where a step measured it already (None: not known), so that
    # the auto steps after it do not run the same model on the held-out data again.
    known = outcome.fallback.steps[-1].sqnr_db if outcome.fallback and not (learned or ranges) else None
    if activation_shift(config, outcome.result):
        # after the weight rounding: the shift is taken back with the final weight integers
        auto = config.quantize.activation_shift == "auto" and evaluation is not None
        outcome.model, shift = shift_activations(
            model, outcome.model, calib.feed_dicts(), config.quantize.activation_shift, max_samples=SHIFT_SAMPLES,
            reference=reference.get() if auto else None, sqnr_before=known, weights_dir=weights_dir)
        outcome.activation_shift = shift
        log.info("%s", shift.summary())
        if shift.sqnr_after is not None:
            known = shift.sqnr_after if shift.applied else shift.sqnr_before
        elif shift.shifted:
            known = None
    mode = config.quantize.bias_correction
    if mode != "none":
        judge = reference.get() if mode == "auto" and evaluation is not None else None
        outcome.model, outcome.bias_correction = apply_bias_correction(
            model, outcome.model, calib.feed_dicts(), mode, reference=judge, max_samples=BIAS_CORRECTION_SAMPLES,
            sqnr_before=known if judge is not None else None, show_progress=show_progress, weights_dir=weights_dir)
        if outcome.bias_correction is not None:
            log.info("%s", outcome.bias_correction.summary())
    return outcome


# --weight-rounding -> trtq.accuracy.weight_rounding method ("nearest" keeps the integers: the ranges alone)
ROUNDING_METHODS = {"nearest": "nearest", "learned": "gptq", "adaround": "adaround"}


def learned_rounding(config: Config, result: QuantizeResult) -> bool:
    """Whether learned weight rounding (GPTQ or AdaRound) runs: asked for, not --fast, INT8, and weights to round."""
    q = config.quantize
    return q.weight_rounding != "nearest" and not q.fast and q.precision == "int8" and result.report.weights > 0


def activation_shift(config: Config, result: QuantizeResult) -> bool:
    """Whether activations are shifted onto their INT8 grid: asked for, not --fast, INT8, and layers to compensate."""
    q = config.quantize
    return q.activation_shift != "off" and not q.fast and q.precision == "int8" and result.report.weights > 0


def range_search(config: Config, result: QuantizeResult) -> bool:
    """Whether activation ranges are re-chosen by layer output error: asked for, not --fast, INT8."""
    q = config.quantize
    return q.activation_ranges == "layer-output" and not q.fast and q.precision == "int8" and result.report.weights > 0


@dataclass
class _LazyReference:
    """FP32 outputs on the held-out data, computed the first time a mechanism needs them."""

    model: onnx.ModelProto
    evaluation: DataReader | None
    weights_dir: Path | None = None
    _reference: Reference | None = None

    def get(self) -> Reference:
        if self._reference is None:
            if self.evaluation is None:
                raise ConfigError("this step needs held-out samples", hint="give --eval DATA or --eval-fraction")
            self._reference = Reference(self.model, self.evaluation.feed_dicts(), weights_dir=self.weights_dir)
        return self._reference
