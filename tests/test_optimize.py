"""trtq optimize: BatchNorm folded, Identity/Dropout gone, outputs equal to the original's, byte-deterministic."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from tests.image_models import save
from trtq.cli import main
from trtq.errors import EXIT_BAD_INPUT, EXIT_USAGE, ModelError
from trtq.onnx_model.optimize import optimize_graph
from trtq.pipeline import optimize as optimize_module
from trtq.pipeline.optimize import check_outputs, optimize_checked


def _bn_net(seed: int = 0) -> onnx.ModelProto:
    """Conv -> BatchNormalization -> Identity -> Relu -> Dropout -> Conv (+ a constant Add folded away)."""
    rng = np.random.default_rng(seed)
    arrays = {"w1": rng.normal(0, 0.3, (8, 3, 3, 3)), "scale": rng.uniform(0.5, 2, 8), "bias": rng.normal(0, 0.2, 8),
              "mean": rng.normal(0, 0.3, 8), "var": rng.uniform(0.2, 2, 8), "w2": rng.normal(0, 0.3, (4, 8, 1, 1)),
              "one": np.ones(1), "two": np.full(1, 2.0)}
    inits = [numpy_helper.from_array(v.astype(np.float32), k) for k, v in arrays.items()]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c", "scale", "bias", "mean", "var"], ["bn"], epsilon=1e-5),
             helper.make_node("Identity", ["bn"], ["i"]),
             helper.make_node("Relu", ["i"], ["r"]),
             helper.make_node("Dropout", ["r"], ["d"]),
             helper.make_node("Add", ["one", "two"], ["three"]),
             helper.make_node("Mul", ["d", "three"], ["m"]),
             helper.make_node("Conv", ["m", "w2"], ["y"])]
    graph = helper.make_graph(nodes, "bn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 16, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 16, 16])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    return model


def _batches(count: int = 3):
    rng = np.random.default_rng(5)
    return [{"x": rng.normal(0, 1, (2, 3, 16, 16)).astype(np.float32)} for _ in range(count)]


def test_batchnorm_identity_dropout_and_constants_are_folded():
    model = _bn_net()
    result, check = optimize_checked(model, _batches())
    ops = [n.op_type for n in result.model.graph.node]
    assert "BatchNormalization" not in ops and "Identity" not in ops and "Dropout" not in ops
    assert ops.count("Conv") == 2 and "Add" not in ops
    assert check.passed and check.samples == 6 and check.relative["y"] <= 1e-5
    assert [o.domain for o in result.model.opset_import] == [""]  # plain ONNX, as TensorRT's parser reads it
    assert len(model.graph.node) == 8  # the input is not changed


def test_optimization_is_byte_deterministic():
    first = optimize_graph(_bn_net()).model.SerializeToString()
    assert optimize_graph(_bn_net()).model.SerializeToString() == first


def test_a_model_whose_outputs_change_is_refused(monkeypatch):
    model = _bn_net()
    broken = _bn_net(seed=1)  # other weights: what an optimizer bug would look like
    monkeypatch.setattr(optimize_module, "optimize_graph",
                        lambda m: optimize_graph(broken))
    with pytest.raises(ModelError, match="refused: outputs DIFFERENT"):
        optimize_checked(model, _batches())
    assert not check_outputs(model, broken, _batches()).passed


def test_optimize_command_checks_on_data_and_writes_the_model(tmp_path):
    model = save(_bn_net(), tmp_path / "bn.onnx")
    data = tmp_path / "x.npy"
    np.save(data, np.random.default_rng(2).normal(0, 1, (4, 3, 16, 16)).astype(np.float32))
    result = CliRunner().invoke(main, ["optimize", str(model), "--data", str(data)])
    assert result.exit_code == 0, result.output
    assert "outputs equal to the original's on 4 samples" in result.output
    out = tmp_path / "bn.optimized.onnx"
    assert "BatchNormalization" not in {n.op_type for n in onnx.load(str(out)).graph.node}
    no_data = CliRunner().invoke(main, ["optimize", str(model)])
    assert no_data.exit_code == EXIT_USAGE and "give --data" in no_data.output


def test_optimize_command_refuses_and_writes_nothing(tmp_path, monkeypatch):
    model = save(_bn_net(), tmp_path / "bn.onnx")
    monkeypatch.setattr(optimize_module, "optimize_graph", lambda m: optimize_graph(_bn_net(seed=1)))
    data = tmp_path / "x.npy"
    np.save(data, np.random.default_rng(2).normal(0, 1, (4, 3, 16, 16)).astype(np.float32))
    result = CliRunner().invoke(main, ["optimize", str(model), "--data", str(data)])
    assert result.exit_code == EXIT_BAD_INPUT and "refused" in result.output
    assert not (tmp_path / "bn.optimized.onnx").exists()


def test_python_api_optimizes_on_feed_dicts(tmp_path):
    import trtq

    model = save(_bn_net(), tmp_path / "bn.onnx")
    outcome = trtq.optimize(model, data=_batches(2), output=tmp_path / "o.onnx")
    assert outcome.check.passed and outcome.check.samples == 4 and (tmp_path / "o.onnx").is_file()
