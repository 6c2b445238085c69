"""`trtq lint`: one line per finding, a summary, exit 4 on errors (or on warnings with --strict)."""

from __future__ import annotations

import numpy as np
from click.testing import CliRunner
from onnx import helper, numpy_helper

from tests.qdq import models
from trtq.cli import main
from trtq.config import QuantizeConfig
from trtq.errors import EXIT_BAD_INPUT
from trtq.onnx_model.model import save_model
from trtq.onnx_model.tensors import activation_tensors
from trtq.qdq.quantizer import quantize_model


def _qdq_model():
    model = models.residual_block()
    return quantize_model(model, dict.fromkeys(activation_tensors(model), 2.0), QuantizeConfig()).model


def _lint(*args: str):
    return CliRunner().invoke(main, ["lint", *args])


def test_clean_model_exits_0(tmp_path):
    path = tmp_path / "ok.onnx"
    save_model(_qdq_model(), path)
    result = _lint(str(path))
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"{path}: 0 errors, 0 warnings"


def test_errors_exit_4_with_one_line_each(tmp_path):
    model = _qdq_model()
    q = next(n for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == "x")
    zp = next(t for t in model.graph.initializer if t.name == q.input[2])
    zp.CopyFrom(numpy_helper.from_array(np.array(5, np.int8), zp.name))
    path = tmp_path / "bad.onnx"
    save_model(model, path)
    result = _lint(str(path))
    assert result.exit_code == EXIT_BAD_INPUT
    lines = result.output.strip().splitlines()
    assert lines[0].startswith(f"error  nonzero-zero-point  {q.name}: zero point is [5.0]")
    assert len(lines) == 3 and lines[-1] == f"{path}: 2 errors, 0 warnings"  # the Q and its DQ


def test_warnings_exit_0_unless_strict(tmp_path):
    model = _qdq_model()
    # A Q on the graph output that no DequantizeLinear reads: a warning, not an error.
    model.graph.initializer.extend([numpy_helper.from_array(np.array(0.05, np.float32), "y_s"),
                                    numpy_helper.from_array(np.array(0, np.int8), "y_zp")])
    model.graph.node.append(helper.make_node("QuantizeLinear", ["y", "y_s", "y_zp"], ["y_q"]))
    path = tmp_path / "warn.onnx"
    save_model(model, path)
    result = _lint(str(path))
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0].startswith("warning  dangling-q  QuantizeLinear#")
    assert result.output.strip().endswith("0 errors, 1 warning")
    strict = _lint("--strict", str(path))
    assert strict.exit_code == EXIT_BAD_INPUT and "0 errors, 1 warning" in strict.output


def test_float_model_is_info_only(tmp_path):
    path = tmp_path / "fp32.onnx"
    save_model(models.mlp(), path)
    result = _lint(str(path))
    assert result.exit_code == 0
    assert result.output.splitlines()[0] == "info  no-qdq: no Q/DQ nodes"


def test_missing_model_is_a_clear_error(tmp_path):
    result = _lint(str(tmp_path / "nope.onnx"))
    assert result.exit_code == EXIT_BAD_INPUT
    assert "does not exist" in result.output
