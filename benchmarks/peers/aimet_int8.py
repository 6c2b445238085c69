"""AIMET-ONNX (aimet-onnx 2.42) INT8 with cross-layer equalization and AdaRound, as one measured process
of bench_accuracy.py.

    python aimet_int8.py MODEL CALIB.npy OUT.onnx [--iterations 1000 | 0]

equalize_model (BN fold, ReLU6 -> ReLU, cross-layer scaling, high-bias fold), then a
QuantizationSimModel with TF-enhanced ranges, AIMET's per-channel default config with symmetric
activations as TensorRT needs them, apply_adaround over all calibration samples (batches of 10;
1000 iterations per layer like Quark's default, AIMET recommends 10000, which does not fit the
benchmark's CPU time; --iterations 0: no AdaRound, CLE and TF-enhanced ranges alone), activation encodings on
the same samples, exported as ONNX Q/DQ (signed INT8).
Runs in its own virtual environment (torch==2.13.0, aimet-onnx).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import aimet_onnx
import numpy as np
import onnx
from aimet_onnx import QuantizationSimModel, apply_adaround
from aimet_onnx.cross_layer_equalization import equalize_model

BATCH = 10


def symmetric_config(folder: Path) -> str:
    """AIMET's default per-channel config with symmetric activations (TensorRT has no zero points)."""
    source = Path(aimet_onnx.__file__).parent / "common" / "quantsim_config" / "default_config_per_channel.json"
    config = json.loads(source.read_text())
    config["defaults"]["ops"]["is_symmetric"] = "True"
    target = folder / "config.json"
    target.write_text(json.dumps(config))
    return str(target)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("calib")
    parser.add_argument("out")
    parser.add_argument("--input", default="input")
    parser.add_argument("--iterations", type=int, default=1000)
    args = parser.parse_args()
    calib = np.load(args.calib)
    inputs = [{args.input: calib[i:i + BATCH]} for i in range(0, len(calib), BATCH)]
    model = onnx.load(args.model)
    equalize_model(model)
    with tempfile.TemporaryDirectory() as tmp:
        sim = QuantizationSimModel(model, quant_scheme="tf_enhanced", param_type="int8", activation_type="int8",
                                   config_file=symmetric_config(Path(tmp)), providers=["CPUExecutionProvider"])
        if args.iterations:
            apply_adaround(sim, inputs, num_iterations=args.iterations)
        sim.compute_encodings(inputs)
        qdq = sim.to_onnx_qdq(force_activation_as="signed")
    qdq.ir_version = min(qdq.ir_version, 10)
    onnx.save(qdq, args.out)


if __name__ == "__main__":
    main()
