"""`trtq.pipeline.quantize`: FP32 model + calibration table -> Q/DQ ONNX model on disk.

The table may come from `trtq calibrate` (with a provenance sidecar that must
match the model) or from TensorRT 8.x/10.x itself, which is how a user migrates
a cache to TensorRT 11: TensorRT's caches also name network-internal tensors,
so names the ONNX graph lacks are ignored with a warning, and a cache that
shares no tensor with the model is refused as one made for another model.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path

import onnx

from trtq.atomic import check_writable
from trtq.cache import CalibrationTable, read_cache, validate_table
from trtq.cache.validate import check_coverage
from trtq.config import QuantizeConfig
from trtq.errors import CacheError, ConfigError
from trtq.onnx_model import model as model_io
from trtq.onnx_model.tensors import activation_tensors
from trtq.qdq import QuantizeResult, lint_model, quantize_model
from trtq.qdq.needed import qdq_tensors

log = logging.getLogger(__name__)


@dataclass
class QuantizeOutcome:
    """The Q/DQ model written, the quantizer's report and what the user should know."""

    result: QuantizeResult
    path: Path
    warnings: list[str] = field(default_factory=list)


def default_qdq_path(model_path: Path, folder: Path | None = None, fp16: bool = False) -> Path:
    """`<folder or model folder>/<stem>.qdq.onnx` (`.qdq.fp16.onnx` for the FP16 variant)."""
    suffix = ".qdq.fp16.onnx" if fp16 else ".qdq.onnx"
    return (folder or model_path.parent) / f"{model_path.stem}{suffix}"


def usable_ranges(table: CalibrationTable, model: onnx.ModelProto, *, force: bool = False,
                  source: str = "the calibration cache", options: QuantizeConfig | None = None,
                  weights_dir: Path | None = None,
                  fingerprint: model_io.ModelFingerprint | None = None) -> tuple[dict[str, float], list[str]]:
    """The table's amax values for tensors of `model`, and warnings (about tensors the Q/DQ model
    made with `options` needs and the table lacks, among others). `weights_dir`: the folder of a
    model loaded by reference (model_io.load_model_by_reference), for its fingerprint; `fingerprint`:
    that fingerprint when the caller has it (`trtq build`), so that the weights are not hashed again.

    Raises:
        CacheError: the cache shares no tensor with the model, its values are unusable, or
            (unless `force`) its provenance names another graph or other weights, or it has no
            provenance and names too few of the model's quantizable tensors (check_coverage).
    """
    in_model = set(activation_tensors(model, "all"))
    shared = [n for n in table.amax if n in in_model]
    if not shared:
        raise CacheError(f"{source} has none of the model's activation tensors (it names "
                         f"{len(table.amax)} others): it was made for another model",
                         hint="calibrate this model with 'trtq calibrate', or give the cache made for it")
    needed = activation_tensors(model, "quantizable")
    coverage = check_coverage(table, needed, force=force, source=source)
    # Names are checked on the shared subset: missing inputs only leave their layer in float.
    subset = dataclasses.replace(table, amax={n: table.amax[n] for n in shared})
    fp = fingerprint if fingerprint is not None else model_io.fingerprint(model, weights_dir)
    warnings = coverage + validate_table(subset, fingerprint=fp, tensor_names=shared, force=force, source=source)
    ignored = len(table.amax) - len(shared)
    if ignored:
        warnings.append(f"{ignored} of {source}'s {len(table.amax)} entries name tensors that are not in the "
                        "ONNX graph (TensorRT-internal names); ignored")
    planned = qdq_tensors(model, options or QuantizeConfig())
    missing = [n for n in planned if n not in table.amax]
    if missing:
        warnings.append(f"{len(missing)} inputs of quantized layers have no range in {source}; "
                        f"those layers stay in float (first: {missing[0]!r})")
    return {n: table.amax[n] for n in shared}, warnings


def write_qdq_model(model: onnx.ModelProto, amax: dict[str, float], options: QuantizeConfig,
                    out_path: Path, weights_dir: Path | None = None) -> QuantizeResult:
    """Quantize `model` and write it atomically; lint findings (our bugs, if any) are logged.
    `weights_dir`: the folder of a model loaded by reference (model_io.load_model_by_reference)."""
    result = quantize_model(model, amax, options, weights_dir)
    save_qdq_model(result.model, out_path, weights_dir)
    return result


def save_qdq_model(qdq_model: onnx.ModelProto, out_path: Path, weights_dir: Path | None = None) -> None:
    """Write a Q/DQ model atomically after linting it (findings are trtq bugs, so logged, not raised);
    weights still in files under `weights_dir` are copied into its data file."""
    for finding in lint_model(qdq_model):
        if finding.severity == "error":
            log.warning("the Q/DQ model breaks a TensorRT rule: %s", finding.line())
    model_io.save_model(qdq_model, out_path, weights_dir)


def quantize_file(model_path: str | Path, cache_path: str | Path, out_path: str | Path | None,
                  options: QuantizeConfig, *, force: bool = False) -> QuantizeOutcome:
    """Apply the cache at `cache_path` to the model at `model_path` and write the Q/DQ model.

    Raises:
        ConfigError: precision int4-weights, which takes no cache (trtq.pipeline.weight_only does it).
    """
    if options.precision == "int4-weights":
        raise ConfigError("--precision int4-weights quantizes weights only and takes no calibration cache",
                          hint="use trtq.pipeline.weight_only.quantize_weight_only_file (what `trtq quantize` calls)")
    model_path, cache_path = Path(model_path), Path(cache_path)
    out = Path(out_path) if out_path else default_qdq_path(model_path, fp16=options.fp16)
    check_writable(out.parent, out)
    model, weights_dir = model_io.load_model_by_reference(model_path)  # over 2 GiB: weights stay in their files
    table = read_cache(cache_path)
    amax, warnings = usable_ranges(table, model, force=force, source=str(cache_path), options=options,
                                   weights_dir=weights_dir)
    result = write_qdq_model(model, amax, options, out, weights_dir)
    return QuantizeOutcome(result, out, warnings + result.report.warnings)
