"""The candidates of the precision choice, each with its accuracy and latency (trtq.pipeline.precision_select).

    fp32                     the model itself: exact, the reference
    fp16                     measured on the FP16 simulation (trtq.qdq.fp16_sim)
    int8                     every layer TensorRT's placement quantizes, measured on ONNX Runtime CPU
    int8 + k layers in float the accuracy fallback's steps (trtq.accuracy.fallback), each measured;
                             the layers it leaves out run in FP32 (FP16 with --fp16)

Latency: measured on a TensorRT engine of each candidate where one can be built (`measure`), else
estimated by trtq.engine.cost_model from the layers' MACs and bytes (trtq.runtime.layer_work, one run
of the FP32 model on the first held-out batch) with each layer at the candidate's precision for it.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping, Sequence

import onnx

from trtq.accuracy.evaluation import Reference, batch_samples, worst_sqnr, worst_top1
from trtq.accuracy.fallback import FallbackResult, fallback
from trtq.accuracy.gates import Gates, check_gates
from trtq.config import QuantizeConfig
from trtq.engine.cost_model import Device, LayerWork, estimate_ms
from trtq.pipeline.precision_select import Candidate, Selection, choose
from trtq.qdq import quantize_model
from trtq.qdq.fp16_sim import simulate_fp16
from trtq.runtime.layer_work import layer_work

log = logging.getLogger(__name__)

# (layers left in float, worst output SQNR, worst top-1 agreement, gate failures) of one fallback step.
Step = tuple[tuple[str, ...], float, float | None, tuple[str, ...]]
# (worst output SQNR, worst top-1 agreement, gate failures) of one candidate.
Accuracy = tuple[float, float | None, tuple[str, ...]]
# A model -> its measured latency in ms (an engine built and timed), or None where no engine can be built.
Measure = Callable[[onnx.ModelProto, str], float]


@dataclasses.dataclass(frozen=True)
class _Latency:
    layers: Sequence[LayerWork]
    device: Device
    measure: Measure | None

    def of(self, model: onnx.ModelProto, name: str, precisions: Mapping[str, str], rest: str) -> tuple[float, str]:
        if self.measure is not None:
            return self.measure(model, name), "measured: TensorRT engine"
        return estimate_ms(self.layers, precisions, self.device, rest), f"estimated: {self.device.name} cost model"


def _accuracy(reference: Reference, model: onnx.ModelProto, gates: Gates) -> Accuracy:
    measured = reference.measure(model, atol=gates.atol, rtol=gates.rtol)
    return worst_sqnr(measured), worst_top1(measured), tuple(f.message for f in check_gates(measured, gates))


def _int8_candidates(model: onnx.ModelProto, amax: Mapping[str, float], options: QuantizeConfig,
                     steps: Sequence[Step], reference: Reference, gates: Gates, latency: _Latency) -> list[Candidate]:
    """One candidate per fallback step with the float layers in FP32, and one with them in FP16 (measured on the
    FP16 simulation of the Q/DQ model) where layers are left out; --fp16 keeps only the FP16 one."""
    found = []
    for excluded, sqnr, top1, failures in steps:
        trial = dataclasses.replace(options, exclude_nodes=[*options.exclude_nodes, *excluded], fp16=False)
        result = quantize_model(model, amax, trial)
        precisions = {q.name: "int8" for q in result.report.quantized}
        rests = ("fp16",) if options.fp16 else ("fp32", "fp16") if excluded else ("fp32",)
        for rest in rests:
            name = "int8" if not excluded else f"int8 + {len(excluded)} layer{'s' * (len(excluded) > 1)} in {rest}"
            how = "Q/DQ model on ONNX Runtime CPU"
            measured = (sqnr, top1, failures)
            if rest == "fp16" and excluded:
                measured, how = _accuracy(reference, simulate_fp16(result.model), gates), f"{how}, FP16 simulation"
            ms, source = latency.of(result.model, name, precisions, rest)
            found.append(Candidate(name, "int8", excluded, ms, source, *measured, how, rest))
    return found


def _fallback_steps(model: onnx.ModelProto, amax: Mapping[str, float], options: QuantizeConfig, gates: Gates,
                    reference: Reference, max_excluded: int, given: FallbackResult | None
                    ) -> list[Step]:
    """(excluded layers, worst SQNR, worst top-1, gate failures) per INT8 candidate."""
    if not gates.any:
        sqnr, top1, failures = _accuracy(reference, quantize_model(model, amax, options).model, gates)
        return [((), sqnr, top1, failures)]
    result = given or fallback(model, amax, reference.batches, options, gates, max_excluded, reference=reference)
    excluded = [node for node, _ in result.excluded]
    return [(tuple(excluded[:k]), s.sqnr_db, s.top1_agreement, s.failures) for k, s in enumerate(result.steps)]


def select_precision(model: onnx.ModelProto, amax: Mapping[str, float], reference: Reference, gates: Gates,
                     target_latency_ms: float | None, device: Device, *, options: QuantizeConfig | None = None,
                     max_excluded: int = 10, measure: Measure | None = None,
                     fallback_result: FallbackResult | None = None) -> Selection:
    """Measure the candidates (see the module docstring) and choose one (trtq.pipeline.precision_select.choose).

    Args:
        model: the FP32 model; amax: its activation ranges.
        reference: FP32 outputs on the held-out batches, which every candidate is measured against.
        gates: the accuracy gate (Gates() for none: the most accurate candidate within the target wins).
        target_latency_ms: the latency budget, or None.
        device: the cost model's GPU (trtq.engine.cost_model.DEVICES) where no engine is measured.
        options: quantizer settings of the INT8 candidates; max_excluded: most layers the fallback leaves out.
        measure: model -> measured latency in ms (TensorRT engines), or None to estimate.
        fallback_result: a fallback already run with `gates` (trtq build's), reused instead of run again.
    """
    options = options or QuantizeConfig()
    feed = next(iter(reference.batches()))  # type: ignore[operator]
    latency = _Latency(layer_work(model, feed), device, measure)
    candidates = []
    for name, candidate in (("fp32", model), ("fp16", simulate_fp16(model))):
        sqnr, top1, failures = _accuracy(reference, candidate, gates)
        ms, source = latency.of(candidate, name, {}, name)
        how = "the FP32 model itself on ONNX Runtime" if name == "fp32" else "FP16 simulation on ONNX Runtime CPU"
        candidates.append(Candidate(name, name, (), ms, source, sqnr, top1, failures, how))
    steps = _fallback_steps(model, amax, options, gates, reference, max_excluded, fallback_result)
    candidates += _int8_candidates(model, amax, options, steps, reference, gates, latency)
    chosen, reason, met = choose(candidates, target_latency_ms, gates.any)
    notes = [] if measure is not None else [
        f"latencies are estimates of the cost model for {device.name} ({device.source}): a lower bound for ranking "
        "the candidates, not a prediction (trtq/engine/cost_model.py); build on a GPU to measure them"]
    return Selection(candidates, chosen, reason, met, gates, target_latency_ms, batch_samples(feed), notes)

