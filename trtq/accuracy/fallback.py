"""Accuracy-driven fallback: leave the most sensitive layers in float until the gates pass.

    result = fallback(model, amax, eval_batches, QuantizeConfig(), Gates(min_sqnr=25.0), max_excluded=10)
    result.passed, result.excluded, result.model

Steps: quantize with the given settings and measure on the held-out batches; if a gate
fails, rank the quantized layers (trtq.accuracy.sensitivity: each layer's effect alone on the
outputs), then exclude them one at a time (QuantizeConfig.exclude_nodes) until every gate
passes or `max_excluded` layers are out. At each step the next `trials` layers of the
ranking are each tried and the one whose exclusion measures best is kept: errors of
layers interact (two stem convolutions can each cost little alone and much together), so
the order alone ranks by is only a guide. A ranked layer that is no longer quantized (its
placement depended on an excluded neighbour, e.g. a residual Add) is passed over.

Each step costs `trials` quantizations and evaluation passes (the FP32 outputs are
computed once); the ranking costs one probe pass plus one pass per layer.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx

from trtq.accuracy.evaluation import Batches, Reference, worst_pooled_cosine, worst_sqnr, worst_top1
from trtq.accuracy.gates import Gates, check_gates
from trtq.accuracy.metrics import json_float
from trtq.accuracy.sensitivity import DEFAULT_MEASURE_TOP, LayerSensitivity, layer_sensitivity
from trtq.accuracy.tasks import TaskMap, serial_map
from trtq.config import QuantizeConfig
from trtq.errors import ConfigError
from trtq.qdq import QuantizeResult, quantize_model

log = logging.getLogger(__name__)

DEFAULT_TRIALS = 3

# Applied to every quantized candidate before it is measured, e.g. bias correction.
Postprocess = Callable[[onnx.ModelProto], onnx.ModelProto]


@dataclass(frozen=True)
class FallbackStep:
    """The measurement after one step (the first step excludes nothing).

    Attributes:
        node: the layer excluded at this step, or None for the initial model.
        op_type: its op type.
        sqnr_db: worst output SQNR on the held-out data after the step (dB).
        top1_agreement: worst top-1 agreement over classifier-like outputs, or None.
        failures: messages of the gates that failed (empty: all passed).
        pooled_cosine: worst mean pooled-embedding cosine over token-embedding outputs, or None.
    """

    node: str | None
    op_type: str | None
    sqnr_db: float
    top1_agreement: float | None
    failures: tuple[str, ...]
    pooled_cosine: float | None = None

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        return {"node": self.node, "op_type": self.op_type, "sqnr_db": json_float(self.sqnr_db),
                "top1_agreement": self.top1_agreement, "pooled_cosine": json_float(self.pooled_cosine),
                "passed": self.passed, "failures": list(self.failures)}


@dataclass(frozen=True)
class FallbackResult:
    """The final model and how it was reached.

    Attributes:
        model: the Q/DQ model of the last step (after `postprocess`).
        quantize_result: the quantizer's result for that step (its report lists the excluded nodes).
        options: the quantizer settings of that step (exclude_nodes extended).
        steps: the initial measurement, then one per excluded layer.
        passed: whether the last step passes every gate.
        sensitivity: the ranking used (empty when the initial model passed).
    """

    model: onnx.ModelProto
    quantize_result: QuantizeResult
    options: QuantizeConfig
    steps: tuple[FallbackStep, ...]
    passed: bool
    sensitivity: tuple[LayerSensitivity, ...] = ()

    @property
    def excluded(self) -> list[tuple[str, FallbackStep]]:
        """(node, measurement after excluding it), in exclusion order."""
        return [(s.node, s) for s in self.steps if s.node is not None]

    def summary(self) -> str:
        first, last = self.steps[0], self.steps[-1]
        verdict = "gates pass" if self.passed else "gates still fail"
        return (f"fallback: {len(self.excluded)} layers left in float, worst output SQNR "
                f"{first.sqnr_db:.2f} -> {last.sqnr_db:.2f} dB, {verdict}")

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "excluded": [node for node, _ in self.excluded],
                "steps": [s.to_dict() for s in self.steps],
                "sensitivity": [s.to_dict() for s in self.sensitivity]}


def fallback(model: onnx.ModelProto, amax: Mapping[str, float], eval_batches: Batches,
             quantize_config: QuantizeConfig | None, gates: Gates, max_excluded: int = 10, *,
             measure_top: int | None = DEFAULT_MEASURE_TOP, postprocess: Postprocess | None = None,
             reference: Reference | None = None, show_progress: bool = False,
             trials: int = DEFAULT_TRIALS, tasks: TaskMap | None = None,
             weights_dir: Path | None = None) -> FallbackResult:
    """Quantize `model`, then exclude its most sensitive layers one by one until `gates` pass.

    Args:
        model: the FP32 model.
        amax: activation ranges (trtq.qdq.quantize_model).
        eval_batches: held-out feed dicts (trtq.accuracy.evaluation.Batches); ignored when `reference` is given.
        quantize_config: quantizer settings; its exclude_nodes are kept and extended.
        gates: the thresholds (trtq.accuracy.Gates, e.g. Gates.from_config(config.check)).
        max_excluded: most layers to exclude (CheckConfig.max_excluded); 0 only measures.
        measure_top: layers measured alone for the ranking (see trtq.accuracy.sensitivity).
        postprocess: applied to every quantized model before measuring (e.g. bias correction).
        reference: FP32 outputs already computed on the held-out batches.
        show_progress: a progress bar while the layers are ranked.
        trials: candidates tried at each step (the next ones in the ranking); the best is kept.
        tasks: runs the ranking's measurements and each step's trials (default: one after the other;
            trtq.cluster.tasks.RayMap in parallel); the chosen layers are the same either way.
        weights_dir: the folder of the weights `model` left in files (loaded by reference,
            trtq.onnx_model.model.load_model_by_reference): the quantizer and every session read them there.

    Raises:
        ConfigError: no gate is set, or max_excluded < 0.
        DataError / ModelError: as trtq.accuracy.evaluation.Reference.measure.
    """
    check_gate_set(gates)
    check_max_excluded(max_excluded)
    options = quantize_config or QuantizeConfig()
    reference = reference or Reference(model, eval_batches, weights_dir=weights_dir)
    step = _Step(model, amax, gates, reference, postprocess, weights_dir)
    result, candidate, first = step.run(options, None)
    steps = [first]
    if first.passed or max_excluded == 0:
        return FallbackResult(candidate, result, options, tuple(steps), first.passed)
    # A cosine gate on token embeddings is a pooled-cosine gate (trtq.accuracy.gates): rank by that.
    rank_by = "pooled_cosine" if gates.min_cosine is not None and first.pooled_cosine is not None else "sqnr"
    ranking = layer_sensitivity(model, amax, reference.batches, options, measure_top=measure_top, reference=reference,
                                show_progress=show_progress, rank_by=rank_by, tasks=tasks, weights_dir=weights_dir)
    remaining = list(ranking)
    while len(steps) <= max_excluded:
        quantized = {q.name for q in result.report.quantized}
        remaining = [layer for layer in remaining if layer.node in quantized]  # an exclusion can unquantize others
        candidates = [(dataclasses.replace(options, exclude_nodes=[*options.exclude_nodes, layer.node]), layer)
                      for layer in remaining[:trials]]
        if not candidates:
            break
        runs = (tasks or serial_map)(run_trial, step, candidates, desc=f"fallback step {len(steps)}", unit="trial",
                                     show_progress=show_progress)  # each trial quantizes and measures: seconds
        tried = [(trial, layer, *run) for (trial, layer), run in zip(candidates, runs, strict=True)]
        options, layer, result, candidate, measured = max(tried, key=lambda t: _score(t[4]))
        remaining.remove(layer)
        steps.append(measured)
        log.info("fallback: excluded %s %s, worst SQNR %.2f dB, %s", layer.op_type, layer.node, measured.sqnr_db,
                 "gates pass" if measured.passed else "gates fail")
        if measured.passed:
            break
    return FallbackResult(candidate, result, options, tuple(steps), steps[-1].passed, tuple(ranking))


def check_gate_set(gates: Gates) -> None:
    """Raise ConfigError unless `gates` sets a threshold for the fallback to aim for."""
    if not gates.any:
        raise ConfigError("--fallback needs an accuracy gate to aim for",
                          hint="set --min-sqnr, --min-top1-agreement, --min-cosine or --atol/--rtol, "
                               "e.g. --min-sqnr 25")


def check_max_excluded(max_excluded: int) -> None:
    """Raise ConfigError unless `max_excluded` is an integer >= 0."""
    if isinstance(max_excluded, bool) or not isinstance(max_excluded, int) or max_excluded < 0:
        raise ConfigError(f"--max-excluded must be an integer >= 0, got {max_excluded!r}")


def _score(step: FallbackStep) -> tuple[bool, int, float, float, float]:
    """Order of preference between trial steps: gates pass, fewer failures, top-1, pooled cosine, then SQNR."""
    top1 = step.top1_agreement if step.top1_agreement is not None else 0.0
    pooled = step.pooled_cosine if step.pooled_cosine is not None else 0.0
    return step.passed, -len(step.failures), top1, pooled, step.sqnr_db


def run_trial(step: _Step, candidate: tuple[QuantizeConfig, LayerSensitivity]
              ) -> tuple[QuantizeResult, onnx.ModelProto, FallbackStep]:
    """One trial of a fallback step: `candidate` is (the settings with one more exclusion, that layer)."""
    options, layer = candidate
    return step.run(options, layer)


@dataclass
class _Step:
    """Quantize with some settings, post-process, measure, check the gates."""

    model: onnx.ModelProto
    amax: Mapping[str, float]
    gates: Gates
    reference: Reference
    postprocess: Postprocess | None
    weights_dir: Path | None = None

    def run(self, options: QuantizeConfig, layer: LayerSensitivity | None
            ) -> tuple[QuantizeResult, onnx.ModelProto, FallbackStep]:
        result = quantize_model(self.model, self.amax, options, self.weights_dir)
        candidate = self.postprocess(result.model) if self.postprocess else result.model
        measured = self.reference.measure(candidate, atol=self.gates.atol, rtol=self.gates.rtol)
        failures = tuple(f.message for f in check_gates(measured, self.gates))
        return result, candidate, FallbackStep(layer.node if layer else None, layer.op_type if layer else None,
                                               worst_sqnr(measured), worst_top1(measured), failures,
                                               worst_pooled_cosine(measured))
