"""Learned weight rounding, equalization and activation ranges on the PP-OCRv4 detector, side by side.

    python benchmarks/bench_rounding.py --calib 64 --eval 32

Same samples as benchmarks/bench_accuracy.py (calibration and held-out crops from different
photos); every row is a Q/DQ model with every layer INT8, scored on the held-out samples:
output SQNR and logit SQNR (input of the final Sigmoid), and the seconds the extra step took.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import accuracy_data as data
import bench_accuracy as bench

from tests import assets
from trtq.accuracy.weight_rounding import round_weights
from trtq.calibration.collect import collect_statistics
from trtq.calibration.ranges import ranges_from_stats
from trtq.calibrators import TensorStats
from trtq.config import CalibrationConfig, QuantizeConfig
from trtq.data import Batch
from trtq.onnx_model.model import graph_inputs, load_model
from trtq.onnx_model.tensors import activation_tensors
from trtq.qdq import quantize_model


def batches(array: np.ndarray, name: str, size: int = 8) -> list[dict[str, np.ndarray]]:
    return [{name: array[i:i + size]} for i in range(0, len(array), size)]


def ranges(model, folder: Path, name: str, calib: np.ndarray, method: str = "auto") -> dict[str, float]:
    feeds = [Batch(f, [f"{name}:{i}" for i in range(len(f[name]))]) for f in batches(calib, name)]
    result = collect_statistics(model, folder, activation_tensors(model, "all"), feeds,
                                lambda: TensorStats(2048, None), providers=["CPUExecutionProvider"],
                                show_progress=False)
    return ranges_from_stats(result.stats, CalibrationConfig(method=method))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calib", type=int, default=64)
    parser.add_argument("--eval", type=int, default=32)
    parser.add_argument("--size", type=int, default=320)
    parser.add_argument("--rows", default="nearest,gptq-fp32,gptq-self",
                        help="comma-separated: nearest, gptq-fp32, gptq-self, adaround-fp32, adaround-self")
    parser.add_argument("--round-samples", type=int, default=32)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-rounding-") as tmp:
        path = bench.opset13(assets.ocr_model(assets.OCR_DETECTOR), Path(tmp))
        model = load_model(path)
        spec = graph_inputs(model)[0]
        samples = data.detector_samples(spec, args.calib, args.eval, args.size)
        logit = bench.logit_tensor(model)
        ref = bench.evaluate(bench.session(model, 1, logit), spec.name, samples.eval, logit)
        amax = ranges(model, path.parent, spec.name, samples.calib)
        base = quantize_model(model, amax, QuantizeConfig()).model
        calib = batches(samples.calib, spec.name)
        print(f"PP-OCRv4 det {args.size}x{args.size}: {len(samples.calib)} calibration / {len(samples.eval)} "
              f"held-out samples")
        print("| configuration | output SQNR dB | logit SQNR dB | seconds |\n|---|---|---|---|")
        for row in args.rows.split(","):
            start = time.perf_counter()
            qdq = base
            if row != "nearest":
                method, target = row.split("-")
                qdq, report = round_weights(model, base, calib, method=method, target=target,
                                            max_samples=args.round_samples)
                print("  " + report.summary(), flush=True)
            seconds = time.perf_counter() - start
            out = bench.evaluate(bench.session(qdq, 1, logit), spec.name, samples.eval, logit)
            print(f"| {row} | {bench.sqnr_cosine(ref[0], out[0])[0]:.2f} | {bench.sqnr_cosine(ref[1], out[1])[0]:.2f} "
                  f"| {seconds:.1f} |", flush=True)


if __name__ == "__main__":
    main()
