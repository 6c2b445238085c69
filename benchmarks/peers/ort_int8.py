"""ONNX Runtime quantize_static, TensorRT-style settings, as one measured process of bench_accuracy.py.

    python ort_int8.py MODEL CALIB.npy OUT.onnx METHOD [--strided N]

QDQ format, symmetric INT8 activations and weights, per-channel weights, equal batches of at most 10
samples (10 for 300, as Quark and AIMET get them). --strided N passes
CalibStridedMinMax=N (ORT collects every activation of every sample before its histograms, so
300 224x224 samples of a MobileNet take > 18 GB; strides bound that, at the price of histogram
edges fixed by the first chunk, see shared/PEERS.md).
"""

from __future__ import annotations

import argparse
import contextlib
import io

import numpy as np
from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static


def batch_size(count: int, stride: int, largest: int = 10) -> int:
    """The largest batch <= `largest` that cuts `count` samples into equal batches whose number the stride
    divides: ORT's histogram collectors stack a chunk's batches into one array (a short last batch
    fails with "inhomogeneous shape"), and its strided calibration needs the batch count divisible
    by the stride."""
    for size in range(min(largest, count), 0, -1):
        if count % size == 0 and (not stride or (count // size) % stride == 0):
            return size
    raise SystemExit(f"error: no batch size <= {largest} cuts {count} samples into a multiple of {stride} "
                     "equal batches; hint: pass another --strided or sample count")


class Reader:
    """onnxruntime.quantization.CalibrationDataReader over an .npy file, in equal batches."""

    def __init__(self, array: np.ndarray, name: str, size: int) -> None:
        self.array, self.name, self.size = array, name, size
        self.rewind()

    def rewind(self) -> None:
        self.set_range(0, len(self))

    def get_next(self) -> dict[str, np.ndarray] | None:
        chunk = next(self.chunks, None)
        return None if chunk is None else {self.name: chunk}

    def set_range(self, start_index: int, end_index: int) -> None:
        # ORT's strided calibration asks for batches start..end of the reader
        stop = min(self.size * end_index, len(self.array))
        self.chunks = iter([self.array[i:i + self.size] for i in range(self.size * start_index, stop, self.size)])

    def __len__(self) -> int:
        return -(-len(self.array) // self.size)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("calib")
    parser.add_argument("out")
    parser.add_argument("method", choices=("MinMax", "Entropy", "Percentile"))
    parser.add_argument("--input", default="input")
    parser.add_argument("--strided", type=int, default=0, help="CalibStridedMinMax batches (0: off)")
    args = parser.parse_args()
    extra = {"ActivationSymmetric": True, "WeightSymmetric": True}
    if args.strided:
        extra["CalibStridedMinMax"] = args.strided
    calib = np.load(args.calib)
    reader = Reader(calib, args.input, batch_size(len(calib), args.strided))
    with contextlib.redirect_stdout(io.StringIO()), np.errstate(divide="ignore", invalid="ignore"):
        quantize_static(args.model, args.out, reader, quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                        calibrate_method=getattr(CalibrationMethod, args.method), extra_options=extra)


if __name__ == "__main__":
    main()
