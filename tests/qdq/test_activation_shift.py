"""Shifted activations (trtq.qdq.activation_shift, trtq.accuracy.activation_shift): exact with quantization off,
the shift on the INT8 grid, the bias compensation in place, a padded conv's border map right, a smaller INT8 error."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from tests.qdq.helpers import activation_amax, build_report, run, sqnr_db
from trtq.accuracy.activation_shift import shift_activations
from trtq.qdq import quantize_model
from trtq.qdq.activation_shift import shift_targets

C = 8


def _init(name: str, value: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(value.astype(np.float32), name)


def relu_cnn(seed: int = 0) -> onnx.ModelProto:
    """x -> 3x3 conv -> Relu -> 3x3 depthwise (pads 1, stride 2) -> Clip(0, 6) -> 1x1 conv -> Relu -> GAP -> Gemm:
    every layer reads a non-negative activation, the regime where symmetric INT8 wastes half its levels."""
    rng = np.random.default_rng(seed)
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["a1"], name="stem", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["a1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["a2"], name="dw", group=C, pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Clip", ["a2", "lo", "hi"], ["r2"], name="relu6"),
        helper.make_node("Conv", ["r2", "w3", "b3"], ["a3"], name="project"),
        helper.make_node("Relu", ["a3"], ["r3"], name="relu3"),
        helper.make_node("GlobalAveragePool", ["r3"], ["p"], name="gap"),
        helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "w4", "b4"], ["y"], name="fc", transB=1),
    ]
    inits = [_init("w1", rng.standard_normal((C, 3, 3, 3)) * 0.5), _init("b1", rng.standard_normal(C) * 0.2),
             _init("w2", rng.standard_normal((C, 1, 3, 3))), _init("b2", rng.standard_normal(C) * 0.3),
             _init("lo", np.array(0.0)), _init("hi", np.array(6.0)),
             _init("w3", rng.standard_normal((C, C, 1, 1)) * 0.5), _init("b3", rng.standard_normal(C) * 0.1),
             _init("w4", rng.standard_normal((5, C))), _init("b4", rng.standard_normal(5))]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", 1, ["N", 3, 12, 12])],
                              [helper.make_tensor_value_info("y", 1, ["N", 5])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model


def gelu_mlp(seed: int = 0) -> onnx.ModelProto:
    """x [N, L, 16] -> MatMul + bias -> GELU (Erf form, as exported) -> MatMul + bias: a transformer FFN."""
    rng = np.random.default_rng(seed)
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["m1"], name="fc1"),
        helper.make_node("Add", ["b1", "m1"], ["h"], name="fc1_bias"),
        helper.make_node("Div", ["h", "sqrt2"], ["hd"], name="gelu_div"),
        helper.make_node("Erf", ["hd"], ["he"], name="gelu_erf"),
        helper.make_node("Add", ["he", "one"], ["h1"], name="gelu_add"),
        helper.make_node("Mul", ["h", "h1"], ["hm"], name="gelu_mul"),
        helper.make_node("Mul", ["hm", "half"], ["g"], name="gelu_half"),
        helper.make_node("MatMul", ["g", "w2"], ["m2"], name="fc2"),
        helper.make_node("Add", ["m2", "b2"], ["y"], name="fc2_bias"),
    ]
    inits = [_init("w1", rng.standard_normal((16, 32)) * 0.4), _init("b1", rng.standard_normal(32) * 0.5 + 0.5),
             _init("w2", rng.standard_normal((32, 16)) * 0.3), _init("b2", rng.standard_normal(16) * 0.1),
             _init("sqrt2", np.array(np.sqrt(2.0))), _init("one", np.array(1.0)), _init("half", np.array(0.5))]
    graph = helper.make_graph(nodes, "ffn", [helper.make_tensor_value_info("x", 1, ["N", "L", 16])],
                              [helper.make_tensor_value_info("y", 1, ["N", "L", 16])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model


def _cnn_data(n: int, seed: int) -> list[dict[str, np.ndarray]]:
    x = np.random.default_rng(seed).standard_normal((n, 3, 12, 12)).astype(np.float32)
    return [{"x": x[i:i + 8]} for i in range(0, n, 8)]


def _mlp_data(n: int, seed: int) -> list[dict[str, np.ndarray]]:
    x = np.random.default_rng(seed).standard_normal((n, 6, 16)).astype(np.float32)
    return [{"x": x[i:i + 8]} for i in range(0, n, 8)]


def _quantized(model: onnx.ModelProto, calib: list[dict[str, np.ndarray]]) -> onnx.ModelProto:
    return quantize_model(model, activation_amax(model, calib)).model


def _outputs(model: onnx.ModelProto, batches: list[dict[str, np.ndarray]]) -> np.ndarray:
    return np.concatenate([run(model, b)[0] for b in batches])


def _without_activation_qdq(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy whose activation Q/DQ pairs are bypassed (weights keep theirs): quantization of activations off."""
    work = onnx.ModelProto()
    work.CopyFrom(model)
    inits = {t.name for t in work.graph.initializer}
    producer = {o: n for n in work.graph.node for o in n.output}
    for node in work.graph.node:
        for i, name in enumerate(node.input):
            dq = producer.get(name)
            q = producer.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
            if q is not None and q.op_type == "QuantizeLinear" and q.input[0] not in inits:
                node.input[i] = q.input[0]
    return work


@pytest.mark.parametrize("mode", ["linear", "all"])
def test_shift_is_exact_with_activation_quantization_off(mode):
    """(x - z) W_q + W_q z = x W_q: with the activation pairs bypassed, the shifted model computes the plain one."""
    model, calib = relu_cnn(), _cnn_data(32, 1)
    qdq = _quantized(model, calib)
    shifted, report = shift_activations(model, qdq, calib, mode)
    assert report.shifted, report.summary()
    if mode == "all":
        assert any("dw" in t.layers for t in report.shifted)  # the padded depthwise conv got a border map
    held_out = _cnn_data(16, 2)
    plain = _outputs(_without_activation_qdq(qdq), held_out)
    same = _outputs(_without_activation_qdq(shifted), held_out)
    np.testing.assert_allclose(same, plain, rtol=1e-5, atol=1e-5 * float(np.abs(plain).max()))


def test_shift_lies_on_the_new_grid_and_halves_a_relu_range():
    model, calib = relu_cnn(), _cnn_data(32, 1)
    shifted, report = shift_activations(model, _quantized(model, calib), calib, "all")
    inits = {t.name: numpy_helper.to_array(t) for t in shifted.graph.initializer}
    subs = [n for n in shifted.graph.node if n.op_type == "Sub"]
    assert len(subs) == len(report.shifted)
    readers = {n.input[0]: n for n in shifted.graph.node if n.op_type == "QuantizeLinear"}
    for sub in subs:
        scale = float(inits[readers[sub.output[0]].input[1]])
        steps = inits[sub.input[1]] / scale
        # a zero input lands on a grid point (to float32 rounding of z), so it stays exactly representable
        np.testing.assert_allclose(steps, np.rint(steps), rtol=0, atol=1e-4)
    relu = next(t for t in report.shifted if t.tensor == "r1")  # a plain Relu output: [0, max] -> +-max/2
    assert relu.gain_db == pytest.approx(20 * np.log10(2), abs=0.2)


def test_padded_conv_border_map_matches_a_direct_computation():
    """The depthwise conv's output in the shifted model equals conv(DQ(Q(x - z)) + z) computed by hand."""
    model, calib = relu_cnn(), _cnn_data(32, 1)
    shifted, report = shift_activations(model, _quantized(model, calib), calib, "all")
    assert any("dw" in t.layers for t in report.shifted)
    producer = {o: n for n in shifted.graph.node for o in n.output}
    dw = next(n for n in shifted.graph.node if n.name == "dw")
    dq = producer[dw.input[0]]
    probe = onnx.ModelProto()
    probe.CopyFrom(shifted)
    for name in (dq.output[0], dw.input[1], "a2"):
        probe.graph.output.add().name = name
    x_hat, w_hat, out = run(probe, _cnn_data(8, 3)[0])[1:]
    inits = {t.name: numpy_helper.to_array(t) for t in shifted.graph.initializer}
    z = inits[producer[producer[dq.input[0]].input[0]].input[1]].reshape(1, C, 1, 1)
    conv = helper.make_node("Conv", ["i", "w", "b"], ["o"], group=C, pads=[1, 1, 1, 1], strides=[2, 2])
    graph = helper.make_graph([conv], "c", [helper.make_tensor_value_info("i", 1, None)],
                              [helper.make_tensor_value_info("o", 1, None)],
                              [_init("w", w_hat), _init("b", inits["b2"])])
    direct = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    direct.ir_version = 8
    expected = run(direct, {"i": (x_hat + z).astype(np.float32)})[0]
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5 * float(np.abs(expected).max()))


def test_shift_lowers_the_int8_error():
    model, calib = relu_cnn(), _cnn_data(64, 1)
    qdq = _quantized(model, calib)
    held_out = _cnn_data(32, 5)
    fp32 = _outputs(model, held_out)
    base = sqnr_db(fp32, _outputs(qdq, held_out))
    linear = sqnr_db(fp32, _outputs(shift_activations(model, qdq, calib, "linear")[0], held_out))
    every = sqnr_db(fp32, _outputs(shift_activations(model, qdq, calib, "all")[0], held_out))
    # weight rounding alone keeps 40.5 dB here: halving the activation steps takes 37.7 dB to about 39 dB
    assert linear > base + 1.0 and every > base + 1.0, (base, linear, every)


def test_matmul_shift_folds_into_the_linear_bias():
    """A transformer FFN: the GELU output is shifted, fc2's bias Add takes the shift back, no Add is inserted."""
    model, calib = gelu_mlp(), _mlp_data(32, 1)
    qdq = _quantized(model, calib)
    shifted, report = shift_activations(model, qdq, calib, "linear")
    assert [t.tensor for t in report.shifted] == ["g"]
    added = [n.op_type for n in shifted.graph.node if n.name not in {m.name for m in qdq.graph.node}]
    assert added == ["Sub"]
    bias = next(n for n in shifted.graph.node if n.name == "fc2_bias")
    assert bias.input[1] != "b2"  # the Linear bias took the shift back
    held_out = _mlp_data(16, 2)
    np.testing.assert_allclose(_outputs(_without_activation_qdq(shifted), held_out),
                               _outputs(_without_activation_qdq(qdq), held_out), rtol=1e-5, atol=1e-4)


def test_symmetric_tensors_are_left_alone():
    """A tensor spanning +-amax gains nothing: the candidates exist, nothing is shifted, the model is unchanged."""
    model, calib = gelu_mlp(), _mlp_data(32, 1)
    qdq = _quantized(model, calib)
    assert "x" in [t.tensor for t in shift_targets(qdq, "linear")]  # the graph input feeds fc1
    report = shift_activations(model, qdq, calib, "linear")[1]
    assert "x" not in [t.tensor for t in report.shifted]


def test_auto_keeps_the_shift_only_when_the_held_out_sqnr_rises():
    from trtq.accuracy.evaluation import Reference

    model, calib = relu_cnn(), _cnn_data(64, 1)
    qdq = _quantized(model, calib)
    reference = Reference(model, _cnn_data(32, 5))
    shifted, report = shift_activations(model, qdq, calib, "auto", reference=reference)
    assert report.sqnr_before is not None and report.sqnr_after is not None
    assert report.applied == (report.sqnr_after > report.sqnr_before) and report.applied  # this model gains
    assert shifted.SerializeToString() == shift_activations(model, qdq, calib, "all")[0].SerializeToString()
    # judged against the unshifted Q/DQ model itself, where nothing can beat it: the shift is dropped
    judge = Reference(qdq, _cnn_data(32, 5))
    kept, report = shift_activations(model, qdq, calib, "auto", reference=judge)
    assert not report.applied and kept.SerializeToString() == qdq.SerializeToString()
    assert "not kept" in report.summary()
    # a model measured already (the fallback's last step) is not run again: its SQNR is taken as given
    _, given = shift_activations(model, qdq, calib, "auto", reference=judge, sqnr_before=-100.0)
    assert given.sqnr_before == -100.0 and given.applied


def test_shift_is_deterministic():
    model, calib = relu_cnn(), _cnn_data(32, 1)
    qdq = _quantized(model, calib)
    first = shift_activations(model, qdq, calib, "all")[0].SerializeToString()
    assert shift_activations(model, qdq, calib, "all")[0].SerializeToString() == first


def test_off_and_fast_do_nothing(tmp_path):
    model = relu_cnn()
    assert shift_targets(_quantized(model, _cnn_data(16, 1)), "off") == []
    onnx.save(model, tmp_path / "m.onnx")
    np.save(tmp_path / "calib.npy", np.concatenate([b["x"] for b in _cnn_data(48, 3)]))
    np.save(tmp_path / "eval.npy", np.concatenate([b["x"] for b in _cnn_data(16, 4)]))

    shifted = build_report(tmp_path, "shift", "--activation-shift", "all")
    assert shifted["accuracy"]["activation_shift"]["shifted"]
    assert "activation shift (all)" in (tmp_path / "shift" / "report.md").read_text()
    fast = build_report(tmp_path, "fast", "--activation-shift", "all", "--fast")
    assert fast["accuracy"].get("activation_shift") is None
    auto = build_report(tmp_path, "auto", "--activation-shift", "auto")["accuracy"]["activation_shift"]
    assert auto["mode"] == "auto" and auto["sqnr_before"] is not None
    assert auto["applied"] == (auto["sqnr_after"] > auto["sqnr_before"])
    off = build_report(tmp_path, "off", "--activation-shift", "off")
    sqnr = [r["comparison"]["outputs"]["y"]["sqnr_db"] for r in (off, shifted)]
    assert sqnr[1] > sqnr[0] + 1.0, sqnr
