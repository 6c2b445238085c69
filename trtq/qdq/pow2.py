"""Power-of-two scales (QuantizeConfig.pow2): which scales of a Q/DQ model are exact powers of two.

Fixed-point accelerators (TI's TIDL with PACT2 training, many NPUs) apply a quantization scale as a
bit shift, so they need scale = 2^k exactly. trtq's convention: the INT8 scale of a tensor is 2^k and
its range amax = 127 * 2^k (TensorRT's scale = amax / 127 then gives exactly 2^k, in the cache too);
k = ceil(log2(amax / 127)), so the range only grows (at most 2x) and nothing is clipped that was not
clipped before. The cost is resolution: up to one bit of the eight.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper


def is_power_of_two(values: np.ndarray) -> np.ndarray:
    """Elementwise: the value is a positive, exact power of two (2^k for an integer k)."""
    v = np.asarray(values, dtype=np.float64)
    mantissa, _ = np.frexp(v)
    exact: np.ndarray = (v > 0) & (mantissa == 0.5)
    return exact


def qdq_scales(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """scale initializer name -> values, for every QuantizeLinear/DequantizeLinear of the main graph."""
    inits = {t.name: t for t in model.graph.initializer}
    names = {n.input[1] for n in model.graph.node
             if n.op_type in ("QuantizeLinear", "DequantizeLinear") and len(n.input) > 1}
    return {name: numpy_helper.to_array(inits[name]) for name in sorted(names) if name in inits}


def pow2_summary(model: onnx.ModelProto) -> str:
    """One report line: how many of the model's Q/DQ scales are powers of two (all, with --pow2)."""
    scales = qdq_scales(model)
    exact = sum(bool(is_power_of_two(v).all()) for v in scales.values())
    return (f"pow2: {exact} of {len(scales)} Q/DQ scale tensors are exact powers of two "
            "(activation amax = 127 * 2^k, scale = 2^k; weight scales rounded up to 2^k)")
