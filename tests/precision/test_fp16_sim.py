"""The FP16 simulation rounds where an FP16 engine stores FP16: its error is FP16's, not zero and not INT8's."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from tests.accuracy_models import conv_chain, image_batches
from tests.qdq.helpers import run
from trtq.qdq.fp16_sim import simulate_fp16


def test_weights_and_outputs_are_fp16_values_and_the_error_is_fp16_sized():
    model = conv_chain()
    sim = simulate_fp16(model)
    onnx.checker.check_model(sim)
    for tensor in sim.graph.initializer:
        w = numpy_helper.to_array(tensor)
        np.testing.assert_array_equal(w, w.astype(np.float16).astype(np.float32))
    x = image_batches(0, (3, 12, 12), 4, 1)[0]
    ref, got = run(model, x)[0], run(sim, x)[0]
    np.testing.assert_array_equal(got, got.astype(np.float16).astype(np.float32))  # outputs are FP16 values
    sqnr = 10 * np.log10(np.sum(ref.astype(np.float64) ** 2) / np.sum((ref - got).astype(np.float64) ** 2))
    assert 55.0 < sqnr < 80.0  # 11 significant bits give ~68 dB per rounding; several roundings compound
    casts = [n for n in sim.graph.node if n.op_type == "Cast"]
    assert len(casts) == 2 * (3 + 1)  # one round trip per conv input and one for the output
