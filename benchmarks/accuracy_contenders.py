"""The INT8 Q/DQ quantizers compared by benchmarks/bench_accuracy.py, on the same calibration samples.

- trtq: one statistics pass (trtq.calibration.collect) serves every range method
  (trtq.calibration.ranges.ranges_from_stats), then trtq.qdq.quantize_model with the default QuantizeConfig.
- ONNX Runtime quantize_static with TensorRT-style settings: QDQ format, INT8 activations and
  weights, symmetric (ActivationSymmetric/WeightSymmetric), per-channel weights; its own placement
  (every op it knows) and calibrators (MinMax, Entropy with its default 128 bins, Percentile 99.999).
- NVIDIA ModelOpt int8 (max, entropy) when `modelopt.onnx.quantization` imports. nvidia-modelopt 0.47
  requires torch>=2.8 (its qdq_utils imports torch at module level) and, with the [onnx] extra,
  cupy-cuda12x, onnx~=1.21 and onnxruntime-gpu~=1.24, so it is not installed in trtq's environment.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

from trtq.accuracy import Gates
from trtq.accuracy.bias_correction import apply_bias_correction
from trtq.accuracy.fallback import fallback
from trtq.calibration.collect import collect_statistics
from trtq.calibration.ranges import ranges_from_stats
from trtq.calibrators import TensorStats, available_methods
from trtq.config import CalibrationConfig, QuantizeConfig
from trtq.data import Batch
from trtq.onnx_model.tensors import activation_tensors
from trtq.qdq import quantize_model

TRTQ_METHODS = ("minmax", "entropy", "percentile", "mse", "auto")
ORT_METHODS = ("MinMax", "Entropy", "Percentile")
MODELOPT_METHODS = ("max", "entropy")
BATCH = 8


@dataclass
class Contender:
    """One Q/DQ model (or the reason there is none) and how long making it took."""

    tool: str
    method: str
    model: onnx.ModelProto | None = None
    seconds: float = 0.0
    note: str = ""
    extra: dict[str, object] = field(default_factory=dict)


def batches(array: np.ndarray, name: str, size: int = BATCH) -> Iterator[dict[str, np.ndarray]]:
    for start in range(0, len(array), size):
        yield {name: array[start:start + size]}


def trtq_contenders(model: onnx.ModelProto, model_dir: Path, name: str, calib: np.ndarray,
                    gate_sqnr: float | None = None, max_excluded: int = 10) -> list[Contender]:
    """trtq: one collection pass, then one Q/DQ model per available range method; with `gate_sqnr`, also
    what `trtq build --method auto --fallback --min-sqnr GATE --bias-correction auto` ships."""
    methods = [m for m in TRTQ_METHODS if m in available_methods()]
    tensors = activation_tensors(model, "all")
    feeds = [Batch(f, [f"{name}:{i}" for i in range(len(f[name]))]) for f in batches(calib, name)]
    start = time.perf_counter()
    result = collect_statistics(model, model_dir, tensors, feeds, lambda: TensorStats(2048, None),
                                providers=["CPUExecutionProvider"], show_progress=False)
    collect_s = time.perf_counter() - start
    out = []
    for method in methods:
        start = time.perf_counter()
        amax = ranges_from_stats(result.stats, CalibrationConfig(method=method))
        quantized = quantize_model(model, amax, QuantizeConfig())
        out.append(Contender("trtq", method, quantized.model, time.perf_counter() - start,
                             extra={"collect_seconds": collect_s, "quantized_nodes": len(quantized.report.quantized)}))
    if gate_sqnr is not None:
        out.append(_build_like(model, name, calib, ranges_from_stats(result.stats, CalibrationConfig(method="auto")),
                               gate_sqnr, max_excluded))
    return out


def _build_like(model: onnx.ModelProto, name: str, calib: np.ndarray, amax: dict[str, float], gate_sqnr: float,
                max_excluded: int) -> Contender:
    """The build pipeline's quantize stage (trtq.pipeline.quantize_stage) on ranges from all calibration samples.

    Like `trtq build`, the fallback and bias correction 'auto' judge on samples held out from what they
    tune on: every 4th calibration sample (interleaved, so that they look like the rest: the sample
    sets are ordered by source); the benchmark scores on other samples again.
    """
    tune = [dict(b) for b in batches(calib[3::4], name)]
    fit = np.delete(calib, np.s_[3::4], axis=0)
    start = time.perf_counter()
    found = fallback(model, amax, tune, QuantizeConfig(), Gates(min_sqnr=gate_sqnr), max_excluded)
    corrected, bias = apply_bias_correction(model, found.model, list(batches(fit, name)), "auto",
                                            tune, max_samples=128)
    note = f"{len(found.excluded)} layers float, gate {'met' if found.passed else 'missed'}"
    if bias is not None:
        note += f", bias corr. {'kept' if bias.applied else 'dropped'}"
    return Contender("trtq", "auto+fb", corrected, time.perf_counter() - start, note=note,
                     extra={"excluded": [node for node, _ in found.excluded]})


class _Reader:
    """onnxruntime.quantization.CalibrationDataReader over a sample array (duck-typed)."""

    def __init__(self, array: np.ndarray, name: str) -> None:
        self._iter = batches(array, name)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._iter, None)


def ort_contenders(model_path: Path, name: str, calib: np.ndarray) -> list[Contender]:
    """ONNX Runtime quantize_static, TensorRT-style settings, one model per calibration method."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    out = []
    for method in ORT_METHODS:
        with tempfile.TemporaryDirectory(prefix="bench-ort-") as tmp:
            target = Path(tmp) / "qdq.onnx"
            start = time.perf_counter()
            # its calibrators print their progress, and divide by zero on all-zero histograms
            with contextlib.redirect_stdout(io.StringIO()), np.errstate(divide="ignore", invalid="ignore"):
                quantize_static(str(model_path), str(target), _Reader(calib, name), quant_format=QuantFormat.QDQ,
                                per_channel=True, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                                calibrate_method=getattr(CalibrationMethod, method),
                                extra_options={"ActivationSymmetric": True, "WeightSymmetric": True})
            out.append(Contender("ort", method, onnx.load(target), time.perf_counter() - start))
    return out


def modelopt_status() -> str | None:
    """None when ModelOpt's ONNX quantizer imports, else why not."""
    try:
        import modelopt.onnx.quantization  # noqa: F401
    except Exception as exc:  # ImportError, or a missing torch/cupy underneath
        return f"not installed ({str(exc).splitlines()[0][:60]}; needs torch>=2.8)"
    return None


def modelopt_contenders(model_path: Path, name: str, calib: np.ndarray) -> list[Contender]:
    """ModelOpt int8 (calibration on the CPU EP, no FP16 conversion), or one row saying why not."""
    status = modelopt_status()
    if status is not None:
        return [Contender("modelopt", "-", note=status)]
    from modelopt.onnx.quantization import quantize

    out = []
    for method in MODELOPT_METHODS:
        with tempfile.TemporaryDirectory(prefix="bench-modelopt-") as tmp:
            target = Path(tmp) / "qdq.onnx"
            start = time.perf_counter()
            try:
                quantize(str(model_path), quantize_mode="int8", calibration_data={name: calib},
                         calibration_method=method, calibration_eps=["cpu"], high_precision_dtype="fp32",
                         output_path=str(target))
                out.append(Contender("modelopt", method, onnx.load(target), time.perf_counter() - start))
            except Exception as exc:  # report the failure in the table instead of stopping the benchmark
                out.append(Contender("modelopt", method, note=f"failed: {type(exc).__name__}: {exc}"[:100]))
    return out
