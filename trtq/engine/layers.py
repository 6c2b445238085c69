"""The layers of a built engine and the precision of their inputs/outputs (TensorRT's engine inspector).

An engine built with detailed profiling (`build_engine(..., detailed_profile=True)`, i.e.
`config.profiling_verbosity = ProfilingVerbosity.DETAILED`) describes every fused layer in
`IEngineInspector.get_engine_information(LayerInformationFormat.JSON)`:
`{"Layers": [{"Name": "conv_1 + relu_1", "LayerType": "CaskConvolution",
"Inputs": [{"Name": ..., "Format/Datatype": "Thirty-two wide channel vectorized row major Int8 format"}],
"Outputs": [...]}, ...]}` (TensorRT developer guide, "Engine Inspector"). This is what shows whether
TensorRT really ran a layer in INT8/FP8, which matching FP32 outputs cannot.

    layers = engine_layers("model.engine")
    [l.name for l in layers if "int8" in l.input_types]
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from trtq._lazy import require
from trtq.engine.trt_log import trt_logger
from trtq.errors import ModelError

# Data type words in TensorRT's "Format/Datatype" strings, and the short names we use.
_TYPES = {"int8": "int8", "fp8": "fp8", "fp16": "fp16", "half": "fp16", "fp32": "fp32", "float": "fp32",
          "bf16": "bf16", "int32": "int32", "int64": "int64", "bool": "bool", "uint8": "uint8", "int4": "int4",
          "fp4": "fp4"}
_WORD = re.compile(r"[A-Za-z0-9]+")


@dataclass(frozen=True)
class LayerInfo:
    """One engine layer: its (fused) name, TensorRT's layer type, and the data types of its inputs/outputs."""

    name: str
    layer_type: str
    input_types: tuple[str, ...]
    output_types: tuple[str, ...]


def data_type(text: str) -> str:
    """"Row major linear Int8 format" -> "int8"; unknown text -> "unknown"."""
    for word in _WORD.findall(text.lower()):
        if word in _TYPES:
            return _TYPES[word]
    return "unknown"


def parse_layer_information(text: str) -> list[LayerInfo]:
    """Layers of the inspector's JSON; a list of bare names means the engine lacks detailed profiling.

    Raises:
        ModelError: the JSON has no per-layer detail (build with detailed_profile=True).
    """
    layers = json.loads(text).get("Layers", [])
    if layers and not isinstance(layers[0], dict):
        raise ModelError("the engine records layer names only, not their precisions",
                         hint="build it with detailed profiling (build_engine(..., detailed_profile=True))")
    return [LayerInfo(str(layer.get("Name", "")), str(layer.get("LayerType", "")),
                      tuple(data_type(io.get("Format/Datatype", "")) for io in layer.get("Inputs", [])),
                      tuple(data_type(io.get("Format/Datatype", "")) for io in layer.get("Outputs", [])))
            for layer in layers]


def engine_layers(engine_path: str | Path, trt_module: ModuleType | None = None) -> list[LayerInfo]:
    """Deserialize the engine (needs a GPU) and read its layers from TensorRT's engine inspector."""
    trt = trt_module if trt_module is not None else require("tensorrt")
    runtime = trt.Runtime(trt_logger(trt))
    engine: Any = runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
    if engine is None:
        raise ModelError(f"TensorRT cannot load the engine {engine_path}",
                         hint="engines run only with the TensorRT version and GPU they were built with")
    inspector = engine.create_engine_inspector()
    return parse_layer_information(str(inspector.get_engine_information(trt.LayerInformationFormat.JSON)))
