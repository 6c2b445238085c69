"""Layer precisions from TensorRT's engine inspector: parsing its JSON, and the wiring, with the stand-in."""

from __future__ import annotations

import json
import sys

import pytest

from tests.engine.models import conv_classifier
from tests.fake_trt import fake_trt
from trtq.engine import ShapeRange, build_engine
from trtq.engine.layers import LayerInfo, data_type, engine_layers, parse_layer_information
from trtq.errors import ModelError
from trtq.onnx_model.model import save_model

# The shape of TensorRT's DETAILED JSON (developer guide, "Engine Inspector"), abridged.
DETAILED = json.dumps({"Layers": [
    {"Name": "conv_1 + relu_1", "LayerType": "CaskConvolution",
     "Inputs": [{"Name": "x_q", "Format/Datatype": "Thirty-two wide channel vectorized row major Int8 format"}],
     "Outputs": [{"Name": "r1_q", "Format/Datatype": "Row major linear Int8 format"}]},
    {"Name": "gap", "LayerType": "CaskPooling",
     "Inputs": [{"Name": "r2", "Format/Datatype": "Channel major FP16 format where channel % 8 == 0"}],
     "Outputs": [{"Name": "gap", "Format/Datatype": "Row major linear FP32"}]},
], "Bindings": ["x", "y"]})


def test_inspector_json_gives_each_layer_s_precisions():
    layers = parse_layer_information(DETAILED)
    assert layers == [LayerInfo("conv_1 + relu_1", "CaskConvolution", ("int8",), ("int8",)),
                      LayerInfo("gap", "CaskPooling", ("fp16",), ("fp32",))]
    assert data_type("Row major linear FP8 format") == "fp8" and data_type("mystery") == "unknown"


def test_an_engine_without_detailed_profiling_is_a_clear_error():
    with pytest.raises(ModelError, match="layer names only") as info:
        parse_layer_information(json.dumps({"Layers": ["conv_1 + relu_1", "gap"]}))
    assert "detailed_profile=True" in info.value.hint


def test_detailed_profile_reaches_the_builder_and_the_inspector_is_read(monkeypatch, tmp_path):
    trt = fake_trt("11.4.0.106")
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    save_model(conv_classifier(), tmp_path / "m.onnx")
    shape = (1, 3, 16, 16)
    build_engine(tmp_path / "m.onnx", tmp_path / "m.engine", profiles=[ShapeRange("x", shape, shape, shape)],
                 detailed_profile=True)
    assert trt.built[0][1].profiling_verbosity == trt.ProfilingVerbosity.DETAILED
    trt.layer_information = DETAILED
    assert [layer.input_types for layer in engine_layers(tmp_path / "m.engine")] == [("int8",), ("fp16",)]
    (tmp_path / "bad.engine").write_bytes(b"garbage")
    with pytest.raises(ModelError, match="cannot load the engine"):
        engine_layers(tmp_path / "bad.engine")
