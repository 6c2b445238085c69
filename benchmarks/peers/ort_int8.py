"""ONNX Runtime quantize_static, TensorRT-style settings, as one measured process of bench_accuracy.py.

    python ort_int8.py MODEL CALIB.npy OUT.onnx METHOD [--strided N]

QDQ format, symmetric INT8 activations and weights, per-channel weights. --strided N passes
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


class Reader:
    """onnxruntime.quantization.CalibrationDataReader over an .npy file, batches of 8."""

    def __init__(self, array: np.ndarray, name: str) -> None:
        self.array, self.name = array, name
        self.rewind()

    def rewind(self) -> None:
        self.chunks = iter([self.array[i:i + 8] for i in range(0, len(self.array), 8)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        chunk = next(self.chunks, None)
        return None if chunk is None else {self.name: chunk}

    def set_range(self, start_index: int, end_index: int) -> None:
        # ORT's strided calibration asks for batches start..end of the reader
        stop = min(8 * end_index, len(self.array))
        self.chunks = iter([self.array[i:i + 8] for i in range(8 * start_index, stop, 8)])

    def __len__(self) -> int:
        return -(-len(self.array) // 8)


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
    with contextlib.redirect_stdout(io.StringIO()), np.errstate(divide="ignore", invalid="ignore"):
        quantize_static(args.model, args.out, Reader(np.load(args.calib), args.input), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                        calibrate_method=getattr(CalibrationMethod, args.method), extra_options=extra)


if __name__ == "__main__":
    main()
