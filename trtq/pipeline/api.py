"""The public Python API: trtq.build, trtq.calibrate, trtq.quantize, trtq.compare, trtq.prune, trtq.optimize,
trtq.bench and trtq.select_precision.

Each takes a model path and a Config (default: Config(); see trtq.load_config for YAML files and
presets) and returns the same outcome object the CLI reports from. Data can be given as the
config's paths, or directly as any source: a path (image folder, .npy/.npz, video), a
data-loader script (.py with load_data()), a list of feed dicts, a function returning an
iterable of them, or an ONNX Runtime CalibrationDataReader; all are streamed batch by batch.

    import trtq
    config = trtq.load_config("ppocr")
    outcome = trtq.build("model.onnx", config, data="photos/")
    outcome.report.to_dict()["comparison"]["outputs"]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trtq.accuracy import ComparisonResult, compare_models
from trtq.accuracy.evaluation import Reference
from trtq.config import Config
from trtq.data import DataPlan, make_readers
from trtq.data.streams import StreamReader, feed_factory, is_loader_script
from trtq.engine.cost_model import device
from trtq.errors import ConfigError
from trtq.onnx_model import model as model_io
from trtq.pipeline import bench as bench_stage
from trtq.pipeline import build as build_stage
from trtq.pipeline import calibrate as calibrate_stage
from trtq.pipeline import optimize as optimize_stage
from trtq.pipeline import prune as prune_stage
from trtq.pipeline import quantize as quantize_stage
from trtq.pipeline import select_stage
from trtq.pipeline.engine_stage import engine_unavailable_reason
from trtq.pipeline.model_data import model_batches
from trtq.pipeline.precision_candidates import select_precision as select_precision_from
from trtq.pipeline.precision_select import Selection
from trtq.pipeline.quantize import usable_ranges
from trtq.runtime.bench_inputs import real_batch

if TYPE_CHECKING:
    from trtq.onnx_model.pruning import PruneSettings


def _with_paths(config: Config, data: Any, eval_data: Any) -> tuple[Config, bool]:
    """`config` with `data`/`eval_data` as its paths when both are paths (or None); False when a
    custom source needs a plan."""
    def plain(value: Any) -> bool:
        return value is None or isinstance(value, (str, Path))

    if not (plain(data) and plain(eval_data)):
        return config, False
    changes: dict[str, Any] = {k: str(v) for k, v in (("calib", data), ("eval", eval_data)) if v is not None}
    return dataclasses.replace(config, data=dataclasses.replace(config.data, **changes)), True


def _stream(source: Any, name: str, max_samples: int | None = None) -> StreamReader:
    what = f"loader script {source}" if is_loader_script(source) else f"{name} ({type(source).__name__})"
    return StreamReader(feed_factory(source), what, max_samples)


def _plan(model: str | Path, config: Config, data: Any, eval_data: Any,
          default_eval_fraction: float) -> tuple[Config, DataPlan | None]:
    """(config, plan): the plan is None when the stage should make it from the config's paths."""
    if isinstance(data, DataPlan):
        return config, data
    config, as_paths = _with_paths(config, data, eval_data)
    if as_paths:
        return config, None
    inputs = model_io.graph_inputs(model_io.load_model(model, load_weights=False))
    calib = _stream(data, "calibration data", config.data.max_samples)
    held: Any = None
    if isinstance(eval_data, (str, Path)) and not is_loader_script(eval_data):
        held = make_readers(dataclasses.replace(config, data=dataclasses.replace(
            config.data, calib=str(eval_data), eval=None, eval_fraction=0.0, max_samples=None)), inputs).calib
    elif eval_data is not None:
        held = _stream(eval_data, "evaluation data")
    text = f"calibration: {calib.description}" + (f"\nevaluation: {held.description}" if held else "")
    return config, DataPlan(calib, held, [], text)


def calibrate(model: str | Path, config: Config | None = None, *, data: Any = None,
              show_progress: bool = False) -> calibrate_stage.CalibrationOutcome:
    """Calibrate `model` and write (or reuse) its calibration cache, as `trtq calibrate` does.

    Args:
        model: the FP32 ONNX model.
        config: the settings (default Config()); `calibration.cache` names the cache.
        data: calibration data: any source (see the module docstring); default config.data.calib.
        show_progress: draw progress bars on stderr.
    """
    config, plan = _plan(model, config or Config(), data, None, 0.0)
    return calibrate_stage.calibrate(model, config, show_progress, plan=plan)


def quantize(model: str | Path, config: Config | None = None, *, cache: str | Path | None = None,
             output: str | Path | None = None) -> quantize_stage.QuantizeOutcome:
    """Write the Q/DQ model of `model` from a calibration cache, as `trtq quantize` does.

    Args:
        cache: the cache (default config.calibration.cache, else <model>.cache).
        output: the Q/DQ model path (default <model>.qdq.onnx).
    """
    config = config or Config()
    cache = cache or config.calibration.cache or Path(model).with_suffix(".cache")
    return quantize_stage.quantize_file(model, cache, output, config.quantize, force=config.calibration.force)


def build(model: str | Path, config: Config | None = None, *, data: Any = None, eval_data: Any = None,
          show_progress: bool = False) -> build_stage.BuildOutcome:
    """Calibrate, quantize, build the engine where possible and check accuracy, as `trtq build` does.

    Args:
        data: calibration data, any source; with a path, 20 % is held out for the accuracy check
            unless `eval_data` is given (a custom stream is never split).
        eval_data: held-out data for the accuracy check, any source.
    """
    config, plan = _plan(model, config or Config(), data, eval_data, 0.2)
    return build_stage.build(model, config, show_progress, plan=plan)


def compare(reference: str | Path, candidate: str | Path, data: Any, config: Config | None = None, *,
            show_progress: bool = False) -> ComparisonResult:
    """Compare `candidate` (Q/DQ model or engine) with the FP32 `reference` on `data`, as `trtq compare`
    does (config.check's per_layer, atol and rtol apply; gates: trtq.accuracy.check_gates)."""
    config = config or Config()
    if isinstance(data, (str, Path)) and not is_loader_script(data):
        config, _ = _with_paths(config, data, None)
        config = dataclasses.replace(config, data=dataclasses.replace(config.data, eval=None, eval_fraction=0.0,
                                                                      max_samples=None))
        inputs = model_io.graph_inputs(model_io.load_model(reference, load_weights=False))
        batches: Any = make_readers(config, inputs).calib.feed_dicts()
    else:
        batches = _stream(data, "comparison data").feed_dicts()
    check = config.check
    return compare_models(reference, candidate, batches, per_layer=check.per_layer, atol=check.atol, rtol=check.rtol,
                          progress=show_progress)


def _batches(model: str | Path, data: Any, config: Config, max_samples: int | None = None) -> Any:
    """Feed dicts of any data source for `model` (paths read and preprocessed as `config` says)."""
    if isinstance(data, (str, Path)) and not is_loader_script(data):
        return model_batches(model, str(data), config, max_samples)[0]
    return _stream(data, "data", max_samples).feed_dicts()


def prune(model: str | Path, settings: PruneSettings, *, output: str | Path | None = None, data: Any = None,
          config: Config | None = None) -> prune_stage.PruneOutcome:
    """Prune `model`'s Conv/Gemm/MatMul weights as `trtq prune` does and write `output` (default
    <model>.pruned.onnx); with `data` (any source), measure the SQNR against the unpruned model.

        trtq.prune("det.onnx", PruneSettings(pattern="2:4"), data="photos/", config=trtq.load_config("ppocr-det"))
    """
    config = config or Config()
    batches = _batches(model, data, config) if data is not None else None
    return prune_stage.prune_file(model, output, settings, batches)


def optimize(model: str | Path, *, data: Any, output: str | Path | None = None,
             config: Config | None = None) -> optimize_stage.OptimizeOutcome:
    """Optimize `model`'s graph with onnxslim as `trtq optimize` does; written (default <model>.optimized.onnx)
    only when its outputs equal the original's on `data` (any source; paths: the first 8 samples)."""
    config = config or Config()
    return optimize_stage.optimize_file(model, output, _batches(model, data, config, max_samples=8))
def bench(models: Sequence[str | Path], *, batches: Sequence[int] = (1,), warmup: int = 10, runs: int | None = None,
          seconds: float | None = None, shapes: str | None = None, providers: str = "auto", threads: int = 0,
          data: Any = None, config: Config | None = None, json_path: str | Path | None = None,
          markdown_path: str | Path | None = None,
          progress: Callable[[str], None] | None = None) -> bench_stage.BenchResult:
    """Latency and throughput of `models` (FP32/Q/DQ ONNX, engines) per batch size, as `trtq bench` does.

    Args:
        batches: batch sizes to time.
        warmup, runs, seconds: untimed runs, then `runs` timed runs (default 100) or a `seconds` budget.
        shapes: dims of dynamic inputs, e.g. "x:1x3x224x224"; the batch dim follows `batches`.
        providers: ONNX Runtime providers: "auto" (CPU, plus CUDA where it has a device), "cpu", "cuda".
        data: real samples instead of random inputs: any source (see the module docstring); a path is
            read and preprocessed as `config` says.
        json_path, markdown_path: also write the result there (atomically).
        progress: called with a line before each row is timed.
    """
    options = bench_stage.BenchOptions(tuple(batches), warmup, runs if runs or seconds else 100, seconds, shapes,
                                       providers, threads)
    options.check()
    feeds, label = None, "random"
    if data is not None:
        config = config or Config()
        first = next(str(m) for m in models if not str(m).endswith((".engine", ".plan", ".trt")))
        if isinstance(data, (str, Path)) and not is_loader_script(data):
            config = dataclasses.replace(config, data=dataclasses.replace(
                config.data, calib=str(data), eval=None, eval_fraction=0.0, max_samples=None))
            reader: Any = make_readers(config, model_io.graph_inputs(model_io.load_model(first, load_weights=False)))
            source, label = reader.calib.feed_dicts(), f"real samples from {data}"
        else:
            source, label = _stream(data, "benchmark data").feed_dicts(), "real samples"
        kept: dict[int, Any] = {}
        feeds = lambda b: kept.setdefault(b, real_batch(source, b))  # noqa: E731
    result = bench_stage.run_bench(models, options, feeds, label, progress)
    bench_stage.write_outputs(result, json_path, markdown_path)
    return result


def select_precision(model: str | Path, config: Config | None = None, *, data: Any = None, eval_data: Any = None,
                     show_progress: bool = False) -> Selection:
    """Choose among FP32, FP16, INT8 and INT8 with layers in float, as `trtq build --target-latency MS
    --max-accuracy-loss ...` does, without writing a deployment (only the calibration cache).

    The constraints are config.build.target_latency (ms), config.check.max_accuracy_loss (e.g. "top1:0.01",
    trtq.accuracy.accuracy_loss) and the --min-* gates; latencies are measured on TensorRT engines where
    one can be built here, else estimated for config.build.latency_device (trtq.engine.cost_model).

    Args:
        data: calibration data, any source; with a path, 20 % is held out to measure the candidates on
            unless `eval_data` is given.
        eval_data: the held-out data, any source.

    Returns:
        The Selection: every candidate with its latency and accuracy, the choice and the reason.
    """
    config, plan = _plan(model, config or Config(), data, eval_data, 0.2)
    inputs = model_io.graph_inputs(model_io.load_model(model, load_weights=False))
    plan = plan or make_readers(config, inputs, default_eval_fraction=0.2)
    select_stage.check_selection(config, has_eval=plan.eval is not None)
    if not select_stage.requested(config):
        raise ConfigError("select_precision needs a constraint", hint="set build.target_latency or "
                          "check.max_accuracy_loss (or --target-latency / --max-accuracy-loss)")
    calibration = calibrate_stage.calibrate(model, config, show_progress, plan=plan)
    fp32 = model_io.load_model(model)
    amax, _ = usable_ranges(calibration.table, fp32, force=config.calibration.force, options=config.quantize)
    held_out = plan.eval
    if held_out is None:  # check_selection refused this already; kept for the type checker
        raise ConfigError("choosing a precision needs held-out samples", hint="give eval_data")
    measure = select_stage.engine_measure(held_out) if engine_unavailable_reason() is None else None
    return select_precision_from(fp32, amax, Reference(fp32, held_out.feed_dicts()),
                                 select_stage.selection_gates(config), config.build.target_latency,
                                 device(config.build.latency_device), options=config.quantize,
                                 max_excluded=config.check.max_excluded, measure=measure)
