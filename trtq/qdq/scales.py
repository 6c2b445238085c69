"""Quantized types and the symmetric scale math of trtq's Q/DQ models.

TensorRT quantizes symmetrically only: `q = clamp(round(x / scale))` with a zero
point of 0 and a scale > 0 (docs/tensorrt.md §4). For INT8 the range is
[-128, 127] and trtq maps amax to 127 (scale = amax / 127, TensorRT's own
convention for calibration caches and implicit weight scales); for FP8 E4M3 the
largest finite value is 448 (scale = amax / 448).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from trtq._lazy import require

# Smallest amax used for a scale: an all-zero weight channel or a dead activation
# (amax 0) still needs a positive scale, and its values quantize to 0 either way.
AMAX_FLOOR = 1e-8
# FP16 scales (strongly typed FP16 models) must stay normal numbers: the smallest
# normal FP16 value; smaller scales would flush to zero or lose precision.
FP16_MIN_SCALE = float(np.finfo(np.float16).tiny)
FP16_MAX = float(np.finfo(np.float16).max)


@dataclass(frozen=True)
class QType:
    """A quantized element type.

    Attributes:
        name: "int8" or "fp8".
        elem_type: ONNX TensorProto element type of the Q output / zero point.
        qmax: value amax maps to (127 for INT8, 448 for FP8 E4M3).
        min_opset: first default-domain opset whose QuantizeLinear accepts the type.
    """

    name: str
    elem_type: int
    qmax: float
    min_opset: int


INT8 = QType("int8", TensorProto.INT8, 127.0, 10)
FP8 = QType("fp8", TensorProto.FLOAT8E4M3FN, 448.0, 19)
QTYPES = {"int8": INT8, "fp8": FP8}


def scale_from_amax(amax: float | np.ndarray, qtype: QType, fp16: bool = False) -> np.ndarray:
    """Symmetric scale(s) for symmetric range(s) `amax`: max(amax, floor) / qmax, float32.

    With `fp16` the scale is clamped into FP16's normal range, since the scale
    becomes an FP16 initializer.
    """
    amax = np.maximum(np.asarray(amax, dtype=np.float64), AMAX_FLOOR)
    scale = (amax / qtype.qmax).astype(np.float32)
    if fp16:
        scale = np.clip(scale, FP16_MIN_SCALE, FP16_MAX).astype(np.float32)
    return scale


# Elements of a weight converted to float64 at a time by weight_amax (8 MiB of float64).
_AMAX_BLOCK = 1 << 20


def power_of_two_scale(scale: np.ndarray) -> np.ndarray:
    """Each scale rounded up to the next power of two, 2**ceil(log2 s), float32 (QuantizeConfig.pow2).

    Rounding the scale up widens the range a little (at most 2x) and never clips more than before.
    """
    s = np.asarray(scale, dtype=np.float64)
    mantissa, exponent = np.frexp(s)  # s = mantissa * 2**exponent, 0.5 <= mantissa < 1
    rounded = np.where(mantissa == 0.5, s, np.ldexp(1.0, exponent))
    return np.asarray(rounded, dtype=np.float32)


def weight_amax(weight: np.ndarray, axis: int | None) -> np.ndarray:
    """max|w| over everything except `axis` (per-channel, 1-D), or over all of `weight` (scalar).

    Taken over blocks of the first reduced dimension: the float64 |w| of a whole 2 GB weight would
    cost 4 GB more; the maximum of the block maxima is the same number (NaN included).
    """
    if axis is None or weight.ndim == 0:
        flat = weight.reshape(-1)
        if not flat.size:
            return np.asarray(0.0)
        parts = [np.abs(flat[i:i + _AMAX_BLOCK].astype(np.float64)).max() for i in range(0, flat.size, _AMAX_BLOCK)]
        return np.asarray(np.max(parts))
    other = tuple(d for d in range(weight.ndim) if d != axis)
    if not other:
        return np.abs(weight.astype(np.float64))
    first = other[0]
    step = max(1, _AMAX_BLOCK * weight.shape[first] // max(weight.size, 1))

    def block_amax(start: int) -> np.ndarray:
        block = weight[(slice(None),) * first + (slice(start, start + step),)]
        part: np.ndarray = np.abs(block.astype(np.float64)).max(axis=other)
        return part

    result = block_amax(0)
    for start in range(step, weight.shape[first], step):
        np.maximum(result, block_amax(start), out=result)
    return result


def broadcast_scale(scale: np.ndarray, axis: int | None, ndim: int) -> np.ndarray:
    """A per-channel (1-D) scale shaped to broadcast along `axis` of an `ndim`-D array; others as they are."""
    if scale.ndim == 1 and axis is not None:
        shape = [1] * ndim
        shape[axis] = scale.size
        return scale.reshape(shape)
    return scale


def quantize_array(x: np.ndarray, scale: np.ndarray, axis: int | None, qtype: QType) -> np.ndarray:
    """Quantize `x` as ONNX QuantizeLinear does (zero point 0); INT8 or ml_dtypes float8 array."""
    s = broadcast_scale(np.asarray(scale, dtype=np.float32), axis, x.ndim)
    y = x.astype(np.float32) / s
    q: np.ndarray
    if qtype is INT8:
        q = np.clip(np.rint(y), -128, 127).astype(np.int8)  # np.rint rounds half to even, as ONNX does
    else:  # FP8 E4M3FN: saturate to +-448 (QuantizeLinear's default saturate=1), then round to nearest even
        q = np.clip(y, -qtype.qmax, qtype.qmax).astype(_float8_e4m3fn())
    return q


def quantized_tensor(values: np.ndarray, name: str, qtype: QType) -> TensorProto:
    """An INT8 or FLOAT8E4M3FN initializer holding `values` (output of quantize_array)."""
    if qtype is INT8:
        return numpy_helper.from_array(values.astype(np.int8), name)
    raw = np.ascontiguousarray(values.astype(_float8_e4m3fn())).view(np.uint8).tobytes()
    return helper.make_tensor(name, qtype.elem_type, list(values.shape), raw, raw=True)


def zero_point_tensor(name: str, qtype: QType, length: int | None) -> TensorProto:
    """All-zero zero point of the quantized type: a scalar, or 1-D of `length` for per-channel."""
    shape = [] if length is None else [length]
    count = 1 if length is None else length
    if qtype is INT8:
        return numpy_helper.from_array(np.zeros(shape, np.int8), name)
    return helper.make_tensor(name, qtype.elem_type, shape, bytes(count), raw=True)


def scale_tensor(scale: np.ndarray, name: str, elem_type: int = TensorProto.FLOAT) -> TensorProto:
    """Scale initializer (float32, or float16 when the quantized tensor is FP16)."""
    dtype = onnx.helper.tensor_dtype_to_np_dtype(elem_type)
    return numpy_helper.from_array(np.asarray(scale, dtype=np.float32).astype(dtype), name)


def _float8_e4m3fn() -> np.dtype:
    """numpy dtype of FP8 E4M3FN (from ml_dtypes, which onnx itself depends on)."""
    dtype: np.dtype = np.dtype(require("ml_dtypes").float8_e4m3fn)
    return dtype
