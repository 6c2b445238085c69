"""NVIDIA ModelOpt INT8 ONNX PTQ of one encoder, for benchmarks/bench_lm.py (runs in ModelOpt's own venv).

    /work/venvs/modelopt/bin/python benchmarks/lm_modelopt.py ENCODER.onnx CALIB.npz OUT.onnx max|entropy

CALIB.npz holds one [N, L] array per model input (every sentence padded to one length), which is
the calibration-data form `modelopt.onnx.quantization.quantize` takes; it calibrates in batches of 8
on ONNX Runtime's CPU EP and keeps the unquantized parts in FP32 (high_precision_dtype) so that the
result is compared with FP32 on the same terms as the other contenders.

ModelOpt writes into the model file it is given (ModelOpt 0.47 saved ENCODER.onnx again with the
value_info of its shape inference, 668 entries for all-MiniLM-L6-v2, which changes the graph
fingerprint of what the other contenders read next), so it gets a copy in a temporary folder.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np


def main() -> None:
    model, calib, out, method = sys.argv[1:5]
    from modelopt.onnx.quantization import quantize

    data = dict(np.load(calib))
    length = next(iter(data.values())).shape[1]
    shapes = ",".join(f"{name}:8x{length}" for name in data)
    with tempfile.TemporaryDirectory(prefix="lm-modelopt-") as tmp:
        copy = Path(tmp) / Path(model).name  # the exports keep their weights inside the .onnx file
        shutil.copyfile(model, copy)
        quantize(str(copy), quantize_mode="int8", calibration_data=data, calibration_method=method,
                 calibration_shapes=shapes, calibration_eps=["cpu"], high_precision_dtype="fp32", output_path=out)


if __name__ == "__main__":
    main()
