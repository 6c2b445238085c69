"""`trtq calibrate --compare-methods`: which range algorithm keeps the model closest to FP32?

One calibration pass (or the merged --load-stats files) gives every tensor's
statistics; every histogram method (minmax, entropy, percentile, mse) turns the
same statistics into ranges without running the model again. For each method the
Q/DQ model is built in memory and compared with the FP32 model on held-out
samples (trtq.accuracy), so the methods are judged on the model's outputs, not on
per-tensor errors. The cache written is still the one for --method.

    comparison = compare_methods("model.onnx", config)
    print(format_comparison(comparison))
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from trtq.accuracy import OutputMetrics, compare_models
from trtq.calibration.ranges import ranges_from_stats
from trtq.calibrators import TensorStats
from trtq.calibrators.registry import auto_candidates
from trtq.config import Config
from trtq.data import DataPlan, DataReader, make_readers
from trtq.errors import DataError
from trtq.onnx_model import model as model_io
from trtq.pipeline.calibrate import CalibrationOutcome, calibrate
from trtq.qdq import quantize_model

log = logging.getLogger(__name__)

# Fraction of --calib held out when neither --eval nor --eval-fraction is given.
DEFAULT_EVAL_FRACTION = 0.2


@dataclass(frozen=True)
class MethodResult:
    """How close one method's Q/DQ model stays to FP32 on the held-out samples.

    Attributes:
        method: the range algorithm.
        amax: tensor -> symmetric amax the method gives (scale = amax / 127 for INT8).
        outputs: model output -> its metrics (SQNR in dB, cosine, top-1 agreement when classifier-like).
        best: the highest mean SQNR of the compared methods.
    """

    method: str
    amax: dict[str, float]
    outputs: dict[str, OutputMetrics]
    best: bool = False

    @property
    def mean_sqnr_db(self) -> float:
        """Mean of the outputs' SQNR in dB (inf when every output is exact)."""
        return float(np.mean([m.sqnr_db for m in self.outputs.values()])) if self.outputs else math.nan


@dataclass(frozen=True)
class MethodComparison:
    """The rows of the comparison, and the calibration it started from.

    Attributes:
        rows: one per compared method, in the order given (default: auto's candidates).
        calibration: the calibration that wrote the cache for --method.
        eval_samples: held-out samples each Q/DQ model was compared on.
        eval_description: where those samples come from.
    """

    rows: tuple[MethodResult, ...]
    calibration: CalibrationOutcome
    eval_samples: int
    eval_description: str

    @property
    def best(self) -> MethodResult:
        return next(row for row in self.rows if row.best)


def compare_methods(model_path: str | Path, config: Config, show_progress: bool = True,
                    methods: Sequence[str] | None = None) -> MethodComparison:
    """Calibrate once, then compare each method's Q/DQ model with the FP32 model on held-out data.

    Held-out samples are --eval, else the --eval-fraction (default 0.2) of --calib kept out of
    calibration. With --load-stats the statistics come from the files and --calib (or --eval)
    only provides the held-out samples.

    Args:
        model_path: the FP32 ONNX model.
        config: the resolved config; `quantize` says how the Q/DQ models are built.
        show_progress: draw progress bars on stderr.
        methods: the methods to compare (default: the histogram methods auto chooses from, auto_candidates()).

    Returns:
        The comparison; the cache for config.calibration.method is written as by calibrate().

    Raises:
        DataError: no held-out samples (the message says how to get some), or bad data.
        CacheError, ConfigError, ModelError: as calibrate() and quantize_model().
    """
    model = model_io.load_model(model_path)
    config = dataclasses.replace(config, calibration=dataclasses.replace(config.calibration, compare_methods=True))
    plan, held = _readers(config, model_io.graph_inputs(model))
    outcome = calibrate(model_path, config, show_progress, plan=plan)
    if outcome.stats is None:  # calibrate() reuses no cache with compare_methods set
        raise RuntimeError("calibrate() returned no statistics")
    rows = evaluate_methods(model, outcome.stats, held, config, methods, show_progress)
    return MethodComparison(tuple(rows), outcome, held.num_samples, held.description)


def evaluate_methods(model: onnx.ModelProto, stats: Mapping[str, TensorStats], held: DataReader, config: Config,
                     methods: Sequence[str] | None = None, show_progress: bool = False) -> list[MethodResult]:
    """For each method: ranges from `stats`, the Q/DQ model in memory, its metrics against `model` on `held`.

    The method with the highest mean output SQNR is marked best (the first of equals).
    """
    rows = []
    for method in auto_candidates() if methods is None else methods:
        cal = dataclasses.replace(config.calibration, method=method)
        amax = ranges_from_stats(stats, cal, config.quantize.pow2)
        qdq = quantize_model(model, amax, config.quantize).model
        result = compare_models(model, qdq, _Feeds(held), progress=show_progress)
        rows.append(MethodResult(method, amax, result.outputs))
        log.info("%s: mean output SQNR %.2f dB", method, rows[-1].mean_sqnr_db)
    if rows:
        best = max(range(len(rows)), key=lambda i: (_sortable(rows[i].mean_sqnr_db), -i))
        rows[best] = dataclasses.replace(rows[best], best=True)
    return rows


def format_comparison(comparison: MethodComparison) -> str:
    """The comparison as a text table: method, per output SQNR dB, cosine, top-1 agreement; best marked '*'."""
    outputs = list(comparison.rows[0].outputs) if comparison.rows else []
    classifier = {name: any(r.outputs[name].top1_agreement is not None for r in comparison.rows) for name in outputs}
    header = ["method"]
    for name in outputs:
        prefix = f"{name} " if len(outputs) > 1 else ""
        header += [f"{prefix}SQNR dB", f"{prefix}cosine"] + ([f"{prefix}top-1"] if classifier[name] else [])
    lines = [header]
    for row in comparison.rows:
        cells = [row.method + (" *" if row.best else "")]
        for name in outputs:
            m = row.outputs[name]
            cells += [f"{m.sqnr_db:.2f}", f"{m.cosine:.6f}"]
            if classifier[name]:
                cells.append("-" if m.top1_agreement is None else f"{100 * m.top1_agreement:.1f}%")
        lines.append(cells)
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths, strict=True)))
            for line in lines]
    text.insert(1, "  ".join("-" * w for w in widths))
    head = f"methods compared on {comparison.eval_samples} held-out sample(s) of {comparison.eval_description}"
    foot = f"* best mean output SQNR: {comparison.best.method}" if comparison.rows else ""
    return "\n".join([head, "", *text, "", foot]).rstrip() + "\n"


def _readers(config: Config, inputs: list[model_io.TensorSpec]) -> tuple[DataPlan | None, DataReader]:
    """(plan for calibrate() or None with --load-stats, held-out reader)."""
    data = config.data
    if config.calibration.load_stats and data.calib is None:
        if data.eval is None:
            raise DataError("--compare-methods needs held-out data, and none is given (--load-stats replaces "
                            "the calibration data only)", hint="give evaluation data with --eval DATA")
        # The --eval data read as if it were calibration data: make_readers then fits its batches.
        only_eval = dataclasses.replace(data, calib=data.eval, eval=None, eval_fraction=0.0, max_samples=None)
        return None, make_readers(dataclasses.replace(config, data=only_eval), inputs).calib
    plan = make_readers(config, inputs, default_eval_fraction=DEFAULT_EVAL_FRACTION)
    if plan.eval is None:
        fraction = data.eval_fraction if data.eval_fraction is not None else DEFAULT_EVAL_FRACTION
        raise DataError(f"--compare-methods needs held-out samples, but eval fraction {fraction} of the "
                        f"{plan.calib.num_samples} calibration sample(s) holds out none",
                        hint="give separate evaluation data with --eval DATA, or more --calib samples or a "
                             "larger --eval-fraction")
    return (None if config.calibration.load_stats else plan), plan.eval


class _Feeds:
    """The feed dicts of a DataReader's batches, with its length for the progress bar."""

    def __init__(self, reader: DataReader) -> None:
        self._reader = reader

    def __len__(self) -> int:
        return len(self._reader)

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        return (batch.feeds for batch in self._reader)


def _sortable(value: float) -> float:
    return -math.inf if math.isnan(value) else value
