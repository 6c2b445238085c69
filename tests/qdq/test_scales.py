"""Scale math: symmetric scales, per-channel max|w|, rounding and saturation like ONNX QuantizeLinear."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import onnx
from onnx import numpy_helper

from trtq.qdq.scales import (
    AMAX_FLOOR,
    FP8,
    FP16_MIN_SCALE,
    INT8,
    quantize_array,
    quantized_tensor,
    scale_from_amax,
    weight_amax,
    zero_point_tensor,
)


def test_scale_is_amax_over_qmax():
    assert scale_from_amax(12.7, INT8) == np.float32(0.1)
    assert scale_from_amax(44.8, FP8) == np.float32(0.1)
    np.testing.assert_allclose(scale_from_amax(np.array([1.27, 2.54]), INT8), [0.01, 0.02], rtol=1e-6)


def test_zero_amax_gets_a_tiny_positive_scale():
    scale = scale_from_amax(np.array([0.0, 1.0]), INT8)
    assert scale[0] > 0 and scale[0] == np.float32(AMAX_FLOOR / 127)
    # FP16 scales stay normal FP16 numbers.
    assert scale_from_amax(0.0, INT8, fp16=True) == np.float32(FP16_MIN_SCALE)


def test_weight_amax_per_channel_and_per_tensor():
    w = np.zeros((3, 2, 2, 2), np.float32)
    w[0, 1, 1, 0] = -5.0
    w[1] = 0.5
    w[1, 0, 0, 1] = 2.0  # channel 2 stays all zero
    np.testing.assert_array_equal(weight_amax(w, 0), [5.0, 2.0, 0.0])
    assert weight_amax(w, None) == 5.0
    mm = np.array([[1.0, -3.0], [-2.0, 0.5]], np.float32)  # MatMul B[K, N]: channels along axis 1
    np.testing.assert_array_equal(weight_amax(mm, 1), [2.0, 3.0])


def test_int8_rounds_half_to_even_and_clips():
    x = np.array([0.5, 1.5, 2.5, -0.5, -2.5, 1000.0, -1000.0], np.float32)
    q = quantize_array(x, np.float32(1.0), None, INT8)
    np.testing.assert_array_equal(q, [0, 2, 2, 0, -2, 127, -128])
    assert q.dtype == np.int8


def test_per_channel_quantization_uses_the_channel_scale():
    w = np.array([[1.0, 10.0], [-1.0, -10.0]], np.float32)  # axis 1 channels: amax 1 and 10
    scale = scale_from_amax(weight_amax(w, 1), INT8)
    q = quantize_array(w, scale, 1, INT8)
    np.testing.assert_array_equal(q, [[127, 127], [-127, -127]])


def test_fp8_saturates_at_448_and_rounds_to_e4m3():
    x = np.array([1000.0, -1000.0, 1.0625, 3.3], np.float32)
    q = quantize_array(x, np.float32(1.0), None, FP8)
    # E4M3 has 3 mantissa bits: 1.0625 is halfway between 1.0 and 1.125 -> even mantissa 1.0; 3.3 -> 3.25.
    np.testing.assert_array_equal(q.astype(np.float32), [448.0, -448.0, 1.0, 3.25])


def test_quantized_initializers_have_the_onnx_types():
    q = quantize_array(np.array([1.0, -2.0], np.float32), np.float32(0.5), None, FP8)
    tensor = quantized_tensor(q, "w_q", FP8)
    assert tensor.data_type == onnx.TensorProto.FLOAT8E4M3FN
    back = numpy_helper.to_array(tensor).astype(ml_dtypes.float8_e4m3fn).astype(np.float32)
    np.testing.assert_array_equal(back, [2.0, -4.0])
    zp = zero_point_tensor("zp", FP8, 4)
    assert zp.data_type == onnx.TensorProto.FLOAT8E4M3FN and list(zp.dims) == [4]
    zp8 = zero_point_tensor("zp", INT8, None)
    assert zp8.data_type == onnx.TensorProto.INT8 and list(zp8.dims) == []
    assert numpy_helper.to_array(zp8) == 0
