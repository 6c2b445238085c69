"""The first stages of `trtq build`: graph optimization (--optimize), then pruning (--prune), of the FP32 model.

Both are opt-in. Optimization changes the graph a cache is keyed on (tensor names and the model
fingerprint), so a cache made for the original model, or by TensorRT itself, would no longer apply;
and TensorRT does the same foldings when it builds an engine, so the gain is a smaller graph to
calibrate and quantize, not a faster engine. Pruning changes what the model computes.

The prepared model is written to `<out>/<stem>.optimized.onnx` or `<stem>.pruned.onnx`; calibration,
quantization and an implicit engine use it, and its cache is `<out>/<that stem>.cache`, so a build
with and one without --prune never take each other's cache. The accuracy check still compares with
the original FP32 model, so its numbers include what pruning cost; the report also gives the pruned
FP32 model's SQNR against the original alone.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import numpy as np
import onnx

from trtq.config import Config
from trtq.errors import ConfigError
from trtq.onnx_model import model as model_io
from trtq.onnx_model.pruning import settings_from_spec
from trtq.pipeline.optimize import default_optimized_path, optimize_checked
from trtq.pipeline.prune import accuracy_line, default_pruned_path, pruning_cost
from trtq.report import Report

log = logging.getLogger(__name__)

Batches = Callable[[], Iterable[Mapping[str, np.ndarray]]]


def check_prepare(config: Config) -> None:
    """Refuse a bad --prune value, and --pow2 with another precision than int8, before any work (ConfigError)."""
    if config.quantize.pow2 and config.quantize.precision != "int8":
        raise ConfigError(f"--pow2 makes INT8 scales powers of two; precision {config.quantize.precision} has no "
                          "such fixed-point form", hint="use --precision int8 with --pow2")
    p = config.prepare
    if p.prune is not None:
        settings_from_spec(p.prune, p.prune_scope, tuple(p.prune_exclude))


def prepare(model: onnx.ModelProto, model_path: Path, out_dir: Path, config: Config, report: Report,
            check_batches: Batches, eval_batches: Batches | None) -> tuple[onnx.ModelProto, Path]:
    """(model, path) calibration goes on with: `model_path`'s, or the optimized and/or pruned one written.

    Args:
        check_batches: real inputs for the optimizer's output check (its first batch of calibration samples).
        eval_batches: held-out inputs the pruning cost is measured on, if any.
    """
    p = config.prepare
    if not (p.optimize or p.prune):
        return model, model_path
    original, path = model, model_path
    out_dir.mkdir(parents=True, exist_ok=True)
    if p.optimize:
        with report.stage("optimize"):
            # The first batch of calibration samples: the check is exact, more batches only take longer.
            result, check = optimize_checked(model, itertools.islice(check_batches(), 1))
        model, path = result.model, default_optimized_path(model_path, out_dir)
        _note(report, f"{result.summary()}; {check.summary()}")
        report.provenance["optimize"] = {**result.to_dict(), "check": check.to_dict()}
    if p.prune:
        settings = settings_from_spec(p.prune, p.prune_scope, tuple(p.prune_exclude))
        with report.stage("prune"):
            from trtq.onnx_model.pruning import prune_model

            pruned = prune_model(model, settings)
            cost = pruning_cost(original, pruned.model, eval_batches()) if eval_batches else None
        model, path = pruned.model, default_pruned_path(model_path, out_dir)
        _note(report, f"{pruned.summary()}; {accuracy_line(cost)}")
        report.provenance["pruning"] = {**pruned.to_dict(), **(
            {"sqnr_db_vs_unpruned": {n: m.sqnr_db for n, m in cost.outputs.items()}, "samples": cost.samples}
            if cost else {})}
    model_io.save_model(model, path)
    report.add_artifact("prepared_model", path)
    return model, path


def _note(report: Report, line: str) -> None:
    log.info("%s", line)
    report.info.append(line)


def lost_pattern(prepared: onnx.ModelProto, qdq: onnx.ModelProto) -> str | None:
    """A warning when layers that were 2:4 sparse after pruning are not in the Q/DQ model (None: all kept)."""
    from trtq.onnx_model.sparsity import two_four_sparse_layers

    lost = sorted(set(two_four_sparse_layers(prepared)) - set(two_four_sparse_layers(qdq)))
    if not lost:
        return None
    return (f"{len(lost)} layer(s) lost their 2:4 pattern during quantization (first: {lost[0]}); TensorRT runs "
            "them dense")
