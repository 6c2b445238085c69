"""The precision-choice and benchmark steps of `trtq build` (--target-latency / --max-accuracy-loss, --bench).

    check_selection(config, has_eval)                 before any long step
    config_for_qdq(config)                            the fallback runs with the selection's gate
    selection, source = choose_deployment(...)        after the quantize step: candidates, choice, model to deploy
    bench_report(...)                                 after the compare step, with --bench

Kept out of trtq.pipeline.build so the pipeline reads as before; build calls these when asked.
With a selection, the accuracy gate judges the chosen candidate (its row in the selection table), and
a missed latency target is the gate failure (exit 1). The compare step still checks the INT8 Q/DQ
model the build always writes.
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
from pathlib import Path
from typing import Any

import onnx

from trtq.accuracy.accuracy_loss import parse_accuracy_loss, stricter
from trtq.accuracy.evaluation import Reference
from trtq.accuracy.fallback import FallbackResult
from trtq.accuracy.gates import GateFailure, Gates
from trtq.config import Config
from trtq.data import DataReader
from trtq.engine.cost_model import device
from trtq.errors import ConfigError
from trtq.onnx_model import model as model_io
from trtq.pipeline.precision_candidates import Measure, select_precision
from trtq.pipeline.precision_select import Candidate, Selection
from trtq.qdq import quantize_model, to_fp16_twin
from trtq.qdq.fp16 import convert_to_fp16

log = logging.getLogger(__name__)

BENCH_RUNS = 50


def requested(config: Config) -> bool:
    """Whether the build chooses a precision (a latency target or an accuracy loss is given)."""
    return config.build.target_latency is not None or config.check.max_accuracy_loss is not None


def selection_gates(config: Config) -> Gates:
    """The accuracy gate of the choice: --max-accuracy-loss and the --min-* gates, the stricter winning."""
    return stricter(Gates.from_config(config.check), parse_accuracy_loss(config.check.max_accuracy_loss))


def check_selection(config: Config, has_eval: bool) -> None:
    """Refuse what cannot work before the long steps.

    Raises:
        ConfigError: a bad --max-accuracy-loss or --target-latency, or no held-out samples to measure on.
    """
    if not requested(config):
        return
    selection_gates(config)
    target = config.build.target_latency
    if target is not None and not target > 0:
        raise ConfigError(f"--target-latency must be a positive number of ms, got {target:g}")
    device(config.build.latency_device)
    if not has_eval:
        raise ConfigError("choosing a precision needs held-out samples to measure the candidates on",
                          hint="give --eval DATA or an --eval-fraction above 0")


def config_for_qdq(config: Config) -> Config:
    """`config` with the fallback on and aimed at the selection's gate, when a choice with a gate is asked for:
    the fallback's steps are the INT8 candidates with layers in float."""
    gates = selection_gates(config) if requested(config) else Gates()
    if not gates.any:
        return config
    check = dataclasses.replace(config.check, fallback=True, min_sqnr=gates.min_sqnr,
                                min_top1_agreement=gates.min_top1_agreement, min_cosine=gates.min_cosine)
    return dataclasses.replace(config, check=check)


def choose_deployment(config: Config, model: onnx.ModelProto, amax: dict[str, float], evaluation: DataReader,
                      fallback: FallbackResult | None, engine_possible: bool, out_dir: Path, fp32_path: Path,
                      qdq_source: Path) -> tuple[Selection, Path]:
    """Measure the candidates, choose one, write its model if it is not the Q/DQ one; (selection, model to deploy).

    `fp32_path`: the FP32 model file; `qdq_source`: the model the engine is built from for INT8 (the Q/DQ model
    or its FP16 twin). An FP16 choice writes `<stem>.fp16.onnx`; INT8 with the float layers in FP16 the Q/DQ
    model's FP16 twin `<stem>.qdq.fp16.onnx` (TensorRT 11 takes precisions from the model's types); an INT8
    candidate with other layers in float than the build's Q/DQ model `<stem>.chosen.qdq[.fp16].onnx`.
    """
    stem = fp32_path.stem
    measure = engine_measure(evaluation) if engine_possible else None
    selection = select_precision(model, amax, Reference(model, evaluation.feed_dicts()), selection_gates(config),
                                 config.build.target_latency, device(config.build.latency_device),
                                 options=config.quantize, max_excluded=config.check.max_excluded,
                                 measure=measure, fallback_result=fallback)
    choice = selection.choice
    log.info("%s", selection.summary())
    if choice.precision == "fp32":
        path = fp32_path
    elif choice.precision == "fp16":
        path = out_dir / f"{stem}.fp16.onnx"
        model_io.save_model(convert_to_fp16(_copy(model)), path)
    else:
        path = _int8_model(config, model, amax, choice, fallback, out_dir / stem, qdq_source)
    return selection, path


def _int8_model(config: Config, model: onnx.ModelProto, amax: dict[str, float], choice: Candidate,
                fallback: FallbackResult | None, stem: Path, qdq_source: Path) -> Path:
    """The chosen INT8 candidate's model: the build's Q/DQ model when it has the same layers in float (or its FP16
    twin, for float layers in FP16), else the candidate quantized anew with its own exclusions."""
    built = tuple(node for node, _ in fallback.excluded) if fallback else ()
    fp16 = choice.float_precision == "fp16" and not config.quantize.fp16
    if choice.excluded == built and not fp16:
        return qdq_source
    if choice.excluded == built:
        qdq = model_io.load_model(qdq_source)
        path = stem.with_name(f"{stem.name}.qdq.fp16.onnx")
    else:
        options = dataclasses.replace(config.quantize, fp16=False,
                                      exclude_nodes=[*config.quantize.exclude_nodes, *choice.excluded])
        qdq = quantize_model(model, amax, options).model
        path = stem.with_name(f"{stem.name}.chosen.qdq{'.fp16' if fp16 or config.quantize.fp16 else ''}.onnx")
        fp16 = fp16 or config.quantize.fp16
    model_io.save_model(to_fp16_twin(qdq) if fp16 else qdq, path)
    return path


def _copy(model: onnx.ModelProto) -> onnx.ModelProto:
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    return copy


def engine_config(config: Config, selection: Selection | None) -> Config:
    """The settings the engine step builds with: an FP32 or FP16 choice is recorded as such in the engine's
    sidecar (quantize.precision), not as the INT8 the config names."""
    if selection is None or selection.choice.precision == "int8":
        return config
    return dataclasses.replace(config, quantize=dataclasses.replace(config.quantize,
                                                                    precision=selection.choice.precision))


def failures(selection: Selection) -> list[GateFailure]:
    """The selection's unmet constraint as a gate failure (empty when met)."""
    if selection.met:
        return []
    c = selection.choice
    target = selection.target_latency_ms if selection.target_latency_ms is not None else float("nan")
    return [GateFailure(None, "latency_ms", c.latency_ms, target, f"precision choice: {selection.reason}")]


def engine_measure(evaluation: DataReader) -> Measure:
    """Build an engine of each candidate in a temporary folder and time it on the first held-out batch."""
    from trtq.engine.builder import build_engine
    from trtq.engine.profiles import derive_profiles, record_shapes
    from trtq.runtime.bench_targets import Target, open_target
    from trtq.runtime.latency import time_runs

    feed = next(iter(evaluation.feed_dicts()))
    observed: dict[str, list[tuple[int, ...]]] = {}
    record_shapes(observed, feed)

    def measure(candidate: onnx.ModelProto, name: str) -> float:
        with tempfile.TemporaryDirectory(prefix="trtq-select-") as tmp:
            source, engine = Path(tmp) / "candidate.onnx", Path(tmp) / "candidate.engine"
            model_io.save_model(candidate, source)
            build_engine(source, engine, profiles=derive_profiles(model_io.graph_inputs(candidate), observed))
            with open_target(Target(str(engine), "engine", "tensorrt")) as infer:
                batch = int(next(iter(feed.values())).shape[0])
                return time_runs(lambda: infer(feed), batch=batch, warmup=10, runs=BENCH_RUNS).median_ms

    return measure


def bench_report(config: Config, models: list[Path | None], evaluation: DataReader | None) -> dict[str, Any]:
    """`--bench`: time the build's models (FP32, Q/DQ, the chosen deployment model, the engine; None and repeats
    left out) on held-out samples, as `trtq bench` does."""
    from trtq.pipeline.bench import BenchOptions, run_bench
    from trtq.runtime.bench_inputs import real_batch

    options = BenchOptions(tuple(config.build.bench_batches), 10, BENCH_RUNS)
    feeds, label = None, "random"
    if evaluation is not None:
        kept: dict[int, Any] = {}
        batches = evaluation.feed_dicts()
        feeds = lambda b: kept.setdefault(b, real_batch(batches, b))  # noqa: E731
        label = "held-out samples"
    timed = list(dict.fromkeys(str(m) for m in models if m is not None))
    return run_bench(timed, options, feeds, label).to_dict()
