"""`trtq inspect` on the real PP-OCR models and on bad input."""

from __future__ import annotations

import json

import numpy as np
import onnx
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from trtq.cli import main
from trtq.errors import EXIT_BAD_INPUT
from trtq.onnx_model.model import save_model
from trtq.pipeline.inspect import inspect_model


def test_inspect_real_detector(ocr_detector):
    result = CliRunner().invoke(main, ["inspect", str(ocr_detector)])
    assert result.exit_code == 0, result.output
    assert "opset 12" in result.output
    assert "sigmoid_0.tmp_0" in result.output
    assert "Conv" in result.output
    # Symbolic dims are listed with commas: 'x' between names like p2o.DynamicDimension.0 reads ambiguously.
    input_line = next(line for line in result.output.splitlines() if line.startswith("  x "))
    assert "[p2o.DynamicDimension.0, 3, p2o.DynamicDimension.1, p2o.DynamicDimension.2]" in input_line
    summary = inspect_model(ocr_detector)
    model = onnx.load(str(ocr_detector))
    assert dict(summary.op_counts)["Conv"] == sum(n.op_type == "Conv" for n in model.graph.node)
    assert summary.inputs[0].name == "x" and summary.inputs[0].shape[1] == 3
    # Every Conv input that is an activation is calibrated; weights and constants are not.
    conv_inputs = {n.input[0] for n in model.graph.node if n.op_type == "Conv"}
    assert conv_inputs <= set(summary.calibrated_quantizable)
    weights = {i.name for i in model.graph.initializer}
    assert not weights & set(summary.calibrated_all)
    assert set(summary.calibrated_quantizable) <= set(summary.calibrated_all)


def test_inspect_json_on_recognizer_and_classifier(ocr_recognizer, ocr_classifier):
    for path, output_dim in ((ocr_recognizer, 6625), (ocr_classifier, 2)):
        result = CliRunner().invoke(main, ["inspect", "--json", str(path)])
        assert result.exit_code == 0, result.output
        data = json.loads(result.output)
        assert data["outputs"][0]["shape"][-1] == output_dim
        assert data["has_qdq"] is False
        assert data["external_data"] == []


def test_inspect_lists_external_data(tmp_path):
    weight = numpy_helper.from_array(np.full((256, 256), 0.5, np.float32), "w")  # raw data can go external
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 256])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 256])], [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    path = tmp_path / "ext.onnx"
    onnx.save_model(model, str(path), save_as_external_data=True, location="ext.onnx.data", size_threshold=0)
    result = CliRunner().invoke(main, ["inspect", str(path)])
    assert result.exit_code == 0, result.output
    assert "external data  ext.onnx.data" in result.output


def test_inspect_missing_and_corrupt_model(tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["inspect", str(tmp_path / "nope.onnx")])
    assert result.exit_code == EXIT_BAD_INPUT
    assert result.output.count("\n") == 1 and "error: model file" in result.output
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00\x01 this is not protobuf")
    result = runner.invoke(main, ["inspect", str(bad)])
    assert result.exit_code == EXIT_BAD_INPUT
    assert "is not a readable ONNX model" in result.output
    assert "Traceback" not in result.output


def test_save_model_caps_ir_version(tmp_path):
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 14
    save_model(model, tmp_path / "m.onnx")
    import onnxruntime as ort

    assert onnx.load(str(tmp_path / "m.onnx")).ir_version <= 13
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    out = sess.run(None, {"x": np.array([-1.0, 2.0], np.float32)})[0]
    assert out.tolist() == [0.0, 2.0]
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]  # no temp file left
