"""Accuracy of a quantized candidate against ONNX Runtime FP32, run and compared by Polygraphy.

    result = compare_models("model.onnx", "model.qdq.onnx", reader, per_layer=True)
    result.outputs["prob"].top1_agreement

Polygraphy's `Comparator.run(..., streaming=True)` runs both models on one feed
dict at a time and yields that iteration's outputs (its default, non-streaming
mode keeps every feed dict and every output of every iteration in memory). trtq
updates its streaming metrics (trtq.accuracy.metrics) from each iteration and
passes it on, unchanged, to `Comparator.compare_accuracy` with a
`SimpleCompareFunc` when atol/rtol are asked for. So at most one batch of
outputs is alive at a time, however many samples are compared.

The candidate runs first and the reference second because Polygraphy's
relative error divides by the second runner's output.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from polygraphy.comparator import Comparator, SimpleCompareFunc
from polygraphy.logger import G_LOGGER

from trtq.accuracy.feeds import BatchInfo, CheckedFeeds
from trtq.accuracy.layers import layer_tensors
from trtq.accuracy.metrics import (
    ErrorSums,
    LayerMetrics,
    OutputAccumulator,
    OutputMetrics,
    ToleranceCheck,
    layer_metrics,
)
from trtq.errors import DataError, ModelError, TrtqError, first_line
from trtq.onnx_model.model import graph_inputs, graph_outputs
from trtq.progress import progress_bar
from trtq.runtime import runners

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ComparisonResult:
    """Per-output metrics of the candidate against the reference, and per-layer SQNR (worst first)."""

    reference: str
    candidate: str
    candidate_kind: str  # "onnx" (ONNX Runtime CPU) or "engine" (TensorRT)
    samples: int
    batches: int
    seconds: float
    outputs: dict[str, OutputMetrics]
    per_layer: tuple[LayerMetrics, ...] = ()
    warnings: tuple[str, ...] = field(default=())

    def worst_layers(self, count: int = 10) -> list[LayerMetrics]:
        """The `count` layers with the lowest SQNR."""
        return list(self.per_layer[:count])

    def to_dict(self) -> dict[str, Any]:
        return {
            "reference": self.reference, "candidate": self.candidate, "candidate_kind": self.candidate_kind,
            "samples": self.samples, "batches": self.batches, "seconds": round(self.seconds, 3),
            "outputs": {name: m.to_dict() for name, m in self.outputs.items()},
            "per_layer": [layer.to_dict() for layer in self.per_layer],
            "warnings": list(self.warnings),
        }


class _Accumulators:
    """Every accumulator of one comparison: one per model output, one ErrorSums per marked layer."""

    def __init__(self, outputs: Sequence[str], layers: Sequence[tuple[str, str]]) -> None:
        self.outputs = {name: OutputAccumulator(name) for name in outputs}
        self.layers = {tensor: (op_type, ErrorSums()) for tensor, op_type in layers}
        self.batches = 0
        self.samples = 0

    def update(self, reference: Mapping[str, Any], candidate: Mapping[str, Any], info: BatchInfo) -> None:
        for name, acc in self.outputs.items():
            ref, cand = _pair(reference, candidate, name)
            acc.update(ref, cand, info.samples, info.labels, info.mask)
        for tensor, (_, sums) in self.layers.items():
            sums.update(*_pair(reference, candidate, tensor))
        self.batches += 1
        self.samples += info.samples

    def layer_results(self) -> tuple[LayerMetrics, ...]:
        layers = [layer_metrics(t, op, sums) for t, (op, sums) in self.layers.items()]
        return tuple(sorted(layers, key=lambda m: m.sqnr_db))  # stable: graph order among equals


def _pair(reference: Mapping[str, Any], candidate: Mapping[str, Any], name: str) -> tuple[np.ndarray, np.ndarray]:
    """The reference and candidate arrays of tensor `name`, the candidate reshaped like the reference."""
    if name not in candidate:
        raise ModelError(f"the candidate has no output named '{name}'",
                         hint="the candidate must produce the reference model's outputs, with the same names")
    ref, cand = np.asarray(reference[name]), np.asarray(candidate[name])
    if ref.size != cand.size:
        raise ModelError(f"output '{name}' has shape {ref.shape} in the reference but {cand.shape} in the candidate",
                         hint="compare models built for the same input shapes")
    return ref, cand.reshape(ref.shape)


@dataclass
class _Plan:
    """The two runners and what is compared."""

    candidate_runner: Any
    reference_runner: Any
    candidate_label: str
    candidate_kind: str
    layers: list[tuple[str, str]]
    warnings: list[str]


def _plan(reference: onnx.ModelProto, candidate: str | Path | onnx.ModelProto, per_layer: bool,
          ref_dir: Path | None = None) -> _Plan:
    outputs = [o.name for o in graph_outputs(reference)]
    warnings: list[str] = []
    if runners.is_engine(candidate):
        if per_layer:
            warnings.append("per-layer comparison skipped: it needs an ONNX candidate, not a TensorRT engine")
        engine = runners.engine_runner(candidate)  # first: a missing TensorRT fails before any session is made
        ref_runner = runners.onnx_runner(reference, "reference", outputs, runners.reference_providers(),
                                         weights_dir=ref_dir)
        return _Plan(engine, ref_runner, str(candidate), "engine", [], warnings)
    cand_model, cand_label, cand_dir = runners.load(candidate)
    check_candidate_outputs(cand_model, outputs)
    layers = layer_tensors(reference, cand_model) if per_layer else []
    if per_layer and not layers:
        warnings.append("per-layer comparison found no layer output shared by both models")
    marked = [*outputs, *(t for t, _ in layers if t not in outputs)]
    cand_runner = runners.candidate_runner(cand_model, marked, cand_dir)
    ref_runner = runners.onnx_runner(reference, "reference", marked, runners.reference_providers(), weights_dir=ref_dir)
    return _Plan(cand_runner, ref_runner, cand_label, "onnx", layers, warnings)


def check_candidate_outputs(candidate: onnx.ModelProto, outputs: Sequence[str]) -> None:
    produced = {o for n in candidate.graph.node for o in n.output} | {i.name for i in candidate.graph.input}
    for name in outputs:
        if name not in produced:
            raise ModelError(f"the candidate has no output named '{name}'",
                             hint="the candidate must produce the reference model's outputs, with the same names")


def _measure(stream: Iterable[Any], feeds: CheckedFeeds, acc: _Accumulators, bar: Any) -> Iterator[Any]:
    """Update `acc` from each streamed iteration ([candidate, reference]) and pass the iteration on."""
    iterator = iter(stream)
    while True:
        try:
            run = next(iterator)
        except StopIteration:
            return
        except TrtqError:
            raise
        except Exception as exc:  # ONNX Runtime / TensorRT / Polygraphy failures while running a batch
            raise _run_error(exc, feeds, acc.batches) from None
        info = feeds.pending.popleft()
        acc.update(run[1][1][0], run[0][1][0], info)
        bar.update(1)
        yield run


def _run_error(exc: Exception, feeds: CheckedFeeds, index: int) -> TrtqError:
    first = first_line(exc)
    if not feeds.started:
        return ModelError(f"the models could not be started: {first}", hint="run with --debug for details")
    return DataError(f"inference failed on batch {index}: {first}", hint="check the data matches the model inputs")


def _tolerance_checks(stream: Iterable[Any], outputs: Sequence[str], atol: float | None,
                      rtol: float | None) -> dict[str, ToleranceCheck]:
    """Drain `stream` through Polygraphy's elementwise atol/rtol comparison of the model outputs.

    A tolerance that is not given is 0, so atol alone checks |c - r| <= atol and rtol alone
    checks |c - r| <= rtol |r| (Polygraphy fails an element only if it exceeds both).
    """
    wanted = set(outputs)
    func = SimpleCompareFunc(atol=atol or 0.0, rtol=rtol or 0.0, check_shapes=False, check_error_stat="elemwise",
                             find_output_func=lambda name, _index, _result: [name] if name in wanted else None)
    accuracy = Comparator.compare_accuracy(stream, compare_func=func)
    iterations: list[Any] = next(iter(accuracy[0].values()), []) if len(accuracy) else []
    checks = {}
    for name in outputs:
        per_batch = [it[name] for it in iterations if name in it]
        checks[name] = ToleranceCheck(
            atol=float(atol or 0.0), rtol=float(rtol or 0.0), batches=len(per_batch),
            failed_batches=sum(not bool(r) for r in per_batch),
            max_abs_error=max((r.max_absdiff for r in per_batch), default=0.0),
            max_rel_error=max((r.max_reldiff for r in per_batch), default=0.0),
        )
    return checks


def _drain(stream: Iterable[Any]) -> dict[str, ToleranceCheck]:
    """Consume `stream` without a tolerance check."""
    for _ in stream:
        pass
    return {}


def _polygraphy_severity() -> int:
    """Polygraphy prints to stdout (critical messages to stderr, and those also raise, so trtq
    reports them): silence it entirely unless trtq runs with debug logging."""
    return int(G_LOGGER.INFO if log.isEnabledFor(logging.DEBUG) else G_LOGGER.CRITICAL + 1)


def compare_models(
    reference: str | Path | onnx.ModelProto,
    candidate: str | Path | onnx.ModelProto,
    batches: Iterable[Mapping[str, np.ndarray]],
    *,
    per_layer: bool = False,
    labels: Mapping[str, int] | None = None,
    keys: Iterable[str] | None = None,
    atol: float | None = None,
    rtol: float | None = None,
    progress: bool = True,
) -> ComparisonResult:
    """Run the FP32 reference and the candidate on the same batches and measure the candidate's error.

    Args:
        reference: the FP32 ONNX model (path or ModelProto), run on ONNX Runtime (CUDA if usable, else CPU).
        candidate: a Q/DQ ONNX model (path or ModelProto), run on ONNX Runtime CPU, or the path of a
            TensorRT engine (.engine/.plan/.trt), run by trtq.engine.runner on the GPU.
        batches: feed dicts, input name -> array with the batch along axis 0 (e.g. a trtq DataReader).
        per_layer: also mark the candidate's quantized layer outputs (and their namesakes in the
            reference) and report their SQNR, worst first. ONNX candidates only. Marking outputs stops
            ONNX Runtime from fusing across them, so output metrics may differ slightly from a run
            without it.
        labels: sample key -> true class index, for the top-1 accuracy of classifier-like outputs.
        keys: one key per sample in data order (e.g. file paths relative to the data folder, as the
            data readers name samples); needed with `labels`.
        atol, rtol: run Polygraphy's elementwise tolerance check on the model outputs with these.
        progress: show a progress bar on stderr.

    Returns:
        The per-output metrics (and per-layer SQNR with `per_layer`).

    Raises:
        ModelError: a model cannot be read or loaded, or the outputs do not match.
        DataError: a batch does not fit the model, inference fails, or there is no data.
        ConfigError: labels without keys.
        MissingDependencyError: an engine is given but TensorRT or a GPU is not available.
    """
    start = time.perf_counter()
    ref_model, ref_label, ref_dir = runners.load(reference)  # over 2 GiB: weights read by ONNX Runtime from their files
    outputs = [o.name for o in graph_outputs(ref_model)]
    feeds = CheckedFeeds(batches, graph_inputs(ref_model), keys, labels)
    total = len(batches) if hasattr(batches, "__len__") else None  # type: ignore[arg-type]
    with G_LOGGER.verbosity(_polygraphy_severity()):
        plan = _plan(ref_model, candidate, per_layer, ref_dir)
        acc = _Accumulators(outputs, plan.layers)
        with progress_bar(total, "compare", "batch", progress) as bar:
            stream = Comparator.run([plan.candidate_runner, plan.reference_runner], data_loader=feeds,
                                    streaming=True)
            measured = _measure(stream, feeds, acc, bar)
            checks = _tolerance_checks(measured, outputs, atol, rtol) if atol is not None or rtol is not None \
                else _drain(measured)
    if acc.batches == 0:
        raise DataError("there is no data to compare: the batches were empty", hint="check the data path")
    metrics = {name: replace(a.result(), tolerance=checks.get(name)) for name, a in acc.outputs.items()}
    return ComparisonResult(
        reference=ref_label, candidate=plan.candidate_label, candidate_kind=plan.candidate_kind,
        samples=acc.samples, batches=acc.batches, seconds=time.perf_counter() - start, outputs=metrics,
        per_layer=acc.layer_results(), warnings=tuple(plan.warnings + _warnings(metrics, labels)),
    )


def _warnings(metrics: Mapping[str, OutputMetrics], labels: Mapping[str, int] | None) -> list[str]:
    warnings = [f"output '{m.name}': {m.nonfinite} NaN/inf values differ from the reference"
                for m in metrics.values() if m.nonfinite]
    if labels is not None:
        classifiers = [m for m in metrics.values() if m.top1_agreement is not None]
        if not classifiers:
            warnings.append("labels were given but no output is classifier-like ([N, C]); accuracy not measured")
        elif not any(m.labeled_samples for m in classifiers):
            warnings.append("labels were given but no sample key matched them; accuracy not measured")
    for warning in warnings:
        log.warning(warning)
    return warnings
