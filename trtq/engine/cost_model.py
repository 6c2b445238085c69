"""A documented cost model of GPU latency per precision, for when no engine can be built to measure it.

Each compute layer (Conv, ConvTranspose, Gemm, MatMul) costs the longer of its arithmetic time and its
memory time (a roofline, Williams et al. 2009):

    time = max(2 * MACs / peak_ops[precision], bytes_moved(precision) / bandwidth)
    bytes_moved = (weights + input activations + output activations) * bytes per element

with 4/2/1 bytes per element for FP32/FP16/INT8. The model's latency is the sum over its layers.
Elementwise layers (bias, BatchNorm, activations, residual Adds) are taken as fused into the compute
layers, as TensorRT's pointwise fusion does, and cost nothing extra.

Peaks, from NVIDIA's datasheets (dense, no structured sparsity):
- T4 (Turing, SM 7.5): FP32 8.1 TFLOPS, FP16 tensor cores 65 TFLOPS, INT8 130 TOPS, 320 GB/s GDDR6
  (NVIDIA T4 Tensor Core GPU datasheet, nvidia.com/content/dam/en-zz/Solutions/Data-Center/tesla-t4/
  t4-tensor-core-datasheet-951643.pdf).
- A100 SXM4 80 GB (Ampere, SM 8.0): FP32 19.5 TFLOPS, FP16 tensor cores 312 TFLOPS, INT8 624 TOPS,
  2,039 GB/s HBM2e (NVIDIA A100 Tensor Core GPU datasheet, nvidia.com/content/dam/en-zz/Solutions/
  Data-Center/a100/pdf/nvidia-a100-datasheet-us-nvidia-1758950-r4-web.pdf). FP32 is taken at its
  CUDA-core peak; where TensorRT runs FP32 convolutions as TF32 (156 TFLOPS) FP32 is faster than
  modelled.

What this is good for: ranking precisions of one model on one device (INT8 halves the bytes of FP16
and doubles its peak). What it is not: an absolute prediction. Peaks are never reached, and kernel
launches, reformatting between precisions and small-batch under-use of the GPU are not modelled, so
the estimate is a lower bound; a measured engine latency replaces it wherever an engine can be built.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from trtq.errors import ConfigError

PRECISIONS = ("fp32", "fp16", "int8")
BYTES_PER_ELEMENT = {"fp32": 4, "fp16": 2, "int8": 1}


@dataclass(frozen=True)
class Device:
    """Peak throughput per precision (operations/s, one MAC = 2 operations) and memory bandwidth (bytes/s)."""

    name: str
    peak_ops: Mapping[str, float]
    bandwidth: float
    source: str


DEVICES: dict[str, Device] = {
    "t4": Device("NVIDIA T4", {"fp32": 8.1e12, "fp16": 65e12, "int8": 130e12}, 320e9,
                 "NVIDIA T4 datasheet: FP32 8.1 TFLOPS, FP16 65 TFLOPS, INT8 130 TOPS, 320 GB/s"),
    "a100": Device("NVIDIA A100 SXM4 80GB", {"fp32": 19.5e12, "fp16": 312e12, "int8": 624e12}, 2039e9,
                   "NVIDIA A100 datasheet: FP32 19.5 TFLOPS, FP16 312 TFLOPS, INT8 624 TOPS, 2039 GB/s"),
}


@dataclass(frozen=True)
class LayerWork:
    """What one compute layer does for one batch: multiply-accumulates and elements it reads and writes."""

    name: str
    op_type: str
    macs: int
    weight_elements: int
    input_elements: int
    output_elements: int

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "op_type": self.op_type, "macs": self.macs, "weights": self.weight_elements,
                "inputs": self.input_elements, "outputs": self.output_elements}


def device(name: str) -> Device:
    """The device of DEVICES called `name` (t4, a100).

    Raises:
        ConfigError: an unknown name.
    """
    if name not in DEVICES:
        raise ConfigError(f"no cost model for device {name!r}", hint=f"choose one of {', '.join(DEVICES)}")
    return DEVICES[name]


def layer_seconds(layer: LayerWork, precision: str, dev: Device) -> float:
    """Roofline time of one layer at `precision` on `dev` (see the module docstring)."""
    if precision not in PRECISIONS:
        raise ConfigError(f"no cost for precision {precision!r}", hint=f"choose one of {', '.join(PRECISIONS)}")
    moved = (layer.weight_elements + layer.input_elements + layer.output_elements) * BYTES_PER_ELEMENT[precision]
    return max(2.0 * layer.macs / dev.peak_ops[precision], moved / dev.bandwidth)


def estimate_ms(layers: Sequence[LayerWork], precisions: Mapping[str, str], dev: Device,
                default: str = "fp32") -> float:
    """Estimated latency in ms: the sum of layer_seconds, each layer at precisions[name] (else `default`)."""
    return 1e3 * sum(layer_seconds(la, precisions.get(la.name, default), dev) for la in layers)
