"""The attention core is found through the NaN guard torch's SDPA export puts after Softmax.

Hugging Face encoders exported with opset 17 write `where(isnan(softmax), 0, softmax)` between
Softmax and the second MatMul (all-MiniLM-L6-v2 has it in each of its 6 layers); without seeing
through it, no core was found and the mask Add was treated as a residual Add with no range.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from trtq.qdq.attention import find_attention
from trtq.qdq.graph import GraphIndex


def _core(nan_guard: bool):
    f = TensorProto.FLOAT
    nodes = [
        helper.make_node("MatMul", ["q", "kt"], ["scores"], name="bmm1"),
        helper.make_node("Add", ["scores", "bias"], ["masked"], name="mask_add"),
        helper.make_node("Softmax", ["masked"], ["probs"], axis=-1, name="softmax"),
    ]
    if nan_guard:
        nodes += [helper.make_node("IsNaN", ["probs"], ["nan"], name="isnan"),
                  helper.make_node("Where", ["nan", "zero", "probs"], ["guarded"], name="guard")]
    nodes.append(helper.make_node("MatMul", ["guarded" if nan_guard else "probs", "v"], ["out"], name="bmm2"))
    inputs = [helper.make_tensor_value_info(n, f, s) for n, s in
              (("q", [1, 4, 8]), ("kt", [1, 8, 4]), ("bias", [1, 4, 4]), ("v", [1, 4, 8]))]
    graph = helper.make_graph(nodes, "attention", inputs, [helper.make_tensor_value_info("out", f, [1, 4, 8])],
                              [numpy_helper.from_array(np.zeros((), np.float32), "zero")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_the_core_is_found_through_the_sdpa_nan_guard_and_without_it():
    for guard in (False, True):
        model = _core(guard)
        cores = find_attention(GraphIndex.build(model, infer=False))
        names = [model.graph.node[i].name for i in (cores[0].bmm1, cores[0].mask_add, cores[0].bmm2)]
        assert len(cores) == 1 and names == ["bmm1", "mask_add", "bmm2"], guard


def test_a_where_choosing_between_two_activations_is_not_a_nan_guard():
    model = _core(True)
    model.graph.node[4].input[1] = "q"  # Where(nan, q, probs): not a constant fill, not a guard
    assert find_attention(GraphIndex.build(model, infer=False)) == []
