"""`trtq.calibrate`: FP32 model + real data -> calibration table and TensorRT cache.

Steps: load the model, reuse a valid cache if one exists, else stream the data
through ONNX Runtime into observers, turn each tensor's statistics into an
amax with the chosen algorithm, and write the cache with its provenance sidecar.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import onnxruntime

from trtq import model as model_io
from trtq.cache import CalibrationTable, Provenance, names_sha256, read_cache, validate_table, write_cache
from trtq.calibrators import TensorStats, compute_amax, round_to_power_of_two
from trtq.collect import collect_statistics
from trtq.config import CalibrationConfig, Config
from trtq.data import DataPlan, make_readers
from trtq.session import providers_for
from trtq.tensors import activation_tensors

log = logging.getLogger(__name__)


@dataclass
class CalibrationOutcome:
    """The table, where it was written, and whether an existing cache was reused.

    Attributes:
        stats: tensor -> observers when the model ran (None when a cache was reused); every
            range algorithm can be evaluated on them without running the model again.
    """

    table: CalibrationTable
    cache_path: Path
    reused: bool
    warnings: list[str] = field(default_factory=list)
    stats: dict[str, TensorStats] | None = None
    seconds: float = 0.0


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
        value = compute_amax(cal.method, tensor_stats, **params)
        amax[name] = round_to_power_of_two(value) if cal.power_of_two else value
    return amax


def calibrate(model_path: str | Path, config: Config, show_progress: bool = True,
              plan: DataPlan | None = None) -> CalibrationOutcome:
    """Calibrate `model_path` as `config` says, or reuse a cache that matches the model.

    Args:
        model_path: the FP32 ONNX model.
        config: the resolved config (data, preprocess and calibration sections are used).
        show_progress: draw a progress bar on stderr.
        plan: data readers already made (by `trtq build`); made from the config if None.
    """
    model_path = Path(model_path)
    model = model_io.load_model(model_path)
    fp = model_io.fingerprint(model)
    names = activation_tensors(model, config.calibration.tensors)
    cache_path = default_cache_path(model_path, config)
    if cache_path.exists():
        table = read_cache(cache_path)
        warnings = validate_table(table, fingerprint=fp, tensor_names=names, force=config.calibration.force,
                                  source=str(cache_path))
        log.info("reusing calibration cache %s (it matches the model)", cache_path)
        return CalibrationOutcome(table, cache_path, reused=True, warnings=warnings)

    plan = plan or make_readers(config, model_io.graph_inputs(model))
    cal = config.calibration
    result = collect_statistics(
        model, model_path.parent, names, plan.calib,
        lambda: TensorStats(num_bins=cal.num_bins, ema_constant=cal.ema_constant if cal.method == "ema" else None),
        providers=providers_for(cal.provider), nan_policy=cal.nan_policy,
        total_samples=plan.calib.num_samples, show_progress=show_progress,
    )
    provenance = Provenance(
        model_graph_sha256=fp.graph, model_weights_sha256=fp.weights, tensor_names_sha256=names_sha256(names),
        algorithm=cal.method, num_samples=result.num_samples, data_sha256=_data_hash(plan.calib.keys),
        algorithm_params=method_params(cal), num_bins=cal.num_bins, onnxruntime_version=onnxruntime.__version__,
        random_data=bool(config.data.allow_random_data and not config.data.calib),
    )
    table = CalibrationTable(amax=ranges_from_stats(result.stats, cal), algorithm=cal.method, provenance=provenance)
    write_cache(table, cache_path, cal.trt_version)
    warnings = list(plan.warnings) + [f"{n}: {c} NaN/Inf values ignored" for n, c in result.nonfinite.items()]
    return CalibrationOutcome(table, cache_path, reused=False, warnings=warnings, stats=result.stats,
                              seconds=result.seconds)


def _data_hash(keys: list[str]) -> str:
    return hashlib.sha256("\n".join(keys).encode()).hexdigest()
