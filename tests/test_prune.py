"""Pruning: the pruned weights really have the pattern or sparsity asked for; the CLI, build stage and engine flag."""

from __future__ import annotations

import json
import sys

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from tests.fake_trt import fake_trt
from tests.image_models import save
from trtq.cli import main
from trtq.engine import ShapeRange, build_engine
from trtq.errors import EXIT_USAGE, ConfigError
from trtq.onnx_model.pruning import PruneSettings, prune_model, settings_from_spec, two_four_mask
from trtq.onnx_model.sparsity import is_two_four_sparse, two_four_sparse_layers, weight_uses


def _net(seed: int = 0) -> onnx.ModelProto:
    """Conv 3->8 (stem), Conv 8->10 3x3, depthwise Conv 10, Flatten, Gemm (transB) 10*4*4->6, MatMul 6->5."""
    rng = np.random.default_rng(seed)
    w = {"stem": rng.normal(0, 0.3, (8, 3, 3, 3)), "c2": rng.normal(0, 0.2, (10, 8, 3, 3)),
         "dw": rng.normal(0, 0.3, (10, 1, 3, 3)), "g": rng.normal(0, 0.1, (6, 160)), "m": rng.normal(0, 0.3, (6, 5))}
    inits = [numpy_helper.from_array(v.astype(np.float32), k) for k, v in w.items()]
    nodes = [helper.make_node("Conv", ["x", "stem"], ["a"], pads=[1, 1, 1, 1], name="stem_conv"),
             helper.make_node("Relu", ["a"], ["b"]),
             helper.make_node("Conv", ["b", "c2"], ["c"], strides=[2, 2], pads=[1, 1, 1, 1], name="conv2"),
             helper.make_node("Conv", ["c", "dw"], ["d"], group=10, strides=[2, 2], pads=[1, 1, 1, 1], name="dw"),
             helper.make_node("Flatten", ["d"], ["f"]),
             helper.make_node("Gemm", ["f", "g"], ["h"], transB=1, name="fc"),
             helper.make_node("MatMul", ["h", "m"], ["y"], name="head")]
    graph = helper.make_graph(nodes, "net", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 16, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    return model


def _weights(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def test_the_input_channel_axis_of_each_op():
    axes = {u.node: (u.initializer, u.in_axis) for u in weight_uses(_net())}
    assert axes == {"stem_conv": ("stem", 1), "conv2": ("c2", 1), "dw": ("dw", 1), "fc": ("g", 1), "head": ("m", 0)}


def test_two_four_keeps_the_two_largest_of_every_four_input_channels():
    w = np.array([[0.1, -0.75, 0.25, 0.5, 2.0, 0.0, -3.0, 1.0, 0.125]])  # 9 inputs: groups 4, 4, 1
    kept = np.where(two_four_mask(w, 1), w, 0)
    assert kept.tolist() == [[0.0, -0.75, 0.0, 0.5, 2.0, 0.0, -3.0, 0.0, 0.125]]
    assert is_two_four_sparse(kept, 1) and not is_two_four_sparse(w, 1)


def test_pruned_weights_have_the_2_4_pattern_and_keep_the_largest():
    model = _net()
    result = prune_model(model, PruneSettings(pattern="2:4"))
    before, after = _weights(model), _weights(result.model)
    assert _weights(model)["c2"].all()  # the input is unchanged
    for use in weight_uses(model):
        w, p = before[use.initializer], after[use.initializer]
        if w.shape[use.in_axis] < 4:  # stem (3 inputs) and depthwise (1) stay dense
            assert np.array_equal(w, p), use.node
            continue
        groups = np.moveaxis(p, use.in_axis, -1)
        full = groups.shape[-1] // 4 * 4
        blocks = groups[..., :full].reshape(*groups.shape[:-1], -1, 4)
        assert (np.count_nonzero(blocks, axis=-1) == 2).all(), use.node  # random weights: no zero to start with
        orig = np.abs(np.moveaxis(w, use.in_axis, -1)[..., :full].reshape(blocks.shape))
        kept_min = np.where(blocks != 0, orig, np.inf).min(axis=-1)
        dropped_max = np.where(blocks == 0, orig, 0).max(axis=-1)
        assert (kept_min >= dropped_max).all(), use.node
        assert np.array_equal(p[p != 0], w[p != 0])  # kept weights are untouched
    layers = {layer.node: layer for layer in result.layers}
    assert layers["conv2"].two_four and layers["conv2"].sparsity == 0.5 and not layers["stem_conv"].pruned
    assert set(two_four_sparse_layers(result.model)) == {"conv2", "fc", "head"}
    assert two_four_sparse_layers(model) == []


def test_sparsity_per_layer_and_global():
    model = _net()
    per_layer = prune_model(model, PruneSettings(sparsity=0.5))
    for layer in per_layer.layers:
        assert layer.zeros == layer.size // 2, layer.node
    everywhere = prune_model(model, PruneSettings(sparsity=0.5, scope="global"))
    w = np.concatenate([v.reshape(-1) for v in _weights(model).values()])
    threshold = np.sort(np.abs(w))[w.size // 2 - 1]
    after = _weights(everywhere.model)
    for name, value in _weights(model).items():
        assert np.array_equal(after[name], np.where(np.abs(value) <= threshold, 0, value)), name
    assert abs(everywhere.sparsity - 0.5) < 1e-9
    assert len({round(layer.sparsity, 3) for layer in everywhere.layers}) > 1  # layers lose different shares


def test_magnitude_threshold_and_exclusions():
    model = _net()
    result = prune_model(model, PruneSettings(magnitude=0.1, exclude_nodes=("head",)))
    before, after = _weights(model), _weights(result.model)
    assert np.array_equal(after["m"], before["m"])
    for name in ("stem", "c2", "dw", "g"):
        assert np.array_equal(after[name], np.where(np.abs(before[name]) < 0.1, 0, before[name]))
    with pytest.raises(ConfigError, match="exactly one"):
        PruneSettings(pattern="2:4", sparsity=0.5)
    with pytest.raises(ConfigError, match="no Conv/Gemm/MatMul"):
        prune_model(model, PruneSettings(pattern="2:4", exclude_nodes=("nope",)))
    assert settings_from_spec("sparsity=0.25", "global").sparsity == 0.25
    with pytest.raises(ConfigError, match="not a pruning setting"):
        settings_from_spec("half")


def test_weights_behind_constant_nodes_and_qdq_are_found():
    model = _net()
    weight = model.graph.initializer[1]  # c2 as a Constant node, then behind Q -> DQ
    const = helper.make_node("Constant", [], ["c2_const"], value=weight)
    q = helper.make_node("QuantizeLinear", ["c2_const", "s", "z"], ["c2_q"])
    dq = helper.make_node("DequantizeLinear", ["c2_q", "s", "z"], ["c2_dq"])
    model.graph.node[2].input[1] = "c2_dq"
    model.graph.node.insert(2, dq)
    model.graph.node.insert(2, q)
    model.graph.node.insert(2, const)
    model.graph.initializer.extend([numpy_helper.from_array(np.float32(0.01), "s"),
                                    numpy_helper.from_array(np.int8(0), "z")])
    del model.graph.initializer[1]
    result = prune_model(model, PruneSettings(pattern="2:4"))
    assert "conv2" in two_four_sparse_layers(result.model)
    assert {layer.node: layer.sparsity for layer in result.layers}["conv2"] == 0.5


def test_prune_command_prints_each_layer_and_writes_the_model(tmp_path):
    model = save(_net(), tmp_path / "net.onnx")
    out = tmp_path / "net.24.onnx"
    result = CliRunner().invoke(main, ["prune", str(model), "-o", str(out), "--pattern", "2:4"])
    assert result.exit_code == 0, result.output
    lines = {line.split()[0]: line for line in result.output.splitlines() if line}
    assert "50.0%" in lines["conv2"] and lines["conv2"].endswith("yes") and lines["stem_conv"].endswith("dense")
    assert set(two_four_sparse_layers(onnx.load(str(out)))) == {"conv2", "fc", "head"}
    bad = CliRunner().invoke(main, ["prune", str(model), "--sparsity", "0.5", "--magnitude", "0.1"])
    assert bad.exit_code == EXIT_USAGE and "exactly one" in bad.output


def test_prune_command_measures_the_accuracy_cost(tmp_path):
    model = save(_net(), tmp_path / "net.onnx")
    data = tmp_path / "x.npy"
    np.save(data, np.random.default_rng(3).normal(0, 1, (6, 3, 16, 16)).astype(np.float32))
    lines = {}
    for flags in (("--sparsity", "0.1"), ("--sparsity", "0.6")):
        result = CliRunner().invoke(main, ["-q", "prune", str(model), "-o", str(tmp_path / "p.onnx"), *flags,
                                           "--data", str(data)])
        assert result.exit_code == 0, result.output
        lines[flags[1]] = next(line for line in result.output.splitlines() if "vs unpruned" in line)
    sqnr = {k: float(v.split("SQNR ")[1].split(" dB")[0]) for k, v in lines.items()}
    assert "on 6 samples" in lines["0.1"]
    assert sqnr["0.1"] > sqnr["0.6"] > 0  # more pruning costs more


def test_the_engine_builder_sets_sparse_weights_for_2_4_models(monkeypatch, tmp_path):
    dense = save(_net(), tmp_path / "dense.onnx")
    sparse = save(prune_model(_net(), PruneSettings(pattern="2:4")).model, tmp_path / "sparse.onnx")
    for version in ("10.16.1.11", "11.4.0.106"):
        trt = fake_trt(version)
        monkeypatch.setitem(sys.modules, "tensorrt", trt)
        shapes = [ShapeRange("x", (1, 3, 16, 16), (2, 3, 16, 16), (4, 3, 16, 16))]
        build_engine(dense, tmp_path / "d.engine", profiles=shapes)
        build_engine(sparse, tmp_path / "s.engine", profiles=shapes)
        build_engine(sparse, tmp_path / "s2.engine", profiles=shapes, sparse_weights=False)
        assert [config.flags for _, config in trt.built] == [set(), {trt.BuilderFlag.SPARSE_WEIGHTS}, set()]
        assert json.loads((tmp_path / "s.engine.json").read_text())["sparse_weights"] is True
        assert json.loads((tmp_path / "d.engine.json").read_text())["sparse_weights"] is False


def test_build_prunes_optimizes_and_reports_the_cost(tmp_path):
    from trtq.qdq.pow2 import is_power_of_two, qdq_scales

    model = save(_net(), tmp_path / "net.onnx")
    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(4)
    for i in range(10):
        np.save(data / f"s{i}.npy", rng.normal(0, 1, (1, 3, 16, 16)).astype(np.float32))
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["-q", "build", str(model), "--calib", str(data), "-o", str(out),
                                       "--prune", "2:4", "--optimize", "--pow2", "--method", "minmax",
                                       "--weight-rounding", "learned"])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    line = next(i for i in report["info"] if i.startswith("pruned (2:4 structured)"))
    assert "pruned FP32 vs unpruned FP32 on 2 samples: output SQNR" in line
    assert any(i.startswith("optimized (onnxslim)") and "outputs equal" in i for i in report["info"])
    assert any(i.startswith("pow2: 10 of 10 Q/DQ scale tensors") for i in report["info"]), report["info"]
    assert report["provenance"]["pruning"]["layers"][1]["two_four"] is True
    assert (out / "net.pruned.onnx").is_file() and (out / "net.pruned.cache").is_file()
    qdq = onnx.load(str(out / "net.qdq.onnx"))
    # The pattern survives quantization, learned rounding included (pruned weights stay 0).
    assert set(two_four_sparse_layers(qdq)) == {"conv2", "fc", "head"}
    assert any(i.startswith("weight rounding") for i in report["info"])
    assert all(is_power_of_two(v).all() for v in qdq_scales(qdq).values())


def test_python_api_prunes_and_measures(tmp_path):
    import trtq

    model = save(_net(), tmp_path / "net.onnx")
    feeds = [{"x": np.random.default_rng(i).normal(0, 1, (2, 3, 16, 16)).astype(np.float32)} for i in range(2)]
    outcome = trtq.prune(model, trtq.PruneSettings(pattern="2:4"), data=feeds)
    assert outcome.path == tmp_path / "net.pruned.onnx" and outcome.comparison.samples == 4
    assert set(two_four_sparse_layers(onnx.load(str(outcome.path)))) == {"conv2", "fc", "head"}


def test_gptq_rounding_keeps_pruned_weights_at_zero():
    from trtq.qdq.rounding_solvers import gptq_round, nearest, row_errors

    rng = np.random.default_rng(0)
    w = rng.normal(0, 1, (1, 6, 16))
    mask = ~two_four_mask(w[0], 1)[None]  # True where 2:4 pruning zeroes
    w = np.where(mask, 0.0, w)
    x = rng.normal(0, 1, (256, 16)) @ rng.normal(0, 1, (16, 16))  # correlated inputs: GPTQ moves weights
    h = (x.T @ x)[None]
    s = np.abs(w).max(axis=-1) / 127
    free, kept = gptq_round(w, s, h), gptq_round(w, s, h, zeros=mask)
    assert np.count_nonzero(free[mask]) > 0  # without the mask the zeros would be filled in
    assert (kept[mask] == 0).all()
    assert row_errors(w, s, kept, h).sum() <= row_errors(w, s, nearest(w, s), h).sum()
