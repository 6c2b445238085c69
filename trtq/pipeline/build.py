"""`trtq.pipeline.build`: the whole pipeline behind `trtq build --calib DATA MODEL`.

    data -> calibrate (or reuse a valid cache) -> cache + Q/DQ model -> engine (TensorRT + GPU)
         -> accuracy check against ONNX Runtime FP32 on held-out samples -> report

Every CPU step runs everywhere. Without TensorRT or a GPU the engine step is
skipped and the report says why; `--require-engine` turns that into exit 3,
checked before any long work starts.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path

import onnx

from trtq.accuracy import ComparisonResult, GateFailure, Gates, check_gates, compare_models
from trtq.accuracy.activation_equalization import ActivationEqualizationReport, equalize_activations
from trtq.accuracy.evaluation import Batches
from trtq.accuracy.labels import resolve_labels
from trtq.atomic import check_writable
from trtq.cache.sidecar import sidecar_path
from trtq.cluster.ray_runtime import optional_ray
from trtq.config import Config
from trtq.data import DataPlan, DataReader, make_readers
from trtq.errors import MissingDependencyError
from trtq.onnx_model import model as model_io
from trtq.onnx_model.tensors import producer_names
from trtq.pipeline import select_stage
from trtq.pipeline.calibrate import (
    CalibrationOutcome,
    LoadedModel,
    calibrate,
    check_ray,
    default_cache_path,
    with_tensor_scope,
)
from trtq.pipeline.engine_stage import build_pipeline_engine, engine_unavailable_reason
from trtq.pipeline.precision_select import Selection
from trtq.pipeline.prepare import check_prepare, lost_pattern, prepare
from trtq.pipeline.quantize import default_qdq_path, save_qdq_model, usable_ranges
from trtq.pipeline.quantize_stage import check_qdq_options, make_qdq_model, needs_loaded_weights
from trtq.pipeline.weight_only import check_build_options, is_weight_only, quantize_weight_only, uses_gptq
from trtq.qdq import to_fp16_twin
from trtq.qdq.equalization import EqualizationReport, equalize
from trtq.qdq.graph import name_nodes
from trtq.qdq.placement import FLOAT_ATTENTION
from trtq.qdq.pow2 import pow2_summary
from trtq.qdq.smoothquant import parse_setting, smoothquant
from trtq.report import Report, write_report

log = logging.getLogger(__name__)

STAGES = ("data", "calibrate", "quantize", "engine", "compare")


@dataclass
class BuildOutcome:
    """What `build` produced; `failures` are the accuracy gates that failed (exit 1 in the CLI)."""

    out_dir: Path
    report: Report
    cache_path: Path | None  # None for --precision int4-weights (no activation ranges)
    qdq_path: Path
    engine_path: Path | None = None
    comparison: ComparisonResult | None = None
    failures: list[GateFailure] = field(default_factory=list)
    report_paths: list[Path] = field(default_factory=list)
    selection: Selection | None = None  # with --target-latency / --max-accuracy-loss
    layer_nodes: dict[str, str] = field(default_factory=dict)  # per-layer tensor -> FP32 node (the layer's name)


def default_out_dir(model_path: Path) -> Path:
    """`<model folder>/<model stem>_trtq/`."""
    return model_path.parent / f"{model_path.stem}_trtq"


def _announce(stage: str, text: str) -> None:
    log.info("[%d/%d] %s: %s", STAGES.index(stage) + 1, len(STAGES), stage, text)


def build(model_path: str | Path, config: Config, show_progress: bool = True,
          plan: DataPlan | None = None) -> BuildOutcome:
    """Run the pipeline on `model_path` as `config` says; write everything into the output folder.

    `plan`: data readers already made (e.g. by trtq.build from a custom source); else from the config.
    With --ray one Ray instance serves calibration and the accuracy search (started once).

    Raises:
        MissingDependencyError: `--require-engine` where TensorRT or a GPU is missing (before any work),
            or --ray without Ray installed.
        TrtqError: bad model, data, cache or config (from the step that found it).
    """
    check_ray(config)
    with optional_ray(config.cluster):
        return _build(model_path, config, show_progress, plan)


def _build(model_path: str | Path, config: Config, show_progress: bool, plan: DataPlan | None) -> BuildOutcome:
    model_path = Path(model_path)
    out_dir = Path(config.out_dir) if config.out_dir else default_out_dir(model_path)
    config = dataclasses.replace(config, out_dir=str(out_dir))
    check_writable(out_dir)
    no_engine = engine_unavailable_reason()
    if no_engine and config.build.require_engine:
        raise MissingDependencyError(f"--require-engine: cannot build a TensorRT engine here ({no_engine})",
                                     hint="run on a machine with TensorRT and a CUDA GPU, or drop --require-engine")
    report = Report(command="build")
    report.set_config(config)
    model, weights_dir, by_reference = _load(model_path, config)
    inputs, fp = model_io.graph_inputs(model), model_io.fingerprint(model, weights_dir)
    report.provenance.update(model=str(model_path), model_graph_sha256=fp.graph, model_weights_sha256=fp.weights)

    _announce("data", "opening calibration and evaluation data")
    with report.stage("data"):
        plan = make_readers(config, inputs, default_eval_fraction=0.2) if plan is None else plan
    check_qdq_options(config, has_eval=plan.eval is not None)
    select_stage.check_selection(config, has_eval=plan.eval is not None)
    if is_weight_only(config.quantize):
        check_build_options(config)
    parse_setting(config.quantize.smoothquant)  # a bad value fails now, not after calibration
    log.info("%s", plan.description)
    report.provenance.update(data=plan.description, calibration_samples=plan.calib.num_samples,
                             evaluation_samples=plan.eval.num_samples if plan.eval else 0)
    for warning in plan.warnings:
        report.warn(warning)
    if is_weight_only(config.quantize):
        return _build_weight_only(model_path, model, config, plan, report, no_engine, show_progress)

    check_prepare(config)
    model, prepared = prepare(model, model_path, out_dir, config, report, plan.calib.feed_dicts,
                              plan.eval.feed_dicts if plan.eval is not None else None)
    model, calib_path, config = _equalize(model, model_path, out_dir, config, report, plan.calib.feed_dicts, prepared)
    config = with_tensor_scope(config, model, default_cache_path(calib_path, config))
    _announce("calibrate", f"{config.calibration.method} ranges of the {config.calibration.tensors} tensors")
    # The model calibration reads is the one loaded above unless a prepared or equalized one was written.
    loaded = LoadedModel(model, fp) if by_reference and calib_path == model_path else None
    with report.stage("calibrate"):
        calibration = calibrate(calib_path, config, show_progress, plan=plan, loaded=loaded)
    _record_calibration(report, calibration)
    _record_shapes(report, plan.calib)

    _announce("quantize", f"{config.quantize.precision} Q/DQ model")
    with report.stage("quantize"):
        amax, warnings = usable_ranges(calibration.table, model, force=config.calibration.force,
                                       source=str(calibration.cache_path), options=config.quantize,
                                       weights_dir=weights_dir, fingerprint=fp if calib_path == model_path else None)
        smoothed = smoothquant(model, amax, calibration.stats, config.quantize.smoothquant, weights_dir)
        log.info("%s", smoothed.note)
        report.info.append(smoothed.note)
        qdq = make_qdq_model(smoothed.model, smoothed.amax, select_stage.config_for_qdq(config), plan.calib,
                             plan.eval, show_progress, weights_dir=weights_dir)
        qdq_path = default_qdq_path(model_path, out_dir)
        save_qdq_model(qdq.model, qdq_path, weights_dir)
        engine_source = qdq_path
        if config.quantize.fp16:  # TensorRT 11 takes precision from the model; ORT checks the FP32 twin
            engine_source = default_qdq_path(model_path, out_dir, fp16=True)
            save_qdq_model(to_fp16_twin(qdq.model), engine_source)
            report.add_artifact("qdq_model_fp16", engine_source)
    report.add_artifact("qdq_model", qdq_path)
    report.provenance["quantized"] = qdq.result.report.summary().splitlines()[0]
    report.accuracy = {**qdq.to_dict(), "equalization": report.accuracy.get("equalization") if report.accuracy
                       else None}
    report.info.extend(qdq.summaries())  # make_qdq_model logged each as it ended
    float_attention = sum(s.reason.startswith(FLOAT_ATTENTION) for s in qdq.result.report.skipped)
    if float_attention:
        report.info.append(f"{float_attention} attention MatMuls (Q@K^T, softmax@V) left float (--attention float): "
                           + ("FP16 in the engine" if config.quantize.fp16 else
                              "TensorRT runs them in FP32 unless you build with --fp16")
                           + "; --attention int8 quantizes them (TensorRT's INT8 fused attention)")
    if config.quantize.pow2:
        report.info.append(pow2_summary(qdq.model))
    if config.prepare.prune and (lost := lost_pattern(model, qdq.model)):
        report.warn(lost)
    if qdq.fallback or (qdq.bias_correction and qdq.bias_correction.sqnr_before is not None):
        report.info.append("the fallback / bias correction were judged on the same held-out samples the accuracy "
                           "check reports, so those numbers are optimistic; check once more on other data with "
                           "`trtq compare FP32 QDQ --data OTHER`")
    for warning in warnings + qdq.result.report.warnings:
        report.warn(warning)
    outcome = BuildOutcome(out_dir, report, calibration.cache_path, qdq_path)
    if select_stage.requested(config) and plan.eval is not None:
        with report.stage("select"):
            outcome.selection, engine_source = select_stage.choose_deployment(
                config, smoothed.model, smoothed.amax, plan.eval, qdq.fallback, not no_engine, out_dir,
                calib_path, engine_source)
        report.selection = outcome.selection.to_dict()
        report.info.append(outcome.selection.summary())
        report.add_artifact("deployment_model", engine_source)

    _announce("engine", "TensorRT" if not no_engine else f"skipped ({no_engine})")
    if no_engine:
        report.skip("engine", f"{no_engine}; the Q/DQ model is checked on ONNX Runtime CPU instead")
    else:
        with report.stage("engine"):
            info = build_pipeline_engine(select_stage.engine_config(config, outcome.selection), engine_source,
                                         calib_path, out_dir / f"{model_path.stem}.engine", inputs=inputs,
                                         calib=plan.calib, cache_path=calibration.cache_path, fingerprint=fp,
                                         evaluate=plan.eval)
        outcome.engine_path = info.engine_path
        report.add_artifact("engine", info.engine_path)
        if info.sparse_weights:
            report.info.append("engine built with BuilderFlag.SPARSE_WEIGHTS: the model's 2:4 sparse weights may "
                               "run on sparse kernels (Ampere and newer)")

    _check_accuracy(config, model_path, outcome, plan, show_progress)
    if outcome.selection is not None:  # the gate judged the chosen candidate; what is left is the latency target
        outcome.failures = select_stage.failures(outcome.selection)
        report.set_gates(outcome.selection.gates, outcome.failures)
    if config.build.bench:
        log.info("timing the models (--bench)")
        with report.stage("bench"):
            report.bench = select_stage.bench_report(config, [model_path, qdq_path, engine_source, outcome.engine_path],
                                                     plan.eval)
    outcome.report_paths = write_report(report, out_dir)
    return outcome


def _load(model_path: Path, config: Config) -> tuple[onnx.ModelProto, Path | None, bool]:
    """The model, with the weights of one over 2 GiB left in their files (model_io.load_model_by_reference)
    unless a step that rewrites weights in memory (or the precision selection) is on; it then needs them loaded.
    The flag says whether the model is load_model_by_reference's (calibration can take it as it is)."""
    model, weights_dir = model_io.load_model_by_reference(model_path)
    if weights_dir is not None and (needs_loaded_weights(config) or select_stage.requested(config)):
        return model_io.load_model(model_path), None, False
    return model, weights_dir, True


def _build_weight_only(model_path: Path, model: onnx.ModelProto, config: Config, plan: DataPlan, report: Report,
                       no_engine: str | None, show_progress: bool) -> BuildOutcome:
    """--precision int4-weights: no calibration pass and no cache; INT4 weights (GPTQ from the calibration
    data with --weight-rounding learned), then the engine and the accuracy check as in any build."""
    out_dir = Path(str(config.out_dir))
    report.skip("calibrate", "--precision int4-weights quantizes weights only: no activation ranges")
    rounding = "clip search + gptq" if uses_gptq(config.quantize) else "nearest"
    _announce("quantize", f"int4-weights ({rounding}, block {config.quantize.block_size})")
    with report.stage("quantize"):
        int4 = quantize_weight_only(model, config.quantize, plan.calib.feed_dicts())
        qdq_path = default_qdq_path(model_path, out_dir)
        save_qdq_model(int4.model, qdq_path)
    report.add_artifact("qdq_model", qdq_path)
    report.provenance["quantized"] = int4.report.summary()
    report.accuracy = {"fallback": None, "bias_correction": None, "sensitivity": None, "int4_weights": int4.to_dict()}
    report.info.extend(int4.summaries())
    outcome = BuildOutcome(out_dir, report, None, qdq_path)
    _announce("engine", "TensorRT" if not no_engine else f"skipped ({no_engine})")
    if no_engine:
        report.skip("engine", f"{no_engine}; the INT4 model is checked on ONNX Runtime CPU instead")
    else:
        with report.stage("engine"):
            info = build_pipeline_engine(config, qdq_path, model_path, out_dir / f"{model_path.stem}.engine",
                                         inputs=model_io.graph_inputs(model), calib=plan.calib, cache_path=None,
                                         fingerprint=model_io.fingerprint(model), evaluate=plan.eval)
        outcome.engine_path = info.engine_path
        report.add_artifact("engine", info.engine_path)
    _check_accuracy(config, model_path, outcome, plan, show_progress)
    outcome.report_paths = write_report(report, out_dir)
    return outcome


def _equalize(model: onnx.ModelProto, model_path: Path, out_dir: Path, config: Config, report: Report,
              batches: Batches, prepared: Path | None = None) -> tuple[onnx.ModelProto, Path, Config]:
    """Equalization (--equalization cle|activations, not --fast): the equalized FP32 model, written to
    `<out>/<stem>.equalized.onnx`, is what calibration, quantization and an implicit engine use; the cache
    keeps the name `<stem>.cache`. The accuracy check still compares with the original model."""
    q = config.quantize
    if q.equalization == "none" or q.fast:
        return model, prepared or model_path, config
    with report.stage("equalize"):
        done: EqualizationReport | ActivationEqualizationReport
        if q.equalization == "cle":
            equalized, done = equalize(model)
        else:
            equalized, done = equalize_activations(model, batches)
        path = out_dir / f"{model_path.stem}.equalized.onnx"
        out_dir.mkdir(parents=True, exist_ok=True)
        model_io.save_model(equalized, path)
    log.info("%s", done.summary())
    report.info.append(done.summary())
    report.accuracy = {"equalization": done.to_dict()}
    report.add_artifact("equalized_model", path)
    cache = config.calibration.cache or str(out_dir / f"{model_path.stem}.cache")
    config = dataclasses.replace(config, calibration=dataclasses.replace(config.calibration, cache=cache))
    return equalized, path, config


def _record_calibration(report: Report, calibration: CalibrationOutcome) -> None:
    report.add_artifact("calibration_cache", calibration.cache_path)
    if sidecar_path(calibration.cache_path).is_file():  # the provenance the next run checks the cache against
        report.add_artifact("calibration_sidecar", sidecar_path(calibration.cache_path))
    report.provenance.update(cache_reused=calibration.reused, algorithm=calibration.table.algorithm)
    if calibration.stats is not None and calibration.table.provenance is not None:  # the samples that ran
        report.provenance["calibration_samples"] = calibration.table.provenance.num_samples
    if calibration.table.provenance and calibration.table.provenance.method_counts:
        report.provenance["auto_method_counts"] = calibration.table.provenance.method_counts
    if calibration.reused:
        report.info.append(f"calibration cache {calibration.cache_path} reused: {calibration.reuse_reason}")
    if calibration.not_reused:  # calibrate() said it on the console before the work
        report.info.append(calibration.not_reused)
    report.info.extend(calibration.notes)
    for warning in calibration.warnings:
        report.warn(warning)
    if calibration.stats:
        report.ranges = {name: (calibration.table.amax[name], stats.hist.amax)
                         for name, stats in calibration.stats.items() if name in calibration.table.amax}
        report.range_methods = {name: calibration.methods[name] for name in report.ranges
                                if name in calibration.methods}


def _record_shapes(report: Report, calib: DataReader) -> None:
    """The distinct batch shapes calibration ran on, per input (dynamic axes show as several shapes).

    Recorded while calibration read the data, so nothing is decoded again; absent when a cache was reused.
    """
    if calib.batch_shapes:
        report.provenance["calibration_shapes"] = {
            name: ["x".join(map(str, shape)) for shape in sorted(set(shapes))]
            for name, shapes in calib.batch_shapes.items()}


def _layer_nodes(model_path: Path, candidate: Path, result: ComparisonResult) -> dict[str, str]:
    """tensor -> the node producing it, for the per-layer entries: in the Q/DQ model, whose nodes carry the
    names the quantizer, fallback and sensitivity gave them (after SmoothQuant or equalization added nodes);
    for an engine, in the FP32 model named the same way. The graph only: no weights are read."""
    if not result.per_layer:
        return {}
    onnx_candidate = candidate.suffix.lower() == ".onnx"
    graph = model_io.load_model(candidate if onnx_candidate else model_path, load_weights=False)
    name_nodes(graph)
    return producer_names(graph, (layer.tensor for layer in result.per_layer))


def _check_accuracy(config: Config, model_path: Path, outcome: BuildOutcome, plan: DataPlan,
                    show_progress: bool) -> None:
    """Compare the engine (or the Q/DQ model on CPU) with FP32 on the held-out samples; evaluate gates."""
    report = outcome.report
    candidate = outcome.engine_path or outcome.qdq_path
    if plan.eval is None:
        report.skip("compare", "no held-out samples: give --eval DATA or --eval-fraction above 0")
        _announce("compare", "skipped (no held-out samples)")
        return
    _announce("compare", f"{candidate.name} vs FP32 on {plan.eval.num_samples} held-out samples")
    labels = resolve_labels(config.check.labels, config.data.eval or config.data.calib)
    with report.stage("compare"):
        result = compare_models(model_path, candidate, plan.eval.feed_dicts(), per_layer=config.check.per_layer,
                                labels=labels, keys=plan.eval.keys if labels else None, atol=config.check.atol,
                                rtol=config.check.rtol, progress=show_progress)
    outcome.layer_nodes = _layer_nodes(model_path, candidate, result)
    report.set_comparison(result, outcome.layer_nodes)
    outcome.comparison = result
    gates = Gates.from_config(config.check)
    if gates.any:
        outcome.failures = check_gates(result, gates)
        report.set_gates(gates, outcome.failures)
