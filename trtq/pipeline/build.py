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
from trtq.accuracy.labels import resolve_labels
from trtq.atomic import check_writable
from trtq.cluster.ray_runtime import optional_ray
from trtq.config import Config
from trtq.data import DataPlan, DataReader, make_readers
from trtq.errors import MissingDependencyError
from trtq.onnx_model import model as model_io
from trtq.pipeline.calibrate import CalibrationOutcome, calibrate, check_ray, default_cache_path, with_tensor_scope
from trtq.pipeline.engine_stage import build_pipeline_engine, engine_unavailable_reason
from trtq.pipeline.quantize import default_qdq_path, save_qdq_model, usable_ranges
from trtq.pipeline.quantize_stage import check_qdq_options, make_qdq_model
from trtq.qdq import to_fp16_twin
from trtq.qdq.equalization import equalize
from trtq.qdq.smoothquant import parse_setting, smoothquant
from trtq.report import Report, write_report

log = logging.getLogger(__name__)

STAGES = ("data", "calibrate", "quantize", "engine", "compare")


@dataclass
class BuildOutcome:
    """What `build` produced; `failures` are the accuracy gates that failed (exit 1 in the CLI)."""

    out_dir: Path
    report: Report
    cache_path: Path
    qdq_path: Path
    engine_path: Path | None = None
    comparison: ComparisonResult | None = None
    failures: list[GateFailure] = field(default_factory=list)
    report_paths: list[Path] = field(default_factory=list)


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
    model = model_io.load_model(model_path)
    inputs, fp = model_io.graph_inputs(model), model_io.fingerprint(model)
    report.provenance.update(model=str(model_path), model_graph_sha256=fp.graph, model_weights_sha256=fp.weights)

    _announce("data", "opening calibration and evaluation data")
    with report.stage("data"):
        plan = make_readers(config, inputs, default_eval_fraction=0.2) if plan is None else plan
    check_qdq_options(config, has_eval=plan.eval is not None)
    parse_setting(config.quantize.smoothquant)  # a bad value fails now, not after calibration
    log.info("%s", plan.description)
    report.provenance.update(data=plan.description, calibration_samples=plan.calib.num_samples,
                             evaluation_samples=plan.eval.num_samples if plan.eval else 0)
    for warning in plan.warnings:
        report.warn(warning)

    model, calib_path, config = _equalize(model, model_path, out_dir, config, report)
    config = with_tensor_scope(config, model, default_cache_path(calib_path, config))
    _announce("calibrate", f"{config.calibration.method} ranges of the {config.calibration.tensors} tensors")
    with report.stage("calibrate"):
        calibration = calibrate(calib_path, config, show_progress, plan=plan)
    _record_calibration(report, calibration)
    _record_shapes(report, plan.calib)

    _announce("quantize", f"{config.quantize.precision} Q/DQ model")
    with report.stage("quantize"):
        amax, warnings = usable_ranges(calibration.table, model, force=config.calibration.force,
                                       source=str(calibration.cache_path), options=config.quantize)
        smoothed = smoothquant(model, amax, calibration.stats, config.quantize.smoothquant)
        log.info("%s", smoothed.note)
        report.info.append(smoothed.note)
        qdq = make_qdq_model(smoothed.model, smoothed.amax, config, plan.calib, plan.eval, show_progress)
        qdq_path = default_qdq_path(model_path, out_dir)
        save_qdq_model(qdq.model, qdq_path)
        engine_source = qdq_path
        if config.quantize.fp16:  # TensorRT 11 takes precision from the model; ORT checks the FP32 twin
            engine_source = default_qdq_path(model_path, out_dir, fp16=True)
            save_qdq_model(to_fp16_twin(qdq.model), engine_source)
            report.add_artifact("qdq_model_fp16", engine_source)
    report.add_artifact("qdq_model", qdq_path)
    report.provenance["quantized"] = qdq.result.report.summary().splitlines()[0]
    report.accuracy = {**qdq.to_dict(), "equalization": report.accuracy.get("equalization") if report.accuracy
                       else None}
    for line in qdq.summaries():
        log.info("%s", line)
        report.info.append(line)
    if qdq.fallback or (qdq.bias_correction and qdq.bias_correction.sqnr_before is not None):
        report.info.append("the fallback / bias correction were judged on the same held-out samples the accuracy "
                           "check reports, so those numbers are optimistic; check once more on other data with "
                           "`trtq compare FP32 QDQ --data OTHER`")
    for warning in warnings + qdq.result.report.warnings:
        report.warn(warning)
    outcome = BuildOutcome(out_dir, report, calibration.cache_path, qdq_path)

    _announce("engine", "TensorRT" if not no_engine else f"skipped ({no_engine})")
    if no_engine:
        report.skip("engine", f"{no_engine}; the Q/DQ model is checked on ONNX Runtime CPU instead")
    else:
        with report.stage("engine"):
            info = build_pipeline_engine(config, engine_source, calib_path, out_dir / f"{model_path.stem}.engine",
                                         inputs=inputs, calib=plan.calib, cache_path=calibration.cache_path,
                                         fingerprint=fp, evaluate=plan.eval)
        outcome.engine_path = info.engine_path
        report.add_artifact("engine", info.engine_path)

    _check_accuracy(config, model_path, outcome, plan, show_progress)
    outcome.report_paths = write_report(report, out_dir)
    return outcome


def _equalize(model: onnx.ModelProto, model_path: Path, out_dir: Path, config: Config,
              report: Report) -> tuple[onnx.ModelProto, Path, Config]:
    """Cross-layer equalization (--equalization cle, not --fast): the equalized FP32 model, written to
    `<out>/<stem>.equalized.onnx`, is what calibration, quantization and an implicit engine use; the cache
    keeps the name `<stem>.cache`. The accuracy check still compares with the original model."""
    q = config.quantize
    if q.equalization != "cle" or q.fast:
        return model, model_path, config
    with report.stage("equalize"):
        equalized, done = equalize(model)
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
    report.provenance.update(cache_reused=calibration.reused, algorithm=calibration.table.algorithm)
    if calibration.stats is not None and calibration.table.provenance is not None:  # the samples that ran
        report.provenance["calibration_samples"] = calibration.table.provenance.num_samples
    if calibration.table.provenance and calibration.table.provenance.method_counts:
        report.provenance["auto_method_counts"] = calibration.table.provenance.method_counts
    if calibration.reused:
        report.info.append(f"calibration cache {calibration.cache_path} matched the model and was reused")
    if calibration.not_reused:
        log.info("%s", calibration.not_reused)
        report.info.append(calibration.not_reused)
    report.info.extend(calibration.notes)
    for warning in calibration.warnings:
        report.warn(warning)
    if calibration.stats:
        report.ranges = {name: (calibration.table.amax[name], stats.hist.amax)
                         for name, stats in calibration.stats.items() if name in calibration.table.amax}


def _record_shapes(report: Report, calib: DataReader) -> None:
    """The distinct batch shapes calibration ran on, per input (dynamic axes show as several shapes).

    Recorded while calibration read the data, so nothing is decoded again; absent when a cache was reused.
    """
    if calib.batch_shapes:
        report.provenance["calibration_shapes"] = {
            name: ["x".join(map(str, shape)) for shape in sorted(set(shapes))]
            for name, shapes in calib.batch_shapes.items()}


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
    report.set_comparison(result)
    outcome.comparison = result
    gates = Gates.from_config(config.check)
    if gates.any:
        outcome.failures = check_gates(result, gates)
        report.set_gates(gates, outcome.failures)
