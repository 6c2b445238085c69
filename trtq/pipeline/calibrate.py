"""`trtq.pipeline.calibrate`: FP32 model + real data -> calibration table and TensorRT cache.

Steps: load the model, reuse a valid cache if one exists, else stream the data
through ONNX Runtime into observers (or merge observers saved earlier with
--save-stats, without data or a model run), turn each tensor's statistics into
an amax with the chosen algorithm, and write the cache with its provenance sidecar.

A cache of this model made with other settings (method, its parameters, histogram
bins, tensor scope, as its sidecar records them) or other data (which samples, their
files' contents, the preprocessing) is not reused: the ranges are made again, from the
statistics the cache's run saved (--save-stats) when that file still matches, else by
running the model. One INFO line says why before that work starts; the outcome keeps
it (`not_reused`), and a reused cache's outcome says why it matched (`reuse_reason`).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import onnx
import onnxruntime

from trtq.atomic import check_writable
from trtq.cache import CalibrationTable, Provenance, names_sha256, read_cache, validate_table, write_cache
from trtq.cache.table import json_params
from trtq.cache.trt_format import encode_trt_version, normalize_trt_version
from trtq.cache.validate import check_coverage
from trtq.calibration.collect import DATA_REASONS, CollectionResult, collect_statistics
from trtq.calibration.microbatch import MIB
from trtq.calibration.ranges import (
    check_pow2,
    check_settings,
    method_counts_of,
    needs_ema,
    range_warnings,
    ranges_and_methods,
    recorded_params,
    uses_bins,
)
from trtq.calibration.stats_files import StatsRecord, load_stats, save_stats
from trtq.calibrators import TensorStats
from trtq.config import CalibrationConfig, Config
from trtq.data import DataPlan, make_readers
from trtq.data.sanity import SampleCheck
from trtq.errors import CacheError, ConfigError, DataError, TrtqError
from trtq.onnx_model import model as model_io
from trtq.onnx_model.masks import summary_lines
from trtq.onnx_model.tensors import activation_tensors, attention_masks, conv_only_inputs
from trtq.onnx_model.token_axes import attention_mask_input
from trtq.progress import timed_step
from trtq.qdq.needed import qdq_tensors
from trtq.qdq.placement import planned_activations
from trtq.runtime.session import providers_for

log = logging.getLogger(__name__)

@dataclass
class CalibrationOutcome:
    """The table, where it was written, and whether an existing cache was reused.

    Attributes:
        stats: tensor -> observers when the model ran or statistics were loaded (None when a
            cache was reused); every range algorithm can be evaluated on them without running
            the model again.
        stats_files: the statistics files the ranges were computed from (--load-stats, or the file an
            outdated cache's run saved), if any.
        saved_stats: where the statistics were saved (--save-stats), if anywhere.
        not_reused: why an existing cache of this model was not reused (it was made with other
            settings), or None.
        notes: what needs no action, one line per kind (e.g. attention-mask tensors left out).
        reuse_reason: why a reused cache was taken (what was checked), or None.
        methods: tensor -> the range method that made its amax (auto's per-tensor choice), when ranges
            were computed in this run.
    """

    table: CalibrationTable
    cache_path: Path
    reused: bool
    warnings: list[str] = field(default_factory=list)
    stats: dict[str, TensorStats] | None = None
    seconds: float = 0.0
    stats_files: tuple[str, ...] = ()
    saved_stats: Path | None = None
    not_reused: str | None = None
    notes: list[str] = field(default_factory=list)
    reuse_reason: str | None = None
    methods: dict[str, str] = field(default_factory=dict)


def default_cache_path(model_path: Path, config: Config) -> Path:
    """`--cache`, else `<out_dir or model folder>/<model stem>.cache`."""
    if config.calibration.cache:
        return Path(config.calibration.cache)
    folder = Path(config.out_dir) if config.out_dir else model_path.parent
    return folder / f"{model_path.stem}.cache"


def settings_changes(provenance: Provenance | None, cal: CalibrationConfig, names: list[str],
                     fp: model_io.ModelFingerprint, plan: DataPlan | None = None, pow2: bool = False) -> list[str]:
    """How the settings a cache of this model was made with differ from `cal` (and, when `plan` is
    given, whether it was made from other calibration files).

    Empty when they are the same, or when the cache has no provenance or belongs to another
    model (validate_table decides about those).
    """
    same_model = provenance is not None and (provenance.model_graph_sha256 == fp.graph
                                             and provenance.model_weights_sha256 == fp.weights)
    if not same_model:
        return []
    changes = []
    if provenance.algorithm != cal.method:
        changes.append(f"it was made with --method {provenance.algorithm}, now {cal.method}")
    elif provenance.algorithm_params != (params := json_params(recorded_params(cal, pow2))):
        changes.append(f"its parameters differ ({_param_changes(provenance.algorithm_params, params)})")
    if uses_bins(cal.method) and provenance.num_bins != cal.num_bins:
        changes.append(f"it was made with --num-bins {provenance.num_bins}, now {cal.num_bins}")
    if provenance.tensor_names_sha256 != names_sha256(n for n in names if n not in provenance.left_out):
        changes.append(f"it covers other tensors than --tensors {cal.tensors} selects")
    if plan is not None and getattr(plan.calib, "source", None) is None:
        changes.append("its data came from a stream (a data-loader script or reader object), "
                       "which cannot be checked against the cache before it is read")
    # Other data is named only when nothing else changed (other settings already say the run differs).
    if not changes and plan is not None and provenance.data_sha256 not in (None, plan.calib_sha256()):
        changes.append(f"it was made from other calibration data: {data_change(provenance, plan)}")
    return changes


def data_change(provenance: Provenance, plan: DataPlan) -> str:
    """Which part of the calibration data differs from the one `provenance` records: the samples
    selected, their files' contents, the preprocessing (naming the settings), as far as it records them."""
    then, now, count = provenance.data_parts, plan.calib_parts(), plan.calib.num_samples
    if not then or not now:  # a sidecar older than the per-part record
        return (f"not the {count} samples given now (other files or file contents, preprocessing or sample "
                "selection; its sidecar does not say which)")
    parts = []
    if then.get("samples") != now.get("samples"):
        parts.append(f"other samples are selected ({provenance.num_samples} then, {count} now: other file names, "
                     "--max-samples, --eval-fraction or its --seed, --video-stride, or random data's --seed)")
    elif then.get("contents") != now.get("contents"):
        parts.append(f"the files of its {count} samples have other contents (same names)")
    if then.get("preprocess") != now.get("preprocess"):
        parts.append(f"the preprocessing changed ({_setting_changes(provenance.preprocess, plan.calib_preprocess())})")
    return "; ".join(parts) or f"not the {count} samples given now"


def _setting_changes(old: Mapping[str, object] | None, new: Mapping[str, object] | None) -> str:
    """`mean [0, 0, 0] -> [0.5, 0.5, 0.5], ...` for the preprocessing settings that differ."""
    if old is None or new is None:
        return "the images were preprocessed then, not now" if new is None else "no preprocessing recorded then"
    changed = ", ".join(f"--{k.replace('_', '-')} {old.get(k, 'unset')} -> {new.get(k, 'unset')}"
                        for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k))
    return changed or "same settings; another trtq version recorded them otherwise"


def reheaded(table: CalibrationTable, cache_path: Path, trt_version: str | None) -> CalibrationTable:
    """The reused `table`, its file re-headed for `trt_version` when its header names another version.

    TensorRT ignores a cache whose header is another version's, silently, so a reused cache is
    written again (same scales, new header; the sidecar follows) and the console says so.
    """
    if trt_version is None or table.trt_version is None:
        return table
    wanted = normalize_trt_version(trt_version)
    if encode_trt_version(wanted) == encode_trt_version(table.trt_version):
        return table
    log.info("re-heading %s for TensorRT %s (its header was for %s); the scales are unchanged",
             cache_path, wanted, table.trt_version)
    table = dataclasses.replace(table, trt_version=wanted)
    write_cache(table, cache_path, wanted)
    return table


def _reuse_reason(provenance: Provenance | None, plan: DataPlan | None) -> str:
    """Why a cache is reused, saying what was checked and what could not be."""
    if provenance is None:
        return "it has no provenance sidecar, so only its tensor names were checked against the model"
    if plan is None:
        return "it matches the model and the settings; the calibration data was not checked (no --calib given)"
    if provenance.data_sha256 is None:
        return "it matches the model and the settings; it records no data fingerprint to check the data against"
    return (f"it matches the model, the settings and the calibration data ({plan.calib.num_samples} samples: "
            "file contents, preprocessing and selection)")


def _param_changes(old: Mapping[str, object], new: Mapping[str, object]) -> str:
    keys = sorted(set(old) | set(new))
    return ", ".join(f"{k} {old.get(k, 'unset')} -> {new.get(k, 'unset')}"
                     for k in keys if old.get(k) != new.get(k))


@dataclass(frozen=True)
class LoadedModel:
    """The model of `calibrate`'s model_path as load_model_by_reference returns it, and its fingerprint:
    `trtq build` hands on what it has read, so that the model is not parsed and its weights are not hashed
    a second time (0.4 s and 0.7 s of all-mpnet-base-v2's calibration on a loaded 2-core machine)."""

    model: onnx.ModelProto
    fingerprint: model_io.ModelFingerprint


def calibrate(model_path: str | Path, config: Config, show_progress: bool = True,
              plan: DataPlan | None = None, loaded: LoadedModel | None = None) -> CalibrationOutcome:
    """Calibrate `model_path` as `config` says, or reuse a cache that matches the model.

    The statistics come from running the model on the calibration data, or, with
    `calibration.load_stats`, from statistics files (then no data and no model run are
    needed). With `calibration.save_stats` they are also written to a file. A cache is
    reused only when no statistics are loaded, saved or compared (`compare_methods`), and,
    if its sidecar says it was made for this model, only when it was made with the same
    settings (settings_changes); otherwise `not_reused` of the outcome says why.

    Args:
        model_path: the FP32 ONNX model.
        config: the resolved config (data, preprocess and calibration sections are used).
        show_progress: draw a progress bar on stderr.
        plan: data readers already made (by `trtq build`); made from the config if None.
        loaded: `model_path` already loaded and fingerprinted (by `trtq build`); read here if None.

    Raises:
        DataError: no or bad data (also when a cache made with other settings must be made again
            and no data is given), or a NaN/Inf activation with nan_policy 'error'.
        CacheError: an existing cache or a statistics file does not match the model, or is corrupt.
    """
    model_path = Path(model_path)
    # Over 2 GiB the weights stay in their files: ONNX Runtime reads them from there (collect_statistics).
    if loaded is None:
        model, weights_dir = model_io.load_model_by_reference(model_path)
        loaded = LoadedModel(model, model_io.fingerprint(model, weights_dir))
    model, fp = loaded.model, loaded.fingerprint
    cal = config.calibration
    check_settings(cal)
    check_pow2(cal, config.quantize.pow2)
    check_ray(config)
    names = calibration_tensors(model, config)
    notes = summary_lines(attention_masks(model))
    cache_path = default_cache_path(model_path, config)
    check_writable(cache_path.parent, cache_path)
    if cal.save_stats:
        check_writable(Path(cal.save_stats).parent)
    not_reused, old = None, None
    if cache_path.exists() and not (cal.load_stats or cal.save_stats or cal.compare_methods):
        table = read_cache(cache_path)
        if plan is None and config.data.calib:  # made here once; recalibrating would need it anyway
            plan = make_readers(config, model_io.graph_inputs(model))
        changes = settings_changes(table.provenance, cal, names, fp, plan, pow2=config.quantize.pow2)
        if not changes:
            warnings = validate_table(table, fingerprint=fp, tensor_names=names, force=cal.force,
                                      source=str(cache_path))
            reason = _reuse_reason(table.provenance, plan)
            log.info("reusing calibration cache %s: %s", cache_path, reason)
            table = reheaded(table, cache_path, cal.trt_version)
            return CalibrationOutcome(table, cache_path, reused=True, warnings=warnings, notes=notes,
                                      reuse_reason=reason)
        not_reused, old = f"not reusing {cache_path}: {'; '.join(changes)}", table.provenance
    elif cache_path.exists():
        if not cal.force:
            check_overwrite(cache_path, fp, names)
        not_reused = f"not reusing {cache_path}: {_statistics_wanted(cal)}"

    gathered = _gather(model, model_path, names, fp, config, plan, show_progress, old, not_reused)
    gathered.warnings += range_warnings(gathered.stats, gathered.nonfinite)
    if cal.save_stats:
        save_stats(cal.save_stats, gathered.stats, gathered.record)
    with timed_step(log, f"computing {cal.method} ranges of {len(gathered.stats)} tensors"):
        table, methods = table_and_methods(gathered.stats, gathered.record, names, fp, cal, pow2=config.quantize.pow2,
                                           num_bins=gathered.num_bins, stats_file=_stats_file(cal, gathered.files),
                                           left_out=gathered.left_out)
    write_cache(table, cache_path, cal.trt_version)
    return CalibrationOutcome(
        table, cache_path, reused=False, warnings=gathered.warnings, stats=gathered.stats, seconds=gathered.seconds,
        stats_files=gathered.files, saved_stats=Path(cal.save_stats) if cal.save_stats else None,
        not_reused=gathered.note, methods=methods,
        notes=notes + summary_lines(gathered.left_out, "from the calibration data", DATA_REASONS),
    )


def _statistics_wanted(cal: CalibrationConfig) -> str:
    """Why a cache is not even compared with the settings: the run needs statistics, which a cache lacks."""
    if cal.load_stats:
        return "the ranges are made from the statistics of --load-stats"
    wanted = "--save-stats saves" if cal.save_stats else "--compare-methods compares the methods on"
    return f"{wanted} the model's activation statistics, which a cache does not hold"


def check_ray(config: Config) -> None:
    """With --ray: fail now, not after the data is opened, when Ray is missing (exit 3) or its flags are bad."""
    if config.cluster.ray is None:
        return
    from trtq.cluster.ray_runtime import check_cluster_config, require_ray

    check_cluster_config(config.cluster)
    require_ray()


def check_overwrite(cache_path: Path, fp: model_io.ModelFingerprint, names: list[str]) -> None:
    """Refuse to replace a cache that belongs to another model (its provenance says so, or without one,
    it names too few of this model's tensors); --force skips this check.

    Raises:
        CacheError: the cache is another model's, or unreadable (it may be another tool's file).
    """
    try:
        table = read_cache(cache_path)
    except CacheError as exc:
        raise CacheError(f"refusing to overwrite {cache_path}: {exc.message}",
                         hint="choose another --cache, delete the file, or pass --force") from None
    prov = table.provenance
    if prov is not None and (prov.model_graph_sha256, prov.model_weights_sha256) != (fp.graph, fp.weights):
        raise CacheError(f"refusing to overwrite {cache_path}: its sidecar says it was made for another model "
                         f"({prov.model_graph_sha256[:12]}/{prov.model_weights_sha256[:12]}, this one is {fp.short()})",
                         hint="choose another --cache, or pass --force to replace it")
    try:
        check_coverage(table, names, source=str(cache_path))
    except CacheError as exc:
        raise CacheError(f"refusing to overwrite {cache_path}: {exc.message}",
                         hint="choose another --cache, or pass --force to replace it") from None


def calibration_tensors(model: onnx.ModelProto, config: Config) -> list[str]:
    """The tensors `--tensors` selects: 'qdq' those the Q/DQ model quantizes (with the quantize
    section's exclusions), 'auto' (outside `trtq build`) and 'all' every float activation."""
    scope = config.calibration.tensors
    if scope == "qdq":
        return qdq_tensors(model, config.quantize)
    return activation_tensors(model, "all" if scope == "auto" else scope)


def with_tensor_scope(config: Config, model: onnx.ModelProto, cache_path: Path) -> Config:
    """`config` with --tensors auto resolved for `trtq build`: only what the Q/DQ model needs ('qdq'),
    except for TensorRT 10 implicit INT8 (its cache needs every activation) and when the cache
    at `cache_path` already covers every activation (then it is reused as it is)."""
    if config.calibration.tensors != "auto":
        return config
    scope = "all" if config.build.implicit or _covers_all(cache_path, model) else "qdq"
    return dataclasses.replace(config, calibration=dataclasses.replace(config.calibration, tensors=scope))


def _covers_all(cache_path: Path, model: onnx.ModelProto) -> bool:
    if not cache_path.is_file():
        return False
    try:
        provenance = read_cache(cache_path).provenance
    except TrtqError:  # calibrate() reports a bad cache
        return False
    return provenance is not None and provenance.tensor_names_sha256 == names_sha256(activation_tensors(model, "all"))


def make_table(stats: Mapping[str, TensorStats], record: StatsRecord, names: list[str], fp: model_io.ModelFingerprint,
               cal: CalibrationConfig, num_bins: int | None = None, stats_file: str | None = None,
               left_out: Mapping[str, str] | None = None, pow2: bool = False) -> CalibrationTable:
    """The calibration table of `stats` with the configured method, and its provenance (table_and_methods)."""
    return table_and_methods(stats, record, names, fp, cal, num_bins, stats_file, left_out, pow2)[0]


def table_and_methods(stats: Mapping[str, TensorStats], record: StatsRecord, names: list[str],
                      fp: model_io.ModelFingerprint, cal: CalibrationConfig, num_bins: int | None = None,
                      stats_file: str | None = None, left_out: Mapping[str, str] | None = None,
                      pow2: bool = False) -> tuple[CalibrationTable, dict[str, str]]:
    """The calibration table of `stats` with the configured method, its provenance, and which method made
    each tensor's range (auto's choice per tensor; otherwise the method).

    Args:
        num_bins: histogram bins of `stats` (default: the config's).
        stats_file: the one file holding `stats`, if any (recorded so that other settings can reuse it).
        left_out: tensors of `names` calibration left out (mask values in their data) and why.
        pow2: power-of-two scales (QuantizeConfig.pow2), applied to the ranges and recorded.
    """
    amax, methods = ranges_and_methods(stats, cal, pow2)
    counts = method_counts_of(methods) if cal.method == "auto" else {}
    left_out = dict(left_out or {})
    provenance = Provenance(
        model_graph_sha256=fp.graph, model_weights_sha256=fp.weights,
        tensor_names_sha256=names_sha256(n for n in names if n not in left_out), left_out=left_out,
        algorithm=cal.method, num_samples=record.num_samples or 0, data_sha256=record.data_sha256,
        algorithm_params=recorded_params(cal, pow2), num_bins=num_bins if num_bins is not None else cal.num_bins,
        onnxruntime_version=record.onnxruntime_version, random_data=record.random_data, method_counts=counts,
        stats_file=stats_file, data_parts=dict(record.data_parts), preprocess=record.preprocess,
    )
    return CalibrationTable(amax=amax, algorithm=cal.method, provenance=provenance), methods


def _stats_file(cal: CalibrationConfig, loaded: tuple[str, ...]) -> str | None:
    """The one file holding the statistics (--save-stats, or the only file they were loaded from), absolute."""
    if cal.save_stats:
        return str(Path(cal.save_stats).resolve())
    return str(Path(loaded[0]).resolve()) if len(loaded) == 1 else None


@dataclass
class _Gathered:
    """Statistics from a model run or from files, with what the provenance needs."""

    stats: dict[str, TensorStats]
    record: StatsRecord
    num_bins: int
    warnings: list[str]
    seconds: float = 0.0
    files: tuple[str, ...] = ()
    note: str | None = None
    left_out: dict[str, str] = field(default_factory=dict)
    nonfinite: dict[str, int] = field(default_factory=dict)


def _gather(model: onnx.ModelProto, model_path: Path, names: list[str], fp: model_io.ModelFingerprint,
            config: Config, plan: DataPlan | None, show_progress: bool, old: Provenance | None,
            not_reused: str | None) -> _Gathered:
    """The statistics: from --load-stats, from the file an outdated cache's run saved, or from the model.

    Args:
        old, not_reused: provenance of an existing cache made with other settings, and why it is not
            reused (None when there is no such cache).
    """
    cal = config.calibration
    if cal.load_stats:
        if not_reused:
            log.info("%s", not_reused)
        gathered = _load(names, fp, config)
        gathered.files, gathered.note = tuple(cal.load_stats), not_reused
        return gathered
    saved = _saved_stats(old, names, fp, config, plan)
    if saved is not None:
        saved.note = f"{not_reused}; ranges made again from the statistics saved in {old.stats_file} (no model run)"
        log.info("%s", saved.note)
        return saved
    if not_reused and plan is None and not config.data.calib and not config.data.allow_random_data:
        raise DataError(f"{not_reused}, and making it again needs calibration data",
                        hint="give --calib DATA, or the settings the cache was made with to reuse it")
    if not_reused:  # said before the run, which may take minutes
        log.info("%s; recalibrating", not_reused)
    gathered = _collect(model, model_path, names, fp, config, plan, show_progress)
    if not_reused:
        gathered.note = f"{not_reused}; recalibrated"
    return gathered


def _saved_stats(old: Provenance | None, names: list[str], fp: model_io.ModelFingerprint, config: Config,
                 plan: DataPlan | None) -> _Gathered | None:
    """The statistics an outdated cache's run saved (--save-stats), if they serve the new settings.

    They do when the file still loads for this model, the histogram bins and tensors are unchanged,
    the method is not ema (it needs an observer saved only with --method ema) and, when calibration
    data is given, it is the data they were collected on.
    """
    cal = config.calibration
    if (old is None or not old.stats_file or not Path(old.stats_file).is_file() or needs_ema(cal.method)
            or old.num_bins != cal.num_bins or old.tensor_names_sha256 != names_sha256(names)):
        return None
    try:
        loaded = load_stats([old.stats_file], names, fingerprint=fp)
    except CacheError as exc:
        log.info("not using the saved statistics %s: %s", old.stats_file, exc.message)
        return None
    # calibrate() made `plan` whenever --calib was given
    if plan is not None and loaded.record.data_sha256 != plan.calib_sha256():
        log.info("not using the saved statistics %s: they come from other calibration data", old.stats_file)
        return None
    return _Gathered(loaded.stats, loaded.record, loaded.num_bins, list(loaded.warnings), files=(old.stats_file,))


def _collect(model: onnx.ModelProto, model_path: Path, names: list[str], fp: model_io.ModelFingerprint,
             config: Config, plan: DataPlan | None, show_progress: bool) -> _Gathered:
    """Run the model over the calibration data into fresh observers."""
    plan = plan or make_readers(config, model_io.graph_inputs(model))
    cal = config.calibration
    mask_input = attention_mask_input(model_io.graph_inputs(model))  # padding is not observed (onnx_model.token_axes)
    skipped = None
    check = SampleCheck(conv_only_inputs(model))  # the Ray workers read their own shards: no check there
    if config.cluster.ray:
        result, skipped = _collect_on_ray(model, model_path, names, config, plan, mask_input, show_progress)
    else:
        result = collect_statistics(
            model, model_path.parent, names, check.watch(plan.calib),
            lambda: TensorStats(num_bins=cal.num_bins,
                                ema_constant=cal.ema_constant if needs_ema(cal.method) else None),
            providers=providers_for(cal.provider), nan_policy=cal.nan_policy,
            total_samples=plan.calib.num_samples, show_progress=show_progress, quantized=planned_activations(model),
            mask_input=mask_input, memory_budget=cal.memory_budget * MIB,
            channel_tensors=_channel_tensors(model, config), source=model_path,
        )
    record = StatsRecord(
        num_samples=result.num_samples, data_sha256=plan.calib_sha256(), model_graph_sha256=fp.graph,
        model_weights_sha256=fp.weights, onnxruntime_version=onnxruntime.__version__,
        random_data=bool(config.data.allow_random_data and not config.data.calib),
        data_parts=plan.calib_parts(), preprocess=plan.calib_preprocess(),
    )
    warnings = list(plan.warnings) + check.warnings() + _nonfinite_summary(result.nonfinite)
    # Files found unreadable while reading (--skip-bad-files); those left out when opening are in plan.warnings.
    warnings += [f"skipped unreadable file {key}: {reason}"
                 for key, reason in (plan.calib.skipped if skipped is None else skipped)]
    return _Gathered(result.stats, record, cal.num_bins, warnings, result.seconds, left_out=result.left_out,
                     nonfinite=dict(result.nonfinite))


def _collect_on_ray(model: onnx.ModelProto, model_path: Path, names: list[str], config: Config, plan: DataPlan,
                    mask_input: str | None, show_progress: bool) -> tuple[CollectionResult, list[tuple[str, str]]]:
    """collect_statistics' result for the whole data, from shards on Ray workers (trtq.cluster.calibration)."""
    from trtq.cluster.calibration import ShardJob, collect_on_ray, shardable_reader
    from trtq.cluster.ray_runtime import ray_instance

    reader = shardable_reader(config, plan.calib)
    # Workers that reserve a GPU run on it; the driver may have none, so its providers say nothing.
    gpus = config.cluster.ray_gpus_per_worker > 0
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if gpus else ["CPUExecutionProvider"]
    job = ShardJob(str(model_path), config, names, planned_activations(model), mask_input,
                   _channel_tensors(model, config), reader.batch_size, providers)
    with ray_instance(config.cluster) as workers:
        return collect_on_ray(job, reader, workers, show_progress)


def _nonfinite_summary(nonfinite: Mapping[str, int]) -> list[str]:
    """One line for all tensors whose NaN/Inf values --nan-policy ignore dropped (most first), not one each."""
    if not nonfinite:
        return []
    worst = sorted(nonfinite.items(), key=lambda item: -item[1])
    shown = ", ".join(f"{n} ({c})" for n, c in worst[:3]) + (f", ... ({len(worst) - 3} more)" if len(worst) > 3 else "")
    return [f"NaN/Inf values ignored (--nan-policy ignore) in {len(worst)} tensor"
            f"{'s' * (len(worst) != 1)}: {shown}; their ranges come from the finite values"]


def _channel_tensors(model: onnx.ModelProto, config: Config) -> list[str]:
    """The MatMul/Gemm inputs SmoothQuant may smooth: they also get per-channel statistics."""
    if config.quantize.smoothquant.strip().lower() == "off":
        return []
    from trtq.qdq.smoothquant import smoothable_layers

    return list(smoothable_layers(model))


def _load(names: list[str], fp: model_io.ModelFingerprint, config: Config) -> _Gathered:
    """Merge the statistics files of `calibration.load_stats` (no data, no model run)."""
    cal = config.calibration
    start = time.perf_counter()
    loaded = load_stats(cal.load_stats, names, fingerprint=fp, force=cal.force)
    if needs_ema(cal.method) and any(s.ema is None for s in loaded.stats.values()):
        raise ConfigError("--method ema needs the moving-average observer, which the statistics files lack "
                          "(they were saved with another --method)",
                          hint="save the statistics with --method ema, or choose another --method")
    warnings = list(loaded.warnings)
    if config.data.calib and not cal.compare_methods:
        warnings.append(f"--calib {config.data.calib} is not read: the statistics come from --load-stats")
    if loaded.num_bins != cal.num_bins:
        warnings.append(f"the statistics have {loaded.num_bins} histogram bins; --num-bins {cal.num_bins} "
                        "does not apply to loaded statistics")
    log.info("merged %d statistics file(s): %s samples", len(cal.load_stats),
             loaded.record.num_samples if loaded.record.num_samples is not None else "unknown")
    return _Gathered(loaded.stats, loaded.record, loaded.num_bins, warnings, time.perf_counter() - start)

