"""The cost model's roofline on analytic cases, and layer work counted from a real run."""

from __future__ import annotations

import numpy as np
import pytest

from tests.qdq.models import conv_bn_relu, mlp
from trtq.engine.cost_model import DEVICES, LayerWork, estimate_ms, layer_seconds
from trtq.runtime.layer_work import layer_work


def test_compute_bound_and_memory_bound_layers():
    t4 = DEVICES["t4"]
    big = LayerWork("gemm", "Gemm", macs=10**9, weight_elements=10**6, input_elements=10**3, output_elements=10**3)
    # 2e9 ops at 8.1e12 op/s in FP32 vs 4e6 bytes at 320e9 B/s: compute bound
    assert layer_seconds(big, "fp32", t4) == pytest.approx(2e9 / 8.1e12)
    assert layer_seconds(big, "int8", t4) == pytest.approx(2e9 / 130e12)
    thin = LayerWork("gemv", "MatMul", macs=10**6, weight_elements=10**6, input_elements=10**3, output_elements=10**3)
    # 1e6 weights: 4 MB in FP32, 1 MB in INT8 over 320 GB/s: memory bound, bytes scale with the precision
    assert layer_seconds(thin, "fp32", t4) == pytest.approx(1.002e6 * 4 / 320e9)
    assert layer_seconds(thin, "int8", t4) == pytest.approx(1.002e6 / 320e9)
    both = estimate_ms([big, thin], {"gemm": "int8"}, t4, default="fp16")
    assert both == pytest.approx(1e3 * (2e9 / 130e12 + 1.002e6 * 2 / 320e9))
    assert estimate_ms([big], {}, DEVICES["a100"]) < estimate_ms([big], {}, t4)


def test_layer_work_counts_macs_from_the_run_shapes():
    layers = {la.name: la for la in layer_work(conv_bn_relu(), {"x": np.zeros((1, 3, 16, 16), np.float32)})}
    # conv1: out 1x8x16x16, each from 3x3x3 inputs; weights 8x3x3x3 + bias 8
    assert layers["conv1"].macs == 8 * 16 * 16 * 27 and layers["conv1"].weight_elements == 216 + 8
    assert layers["conv1"].input_elements == 3 * 16 * 16 and layers["conv1"].output_elements == 8 * 16 * 16
    assert layers["conv2"].macs == 16 * 8 * 8 * 72  # after the 2x2 max pool
    assert layers["fc"].macs == 10 * 16
    dense = {la.name: la.macs for la in layer_work(mlp(), {"x": np.zeros((4, 16), np.float32)})}
    assert dense == {"gemm_tb1": 4 * 32 * 16, "gemm_tb0": 4 * 24 * 32, "matmul": 4 * 10 * 24}
