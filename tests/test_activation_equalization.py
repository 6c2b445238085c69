"""Activation equalization (trtq.accuracy.activation_equalization): exact in FP32, equal channel ranges for the
depthwise conv's input, weight integers unchanged, and a smaller INT8 error end to end."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from tests.qdq.helpers import build_report, run
from trtq.accuracy.activation_equalization import HEADROOM, equalize_activations
from trtq.errors import DataError
from trtq.qdq.graph import GraphIndex

C = 8


def _conv(name: str, x: str, y: str, w: np.ndarray, b: np.ndarray, **attrs) -> tuple:
    node = helper.make_node("Conv", [x, f"{name}_w", f"{name}_b"], [y], name=name, **attrs)
    return node, [numpy_helper.from_array(w, f"{name}_w"), numpy_helper.from_array(b, f"{name}_b")]


def expand_depthwise(activation: str, depthwise: bool = True, seed: int = 0) -> onnx.ModelProto:
    """x -> 1x1 expand (output channel ranges spread over 2 decades) -> activation -> 3x3 depthwise (or dense)
    -> 1x1 projection. The depthwise weights undo the spread, so that every channel matters alike at the
    output (as in BatchNorm-folded networks, where a narrow channel is often re-amplified)."""
    rng = np.random.default_rng(seed)
    spread = np.logspace(-2, 0, C)
    w1 = (rng.standard_normal((C, 4, 1, 1)) * spread.reshape(C, 1, 1, 1)).astype(np.float32)
    n1, i1 = _conv("expand", "x", "a", w1, (rng.standard_normal(C) * 0.01).astype(np.float32))
    w2 = rng.standard_normal((C, 1 if depthwise else C, 3, 3))
    w2 = (w2 / spread.reshape(C, 1, 1, 1) if depthwise else w2).astype(np.float32)
    n2, i2 = _conv("dw", "r", "d", w2, rng.standard_normal(C).astype(np.float32), group=C if depthwise else 1,
                   pads=[1, 1, 1, 1])
    n3, i3 = _conv("project", "d", "y", rng.standard_normal((4, C, 1, 1)).astype(np.float32),
                   np.zeros(4, np.float32))
    inits = i1 + i2 + i3
    if activation == "Clip":
        inits += [numpy_helper.from_array(np.array(0, np.float32), "lo"),
                  numpy_helper.from_array(np.array(2.0, np.float32), "hi")]  # clips the widest channels
        act = helper.make_node("Clip", ["a", "lo", "hi"], ["r"], name="relu6")
    else:
        act = helper.make_node(activation, ["a"], ["r"], name="act")
    graph = helper.make_graph([n1, act, n2, n3], "g", [helper.make_tensor_value_info("x", 1, ["N", 4, 9, 9])],
                              [helper.make_tensor_value_info("y", 1, ["N", 4, 9, 9])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model


def _data(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 4, 9, 9)).astype(np.float32)


def _batches(x: np.ndarray) -> list[dict[str, np.ndarray]]:
    return [{"x": x[i:i + 8]} for i in range(0, len(x), 8)]


def _channel_max(model: onnx.ModelProto, tensor: str, x: np.ndarray) -> np.ndarray:
    work = onnx.ModelProto()
    work.CopyFrom(model)
    work.graph.output.add().name = tensor
    return np.abs(run(work, {"x": x})[1]).max(axis=(0, 2, 3))


def _weight(model: onnx.ModelProto, node: str) -> np.ndarray:
    index = GraphIndex.build(model, infer=False)
    conv = next(n for n in model.graph.node if n.name == node)
    value = index.constant_value(conv.input[1])
    assert value is not None
    return value


def _int8(w: np.ndarray) -> np.ndarray:
    """Per-output-channel symmetric INT8 integers, as trtq quantizes Conv weights."""
    scale = np.abs(w.reshape(w.shape[0], -1)).max(1).reshape(-1, *[1] * (w.ndim - 1)) / 127
    return np.rint(w / scale)


@pytest.mark.parametrize("activation", ["Relu", "Clip", "Identity"])
def test_equalization_is_exact_and_equalizes_the_depthwise_input(activation):
    model = expand_depthwise(activation)
    calib = _data(32, 1)
    equalized, report = equalize_activations(model, _batches(calib))
    onnx.checker.check_model(equalized)
    x = _data(8, 2) * 3  # unseen data, beyond the calibration range
    ref, out = run(model, {"x": x})[0], run(equalized, {"x": x})[0]
    assert np.abs(ref - out).max() / np.abs(ref).max() < 1e-5
    assert [(c.first, c.second) for c in report.chains] == [("expand", "dw")]
    assert report.samples == 32
    before, after = _channel_max(model, "r", calib), _channel_max(equalized, "r", calib)
    assert before.max() / before.min() > 10 and report.chains[0].spread_before > 10
    # every channel widened to at least half of the widest one's range (the headroom), none beyond it
    wide = before >= before.max() / HEADROOM
    np.testing.assert_allclose(after[~wide], before.max() / HEADROOM, rtol=1e-5)
    np.testing.assert_allclose(after[wide], before[wide], rtol=1e-5)
    assert after.max() / after.min() <= HEADROOM * (1 + 1e-5) < before.max() / before.min()
    assert after.max() == pytest.approx(before.max(), rel=1e-5)  # the widest channel keeps its range
    if activation == "Clip":  # the bound became per channel
        ops = [n.op_type for n in equalized.graph.node]
        assert "Clip" not in ops and ops.count("Min") == 1
    for node in ("expand", "dw"):  # per-channel INT8 weights are invariant under the rescaling
        np.testing.assert_array_equal(_int8(_weight(model, node)), _int8(_weight(equalized, node)))
    again, _ = equalize_activations(model, _batches(calib))
    assert again.SerializeToString() == equalized.SerializeToString()


def test_chains_into_dense_convs_are_left_alone():
    model = expand_depthwise("Relu", depthwise=False)
    equalized, report = equalize_activations(model, _batches(_data(16, 1)))
    assert report.chains == ()
    assert equalized.SerializeToString() == model.SerializeToString()


def test_no_data_is_a_clear_error():
    with pytest.raises(DataError, match="no calibration data"):
        equalize_activations(expand_depthwise("Relu"), [])


def test_build_with_activation_equalization_lowers_the_int8_error(tmp_path):
    """End to end: the same data and method, the Q/DQ model of the equalized model is closer to FP32."""
    onnx.save(expand_depthwise("Relu"), tmp_path / "m.onnx")
    np.save(tmp_path / "calib.npy", _data(48, 3))
    np.save(tmp_path / "eval.npy", _data(16, 4))

    plain = build_report(tmp_path, "plain")
    equalized = build_report(tmp_path, "eq", "--equalization", "activations")
    assert (tmp_path / "eq" / "m.equalized.onnx").exists()
    assert equalized["accuracy"]["equalization"]["method"] == "activations"
    assert "Activation equalization" in (tmp_path / "eq" / "report.md").read_text()
    sqnr = [r["comparison"]["outputs"]["y"]["sqnr_db"] for r in (plain, equalized)]
    assert sqnr[1] > sqnr[0] + 3, sqnr
    fast = build_report(tmp_path, "fast", "--equalization", "activations", "--fast")
    assert fast["accuracy"].get("equalization") is None
