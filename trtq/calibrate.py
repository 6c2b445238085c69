"""`trtq.calibrate`: FP32 model + real data -> calibration table and TensorRT cache.

Steps: load the model, reuse a valid cache if one exists, else stream the data
through ONNX Runtime into observers (or merge observers saved earlier with
--save-stats, without data or a model run), turn each tensor's statistics into
an amax with the chosen algorithm, and write the cache with its provenance sidecar.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import onnx
import onnxruntime

from trtq import model as model_io
from trtq.cache import CalibrationTable, Provenance, names_sha256, read_cache, validate_table, write_cache
from trtq.calibrators import TensorStats, compute_amax, round_to_power_of_two
from trtq.collect import collect_statistics
from trtq.config import CalibrationConfig, Config
from trtq.data import DataPlan, make_readers
from trtq.errors import ConfigError
from trtq.session import providers_for
from trtq.stats_files import StatsRecord, load_stats, save_stats
from trtq.tensors import activation_tensors

log = logging.getLogger(__name__)


@dataclass
class CalibrationOutcome:
    """The table, where it was written, and whether an existing cache was reused.

    Attributes:
        stats: tensor -> observers when the model ran or statistics were loaded (None when a
            cache was reused); every range algorithm can be evaluated on them without running
            the model again.
        stats_files: the statistics files the ranges were computed from (--load-stats), if any.
        saved_stats: where the statistics were saved (--save-stats), if anywhere.
    """

    table: CalibrationTable
    cache_path: Path
    reused: bool
    warnings: list[str] = field(default_factory=list)
    stats: dict[str, TensorStats] | None = None
    seconds: float = 0.0
    stats_files: tuple[str, ...] = ()
    saved_stats: Path | None = None


def default_cache_path(model_path: Path, config: Config) -> Path:
    """`--cache`, else `<out_dir or model folder>/<model stem>.cache`."""
    if config.calibration.cache:
        return Path(config.calibration.cache)
    folder = Path(config.out_dir) if config.out_dir else model_path.parent
    return folder / f"{model_path.stem}.cache"


def method_params(cal: CalibrationConfig) -> dict[str, object]:
    """Parameters the chosen method takes from the config (recorded in the provenance)."""
    return {"percentile": cal.percentile} if cal.method == "percentile" else {}


def ranges_from_stats(stats: Mapping[str, TensorStats], cal: CalibrationConfig) -> dict[str, float]:
    """tensor -> amax with the configured method (and power-of-two rounding)."""
    params = method_params(cal)
    amax = {}
    for name, tensor_stats in stats.items():
        try:
            value = compute_amax(cal.method, tensor_stats, **params)
        except ValueError as exc:  # a bad parameter value, or ema without its observer
            raise ConfigError(f"cannot compute the {cal.method} range of tensor '{name}': {exc}") from None
        amax[name] = round_to_power_of_two(value) if cal.power_of_two else value
    return amax


def calibrate(model_path: str | Path, config: Config, show_progress: bool = True,
              plan: DataPlan | None = None) -> CalibrationOutcome:
    """Calibrate `model_path` as `config` says, or reuse a cache that matches the model.

    The statistics come from running the model on the calibration data, or, with
    `calibration.load_stats`, from statistics files (then no data and no model run are
    needed). With `calibration.save_stats` they are also written to a file. A cache is
    reused only when no statistics are loaded, saved or compared (`compare_methods`).

    Args:
        model_path: the FP32 ONNX model.
        config: the resolved config (data, preprocess and calibration sections are used).
        show_progress: draw a progress bar on stderr.
        plan: data readers already made (by `trtq build`); made from the config if None.

    Raises:
        DataError: no or bad data, or a NaN/Inf activation with nan_policy 'error'.
        CacheError: an existing cache or a statistics file does not match the model, or is corrupt.
    """
    model_path = Path(model_path)
    model = model_io.load_model(model_path)
    fp = model_io.fingerprint(model)
    cal = config.calibration
    check_settings(cal)
    names = activation_tensors(model, cal.tensors)
    cache_path = default_cache_path(model_path, config)
    if cache_path.exists() and not (cal.load_stats or cal.save_stats or cal.compare_methods):
        table = read_cache(cache_path)
        warnings = validate_table(table, fingerprint=fp, tensor_names=names, force=cal.force, source=str(cache_path))
        log.info("reusing calibration cache %s (it matches the model)", cache_path)
        return CalibrationOutcome(table, cache_path, reused=True, warnings=warnings)

    if cal.load_stats:
        gathered = _load(names, fp, config)
    else:
        gathered = _collect(model, model_path, names, fp, config, plan, show_progress)
    if cal.save_stats:
        save_stats(cal.save_stats, gathered.stats, gathered.record)
    table = make_table(gathered.stats, gathered.record, names, fp, cal, num_bins=gathered.num_bins)
    write_cache(table, cache_path, cal.trt_version)
    return CalibrationOutcome(
        table, cache_path, reused=False, warnings=gathered.warnings, stats=gathered.stats, seconds=gathered.seconds,
        stats_files=tuple(cal.load_stats), saved_stats=Path(cal.save_stats) if cal.save_stats else None,
    )


def check_settings(cal: CalibrationConfig) -> None:
    """Refuse calibration settings the observers or the method would reject, before any work is done."""
    if cal.num_bins < 2:
        raise ConfigError(f"--num-bins must be at least 2, got {cal.num_bins}", hint="2048 is TensorRT's choice")
    if cal.method == "percentile" and not 0.0 < cal.percentile <= 100.0:
        raise ConfigError(f"--percentile must be in (0, 100], got {cal.percentile}", hint="e.g. 99.99")
    if cal.method == "ema" and not 0.0 < cal.ema_constant <= 1.0:
        raise ConfigError(f"--ema-constant must be in (0, 1], got {cal.ema_constant}", hint="e.g. 0.01")
    if cal.save_stats and Path(cal.save_stats).is_dir():
        raise ConfigError(f"--save-stats {cal.save_stats} is a folder", hint="give a file name, e.g. stats.npz")


def make_table(stats: Mapping[str, TensorStats], record: StatsRecord, names: list[str], fp: model_io.ModelFingerprint,
               cal: CalibrationConfig, num_bins: int | None = None) -> CalibrationTable:
    """The calibration table of `stats` with the configured method, and its provenance."""
    provenance = Provenance(
        model_graph_sha256=fp.graph, model_weights_sha256=fp.weights, tensor_names_sha256=names_sha256(names),
        algorithm=cal.method, num_samples=record.num_samples or 0, data_sha256=record.data_sha256,
        algorithm_params=method_params(cal), num_bins=num_bins if num_bins is not None else cal.num_bins,
        onnxruntime_version=record.onnxruntime_version, random_data=record.random_data,
    )
    return CalibrationTable(amax=ranges_from_stats(stats, cal), algorithm=cal.method, provenance=provenance)


@dataclass
class _Gathered:
    """Statistics from a model run or from files, with what the provenance needs."""

    stats: dict[str, TensorStats]
    record: StatsRecord
    num_bins: int
    warnings: list[str]
    seconds: float = 0.0


def _collect(model: onnx.ModelProto, model_path: Path, names: list[str], fp: model_io.ModelFingerprint,
             config: Config, plan: DataPlan | None, show_progress: bool) -> _Gathered:
    """Run the model over the calibration data into fresh observers."""
    plan = plan or make_readers(config, model_io.graph_inputs(model))
    cal = config.calibration
    result = collect_statistics(
        model, model_path.parent, names, plan.calib,
        lambda: TensorStats(num_bins=cal.num_bins, ema_constant=cal.ema_constant if cal.method == "ema" else None),
        providers=providers_for(cal.provider), nan_policy=cal.nan_policy,
        total_samples=plan.calib.num_samples, show_progress=show_progress,
    )
    record = StatsRecord(
        num_samples=result.num_samples, data_sha256=_data_hash(plan.calib.keys), model_graph_sha256=fp.graph,
        model_weights_sha256=fp.weights, onnxruntime_version=onnxruntime.__version__,
        random_data=bool(config.data.allow_random_data and not config.data.calib),
    )
    warnings = list(plan.warnings) + [f"{n}: {c} NaN/Inf values ignored" for n, c in result.nonfinite.items()]
    return _Gathered(result.stats, record, cal.num_bins, warnings, result.seconds)


def _load(names: list[str], fp: model_io.ModelFingerprint, config: Config) -> _Gathered:
    """Merge the statistics files of `calibration.load_stats` (no data, no model run)."""
    cal = config.calibration
    start = time.perf_counter()
    loaded = load_stats(cal.load_stats, names, fingerprint=fp, force=cal.force)
    if cal.method == "ema" and any(s.ema is None for s in loaded.stats.values()):
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


def _data_hash(keys: list[str]) -> str:
    return hashlib.sha256("\n".join(keys).encode()).hexdigest()
