"""SmoothQuant: an identity in FP32, better INT8 on a block whose LayerNorm outputs have outlier channels."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.qdq.helpers import session, sqnr_db
from trtq.calibration.collect import expose_tensors
from trtq.calibrators import TensorStats, compute_amax
from trtq.errors import ConfigError
from trtq.qdq import lint_model, quantize_model
from trtq.qdq.smoothquant import parse_setting, smoothable_layers, smoothquant

C, N = 32, 48
OUTLIERS = (3, 17)


def _block(seed: int = 0) -> onnx.ModelProto:
    """x -> pre-LN (LayerNorm feeding two MatMuls only) and post-LN (LayerNorm feeding a MatMul and
    the residual Add), both LayerNorms with outlier channels in their scale, as trained transformers have."""
    rng = np.random.default_rng(seed)
    inits = []

    def const(name, value):
        inits.append(numpy_helper.from_array(np.asarray(value, np.float32), name))
        return name

    def gamma():
        g = rng.uniform(0.5, 1.5, C)
        g[list(OUTLIERS)] = [45.0, -30.0]
        return g

    nodes = [
        helper.make_node("LayerNormalization", ["x", const("g1", gamma()), const("b1", rng.normal(0, 0.1, C))],
                         ["ln1"], axis=-1, name="ln1"),
        helper.make_node("MatMul", ["ln1", const("w1", rng.normal(0, 0.2, (C, N)))], ["y1"], name="mm1"),
        helper.make_node("MatMul", ["ln1", const("w2", rng.normal(0, 0.2, (C, N)))], ["y2"], name="mm2"),
        helper.make_node("LayerNormalization", ["x", const("g2", gamma()), const("b2", rng.normal(0, 0.1, C))],
                         ["ln2"], axis=-1, name="ln2"),
        helper.make_node("MatMul", ["ln2", const("w3", rng.normal(0, 0.2, (C, C)))], ["h"], name="mm3"),
        helper.make_node("Add", ["ln2", "h"], ["y3"], name="residual"),
    ]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", C])
    outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("y1", "y2", "y3")]
    graph = helper.make_graph(nodes, "block", [x], outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _feeds(seed: int, count: int = 4) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [{"x": rng.standard_normal((2, 9, C)).astype(np.float32)} for _ in range(count)]


def _outputs(model: onnx.ModelProto, feeds_list: list[dict[str, np.ndarray]]) -> list[np.ndarray]:
    """Every graph output over all feeds, concatenated (one session)."""
    sess = session(model)
    runs = [sess.run(None, feeds) for feeds in feeds_list]
    return [np.concatenate(parts) for parts in zip(*runs, strict=True)]


def _calibrate(model: onnx.ModelProto) -> tuple[dict[str, float], dict[str, TensorStats]]:
    names = ["x", "ln1", "ln2", "h"]
    stats = {name: TensorStats(ema_constant=None, channels=name in ("ln1", "ln2")) for name in names}
    exposed = expose_tensors(model, names)
    sess = session(exposed)
    for feeds in _feeds(1, 8):
        values = dict(zip([o.name for o in exposed.graph.output], sess.run(None, feeds), strict=True))
        for name in names:
            stats[name].update(values[name])
    return {name: compute_amax("percentile", s) for name, s in stats.items()}, stats


def test_smoothable_layers_group_readers_of_one_activation():
    layers = smoothable_layers(_block())
    assert sorted(layers) == ["ln1", "ln2"]
    assert [layer.weight for layer in layers["ln1"]] == ["w1", "w2"]


def test_rescaling_is_an_identity_in_fp32_and_lint_clean():
    model = _block()
    amax, stats = _calibrate(model)
    result = smoothquant(model, amax, stats, "0.5")
    assert set(result.smoothed) == {"ln1", "ln2"}
    ops = [n.op_type for n in result.model.graph.node]
    assert ops.count("Mul") == 1  # ln1 folded into its LayerNorm, ln2 (also the residual) divided by a Mul
    g1 = numpy_helper.to_array(next(t for t in result.model.graph.initializer if t.name == "g1"))
    assert not np.allclose(g1, numpy_helper.to_array(model.graph.initializer[0]))
    feeds = _feeds(7, 3)
    for want, got in zip(_outputs(model, feeds), _outputs(result.model, feeds), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * float(np.abs(want).max()))
    qdq = quantize_model(result.model, result.amax).model
    assert not [f for f in lint_model(qdq) if f.severity in ("error", "warning")]


def test_smoothing_improves_int8_error_on_outlier_channels():
    model = _block()
    amax, stats = _calibrate(model)
    result = smoothquant(model, amax, stats, "auto")
    assert result.smoothed and all(c.error < c.error_plain for c in result.smoothed.values())
    plain_qdq = quantize_model(model, amax).model
    smooth_qdq = quantize_model(result.model, result.amax).model
    held_out = _feeds(11, 4)
    outputs = zip(_outputs(model, held_out), _outputs(plain_qdq, held_out), _outputs(smooth_qdq, held_out), strict=True)
    for i, (ref, plain, smooth) in enumerate(outputs):  # every output
        assert sqnr_db(ref, smooth) > sqnr_db(ref, plain) + 3.0, (i, sqnr_db(ref, plain), sqnr_db(ref, smooth))


def test_auto_leaves_models_without_outliers_alone_and_settings_are_checked():
    model = _block()
    amax, stats = _calibrate(model)
    for name in ("ln1", "ln2"):
        flat = TensorStats(ema_constant=None, channels=True)
        flat.update(np.random.default_rng(0).standard_normal((64, C)))
        stats[name] = flat
    result = smoothquant(model, amax, stats, "auto")
    assert result.model is model and not result.smoothed and "no outlier channels" in result.note
    assert smoothquant(model, amax, None, "0.5").model is model
    assert parse_setting("OFF") == "off" and parse_setting("0.75") == 0.75
    with pytest.raises(ConfigError, match="alpha in"):
        parse_setting("1.5")


def test_no_channel_is_amplified_past_half_the_median_scale():
    from trtq.qdq import smoothquant_search

    rng = np.random.default_rng(3)
    absmax = rng.uniform(0.5, 2.0, 64)
    absmax[:4] = 1e-3  # quiet channels: eq. 4 alone would divide them by a tiny s
    absmax[10] = 80.0
    s = smoothquant_search.smoothing_scales(absmax, rng.uniform(0.1, 0.3, 64), 0.5)
    assert s.min() >= smoothquant_search.SCALE_FLOOR * np.median(s) * (1 - 1e-12)
    assert s[10] == s.max() and s[10] > 4 * np.median(s)  # the outlier is still divided down


def _gelu_like_matmul() -> onnx.ModelProto:
    rng = np.random.default_rng(5)
    w = rng.normal(0, 0.2, (C, N)).astype(np.float32)
    node = helper.make_node("MatMul", ["x", "w"], ["y"], name="fc2")
    graph = helper.make_graph([node], "fc2", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["t", C])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["t", N])],
                              initializer=[numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _token_outliers(seed: int, tokens: int, spiky: tuple[int, ...]) -> np.ndarray:
    """GELU-output-like activations: one fixed outlier channel, and channels that are near zero
    except on rare tokens, where they spike (outliers tied to tokens, not to channels)."""
    rng = np.random.default_rng(seed)
    x = np.abs(rng.normal(0, 0.3, (tokens, C)))
    x[:, 0] *= 60.0
    for c in spiky:
        x[:, c] *= 0.02
        x[rng.choice(tokens, 3, replace=False), c] = 6.0
    return x.astype(np.float32)


def test_the_floor_keeps_token_outliers_of_quiet_channels_in_range(monkeypatch):
    from trtq.qdq import smoothquant_search

    model = _gelu_like_matmul()
    calib = _token_outliers(1, 512, spiky=())  # channels 5..8 stay quiet in the calibration data
    calib[:, 5:9] *= 0.02
    held_out = _token_outliers(2, 512, spiky=(5, 6, 7, 8))  # ... and spike on new tokens
    stats = TensorStats(ema_constant=None, channels=True)
    stats.update(calib)
    amax = {"x": compute_amax("minmax", stats)}
    ref = session(model).run(None, {"x": held_out})[0]

    def held_out_sqnr() -> float:
        result = smoothquant(model, amax, {"x": stats}, "0.5")
        assert "x" in result.smoothed
        qdq = quantize_model(result.model, result.amax).model
        return sqnr_db(ref, session(qdq).run(None, {"x": held_out})[0])

    with_floor = held_out_sqnr()
    monkeypatch.setattr(smoothquant_search, "SCALE_FLOOR", 0.0)
    without = held_out_sqnr()
    assert with_floor > without + 3.0, (with_floor, without)
