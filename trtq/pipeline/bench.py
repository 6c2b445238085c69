"""`trtq bench MODEL [MODEL ...]`: latency and throughput of FP32, Q/DQ and engine side by side.

    result = run_bench(["model.onnx", "model.qdq.onnx"], BenchOptions(batches=(1, 8), runs=100))
    print(render_table(result)); result.to_dict()

Every model runs on every backend it has (trtq.runtime.bench_targets) at every batch size, on the
same input batch (random of the model's input shapes, or real samples: `feeds`). Each row gives
median, p90 and p99 latency (ms), throughput (samples/s at the median) and the median relative to
the FP32 model on the same backend and batch size ("vs FP32"; 1.00 = as fast).
"""

from __future__ import annotations

import functools
import json
import logging
import platform
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trtq.atomic import write_text
from trtq.errors import ConfigError, DataError, first_line
from trtq.onnx_model.model import TensorSpec, graph_inputs, load_model
from trtq.report.tables import BENCH_HEADER as HEADER
from trtq.report.tables import bench_lines
from trtq.runtime.bench_inputs import random_batch
from trtq.runtime.bench_targets import Target, is_engine_path, open_target, targets_for
from trtq.runtime.latency import LatencyStats, check_budget, time_runs

log = logging.getLogger(__name__)

# A function giving the input batch of a given size (random or real samples).
Feeds = Callable[[int], Mapping[str, np.ndarray]]


@dataclass(frozen=True)
class BenchOptions:
    """How to benchmark.

    Attributes:
        batches: batch sizes to time.
        warmup: untimed runs before the timed ones, per (target, batch).
        runs: timed runs per (target, batch); None with `seconds`.
        seconds: time budget per (target, batch) instead of `runs`.
        shapes: dynamic input dims, "x:1x3x224x224" (trtq.runtime.bench_inputs).
        providers: ONNX Runtime providers: auto, cpu or cuda.
        threads: ONNX Runtime intra-op threads (0: its default).
    """

    batches: tuple[int, ...] = (1,)
    warmup: int = 10
    runs: int | None = 100
    seconds: float | None = None
    shapes: str | None = None
    providers: str = "auto"
    threads: int = 0

    def check(self) -> None:
        """Raise ConfigError for bad values, before any model is loaded."""
        if not self.batches or any(b < 1 for b in self.batches):
            raise ConfigError(f"--batch needs positive batch sizes, got {','.join(map(str, self.batches)) or 'none'}",
                              hint="e.g. --batch 1,8")
        check_budget(self.warmup, self.runs, self.seconds)


@dataclass(frozen=True)
class BenchRow:
    target: Target
    stats: LatencyStats
    vs_fp32: float | None = None  # median / the FP32 model's median on the same backend and batch

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.target.model, "kind": self.target.kind, "backend": self.target.backend,
                **self.stats.to_dict(), "vs_fp32": None if self.vs_fp32 is None else round(self.vs_fp32, 4)}


@dataclass
class BenchResult:
    options: BenchOptions
    inputs: str  # "random" or the data description
    rows: list[BenchRow] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        o = self.options
        return {"batches": list(o.batches), "warmup": o.warmup, "runs": o.runs, "seconds": o.seconds,
                "shapes": o.shapes, "inputs": self.inputs, "threads": o.threads,
                "machine": {"cpu": platform.processor() or platform.machine(), "python": platform.python_version()},
                "rows": [r.to_dict() for r in self.rows], "skipped": list(self.skipped)}


def _inputs_of(models: Sequence[str | Path]) -> list[TensorSpec]:
    """The inputs engines are fed by: those of the first ONNX model (engines are built from it)."""
    onnx_models = [m for m in models if not is_engine_path(m)]
    if not onnx_models:
        raise ConfigError("an engine alone cannot say its input shapes here",
                          hint="give the ONNX model it was built from as well: trtq bench model.onnx model.engine")
    return graph_inputs(load_model(onnx_models[0], load_weights=False))


def _with_ratios(rows: list[BenchRow]) -> list[BenchRow]:
    fp32: dict[tuple[str, int], float] = {}
    for row in rows:
        if row.target.kind == "fp32":
            fp32.setdefault((row.target.backend, row.stats.batch), row.stats.median_ms)
    # engines run on TensorRT: compare them with the FP32 model on ONNX Runtime's GPU provider if present
    out = []
    for row in rows:
        backend = row.target.backend
        base = fp32.get((backend, row.stats.batch)) or (fp32.get(("ort-cuda", row.stats.batch))
                                                        if backend == "tensorrt" else None)
        out.append(BenchRow(row.target, row.stats, row.stats.median_ms / base if base else None))
    return out


def _time_target(target: Target, feeds: Feeds, options: BenchOptions, step: Callable[[str], None]) -> list[BenchRow]:
    rows = []
    with open_target(target, options.threads) as infer:
        for batch in options.batches:
            feed = feeds(batch)
            step(f"{target.label} batch {batch}")
            try:
                infer(feed)
            except Exception as exc:  # the first call shows whether the input fits; ORT/TensorRT types vary
                raise DataError(f"{target.label} fails at batch {batch}: {first_line(exc)}",
                                hint="check --shape and --batch against the model's inputs") from None
            stats = time_runs(functools.partial(infer, feed), batch=batch, warmup=options.warmup,
                              runs=options.runs, seconds=options.seconds)
            rows.append(BenchRow(target, stats))
    return rows


def run_bench(models: Sequence[str | Path], options: BenchOptions, feeds: Feeds | None = None,
              inputs_label: str = "random", progress: Callable[[str], None] | None = None) -> BenchResult:
    """Time every model on every backend at every batch size (see the module docstring).

    Args:
        models: ONNX models (FP32 and Q/DQ) and serialized engines.
        options: what to time and how long.
        feeds: batch size -> input batch; default random inputs of the first ONNX model's shapes.
        inputs_label: what `feeds` is, for the result.
        progress: called with a line before each (target, batch) is timed.

    Raises:
        ConfigError: bad options or shapes. ModelError / MissingDependencyError / DataError: a target
            cannot be loaded or run (an engine without TensorRT or a GPU is skipped instead, and listed).
    """
    options.check()
    if not models:
        raise ConfigError("give at least one model to benchmark")
    if feeds is None:
        specs = _inputs_of(models)
        cache: dict[int, Mapping[str, np.ndarray]] = {}
        feeds = lambda b: cache.setdefault(b, random_batch(specs, b, options.shapes))  # noqa: E731
        feeds(options.batches[0])  # bad --shape fails before anything is timed
    result = BenchResult(options, inputs_label)
    step = progress or (lambda text: log.info("timing %s", text))
    from trtq.engine.device import gpu_available

    for model in models:
        if is_engine_path(model) and not gpu_available()[0]:
            result.skipped.append(f"{model}: {gpu_available()[1]}; engines run only with TensorRT and a GPU")
            continue
        for target in targets_for(model, options.providers):
            result.rows.extend(_time_target(target, feeds, options, step))
    result.rows = _with_ratios(result.rows)
    return result


def _fmt_ratio(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}x"


def _row_cells(row: BenchRow) -> list[str]:
    s = row.stats
    return [Path(row.target.model).name, row.target.kind, row.target.backend, str(s.batch), f"{s.median_ms:.3f}",
            f"{s.p90_ms:.3f}", f"{s.p99_ms:.3f}", f"{s.throughput:.1f}", _fmt_ratio(row.vs_fp32), str(s.runs)]


def render_table(result: BenchResult) -> str:
    """The console table, one row per (model, backend, batch)."""
    cells = [HEADER, *(_row_cells(r) for r in result.rows)]
    widths = [max(len(c[i]) for c in cells) for i in range(len(HEADER))]
    lines = ["  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))
             for row in cells]
    lines += [f"skipped: {s}" for s in result.skipped]
    return "\n".join(lines)


def write_outputs(result: BenchResult, json_path: str | Path | None, markdown_path: str | Path | None) -> list[Path]:
    """Write the JSON and/or Markdown form, atomically; returns the paths written."""
    data = result.to_dict()
    written = []
    if json_path:
        write_text(Path(json_path), json.dumps(data, indent=2, allow_nan=False) + "\n")
        written.append(Path(json_path))
    if markdown_path:
        write_text(Path(markdown_path), "\n".join(["# trtq bench", "", *bench_lines(data)]) + "\n")
        written.append(Path(markdown_path))
    return written
