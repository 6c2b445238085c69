"""AMD Quark (amd-quark 0.13, ONNX) INT8, as one measured process of bench_accuracy.py.

    python quark_int8.py MODEL CALIB.npy OUT.onnx adaround|biascorr

Quark's A8W8 preset (symmetric INT8 activations with Percentile calibration, the preset's
ForceQuantizeNoInputCheck/FoldRelu/AlignConcat options) with per-channel weights as TensorRT uses
them, plus cross-layer equalization and either AdaRound (Quark's default 1000 iterations and
learning rate 0.1, over all calibration samples in batches of 10: its own default batch is one
sample) or bias correction. Runs in its own virtual environment (torch==2.13.0, amd-quark).
"""

from __future__ import annotations

import argparse

import numpy as np
from quark.onnx import (
    AdaRoundConfig,
    BiasCorrectionConfig,
    CLEConfig,
    Int8Spec,
    ModelQuantizer,
    QConfig,
    QLayerConfig,
    QuantGranularity,
)

BATCH = 10


class Reader:
    """onnxruntime-style CalibrationDataReader over an .npy file."""

    def __init__(self, array: np.ndarray, name: str) -> None:
        self.array, self.name, self.start = array, name, 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.start >= len(self.array):
            return None
        chunk = self.array[self.start:self.start + BATCH]
        self.start += BATCH
        return {self.name: chunk}

    def rewind(self) -> None:
        self.start = 0

    def reset(self) -> None:
        self.start = 0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("calib")
    parser.add_argument("out")
    parser.add_argument("variant", choices=("adaround", "biascorr"))
    parser.add_argument("--input", default="input")
    args = parser.parse_args()
    calib = np.load(args.calib)
    if args.variant == "adaround":
        second = AdaRoundConfig(batch_size=BATCH, num_batches=-(-len(calib) // BATCH), data_size=len(calib),
                                num_iterations=1000, learning_rate=0.1)
    else:
        second = BiasCorrectionConfig()
    config = QConfig(global_config=QLayerConfig(activation=Int8Spec(),
                                                weight=Int8Spec(quant_granularity=QuantGranularity.Channel)),
                     algo_config=[CLEConfig(), second],
                     ForceQuantizeNoInputCheck=True, AlignSlice=False, FoldRelu=True, AlignConcat=True)
    ModelQuantizer(config).quantize_model(args.model, args.out, Reader(calib, args.input))


if __name__ == "__main__":
    main()
