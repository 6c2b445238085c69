"""Reading ONNX models and describing their inputs, outputs and identity.

Everything here runs on CPU with the onnx package only.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from trtq.atomic import atomic_path
from trtq.errors import ModelError, first_line
from trtq.onnx_model import external_data, large_models
from trtq.onnx_model.large_models import exceeds_protobuf_limit, skeleton

# ONNX Runtime 1.31 reads IR version <= 13 while onnx 1.23 writes 14 by default,
# so every model trtq writes is stamped with an IR version no newer than this.
MAX_IR_VERSION = 13
# protobuf cannot serialise a message over 2 GiB: larger models keep weights outside.
PROTOBUF_LIMIT = 2**31 - 1


@dataclass(frozen=True)
class TensorSpec:
    """Name, shape and dtype of a graph input or output.

    `shape` holds ints for fixed dims and strings (the dim_param, or "?") for
    dynamic ones; `shape` is None when the model gives no shape at all.
    """

    name: str
    shape: tuple[int | str, ...] | None
    dtype: np.dtype

    @property
    def is_dynamic(self) -> bool:
        return self.shape is None or any(not isinstance(d, int) for d in self.shape)

    def shape_str(self) -> str:
        if self.shape is None:
            return "unknown"
        return "x".join(str(d) for d in self.shape)


def load_model(path: str | Path, load_weights: bool = True) -> onnx.ModelProto:
    """Load an ONNX model, including external data files next to it.

    Raises:
        ModelError: the file is missing or is not a readable ONNX model.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model file {path} does not exist", hint="check the path to the .onnx file")
    if path.stat().st_size == 0:  # protobuf reads 0 bytes as a valid, empty model
        raise ModelError(f"model file {path} is empty (0 bytes)", hint="export the model again")
    try:
        model = onnx.load(str(path), load_external_data=load_weights)
    except FileNotFoundError as exc:
        raise _missing_data(path, exc.filename) from None
    except Exception as exc:  # onnx raises DecodeError, ValueError, ... for junk
        if _EXTERNAL_MISSING in str(exc):  # onnx's checker: "... should be stored in X, but it is not regular file"
            raise _missing_data(path, str(exc).split(" should be stored in ", 1)[1].split(",", 1)[0]) from None
        raise ModelError(f"{path} is not a readable ONNX model ({type(exc).__name__}: {first_line(exc)})",
                         hint="export the model again or check the file is not truncated") from None
    if not model.HasField("graph"):
        raise ModelError(f"{path} holds no ONNX graph (it is not an ONNX model, or is truncated)",
                         hint="export the model again")
    return model


_EXTERNAL_MISSING = "should be stored in"


def load_model_by_reference(path: str | Path) -> tuple[onnx.ModelProto, Path | None]:
    """Load a model; if its weights would take it over protobuf's 2 GiB, leave them in their files.

    Returns:
        (model, None) for a model loaded whole, exactly as load_model does; or (model, folder) for a
        model over the limit whose external initializers stay references to files in `folder`: pass
        the folder to fingerprint, trtq.qdq.quantize_model and save_model, which read the weights
        from there one tensor at a time.

    Raises:
        ModelError: the file is missing or unreadable, or an external data file is missing or short.
    """
    path = Path(path)
    light = load_model(path, load_weights=False)
    if not external_data.any_external(light):
        return light, None  # everything was in the file: the light load is the whole model (one parse, not two)
    if not large_models.exceeds_limit_when_loaded(light):
        return load_model(path), None
    try:
        external_data.check_references(light, path.parent)
    except FileNotFoundError as exc:
        raise _missing_data(path, exc.filename) from None
    except ValueError as exc:
        raise ModelError(f"{path} has unusable external data: {first_line(exc)}",
                         hint="keep the model's external data files next to it, under the names the model gives"
                         ) from None
    return light, path.parent


def _missing_data(path: Path, data_file: str | None) -> ModelError:
    return ModelError(f"model {path} refers to an external data file that is missing ({data_file})",
                      hint="keep the model's external data files next to it, under the names the model gives")


def _dtype_of(elem_type: int) -> np.dtype:
    try:
        return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem_type))
    except (KeyError, TypeError, ValueError):
        return np.dtype("O")


def _spec(value_info: onnx.ValueInfoProto) -> TensorSpec:
    ttype = value_info.type.tensor_type
    shape: tuple[int | str, ...] | None = None
    if ttype.HasField("shape"):
        shape = tuple(
            d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in ttype.shape.dim
        )
    return TensorSpec(value_info.name, shape, _dtype_of(ttype.elem_type))


def graph_inputs(model: onnx.ModelProto) -> list[TensorSpec]:
    """Inputs the user feeds (initializers listed as inputs by old exporters are left out)."""
    initializers = {i.name for i in model.graph.initializer}
    return [_spec(i) for i in model.graph.input if i.name not in initializers]


def graph_outputs(model: onnx.ModelProto) -> list[TensorSpec]:
    """The model's outputs."""
    return [_spec(o) for o in model.graph.output]


def external_data_files(model: onnx.ModelProto) -> list[str]:
    """Names of the external data files the model's initializers point to."""
    files = set()
    for tensor in model.graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            for entry in tensor.external_data:
                if entry.key == "location":
                    files.add(entry.value)
    return sorted(files)


def opset_version(model: onnx.ModelProto) -> int:
    """The default-domain opset of the model."""
    for opset in model.opset_import:
        if opset.domain in ("", "ai.onnx"):
            return int(opset.version)
    return 0


def _hash_graph(model: onnx.ModelProto) -> str:
    """Hash of the graph structure: nodes, attributes and I/O, not weight values (nor Constant values)."""
    h = hashlib.sha256()
    for node in model.graph.node:
        h.update(f"{node.op_type}|{node.domain}|{','.join(node.input)}|{','.join(node.output)}\n".encode())
        for attr in node.attribute:
            if node.op_type == "Constant" and attr.type == onnx.AttributeProto.TENSOR:
                continue  # a weight stored in the graph: hashed with the weights
            if attr.type in (onnx.AttributeProto.TENSOR, onnx.AttributeProto.GRAPH):
                h.update(attr.SerializeToString(deterministic=True))
            else:
                h.update(str(onnx.helper.get_attribute_value(attr)).encode())
    for spec in (*graph_inputs(model), *graph_outputs(model)):
        h.update(f"io|{spec.name}|{spec.shape}|{spec.dtype}\n".encode())
    return h.hexdigest()


def _hash_weights(model: onnx.ModelProto, weights_dir: Path | None = None) -> str:
    """Hash of every initializer's (and Constant node tensor's) name, dtype, shape and values.

    Exported models (e.g. PaddlePaddle's) often keep their weights in Constant nodes;
    changing those is a weights change, not a graph change. Weights left in external files
    under `weights_dir` are hashed from there in chunks, to the same digest.
    """
    h = hashlib.sha256()
    tensors = [(t.name, t) for t in model.graph.initializer]
    tensors += [(node.output[0], attr.t) for node in model.graph.node if node.op_type == "Constant"
                for attr in node.attribute if attr.type == onnx.AttributeProto.TENSOR]
    for name, tensor in sorted(tensors, key=lambda item: item[0]):
        if weights_dir is not None and external_data.is_external(tensor):
            external_data.hash_tensor(h, tensor, weights_dir)
            continue
        array = numpy_helper.to_array(tensor)
        h.update(f"{name}|{array.dtype}|{array.shape}\n".encode())
        h.update(np.ascontiguousarray(array).tobytes())
    return h.hexdigest()


@dataclass(frozen=True)
class ModelFingerprint:
    """Identity of a model: its graph structure and its weights, hashed separately
    so that a mismatch can say which of the two changed."""

    graph: str
    weights: str

    def short(self) -> str:
        return f"{self.graph[:12]}/{self.weights[:12]}"


def fingerprint(model: onnx.ModelProto, weights_dir: Path | None = None) -> ModelFingerprint:
    """Fingerprint a model: weights loaded, or left in files under `weights_dir` (load_model_by_reference)."""
    return ModelFingerprint(graph=_hash_graph(model), weights=_hash_weights(model, weights_dir))


def save_model(model: onnx.ModelProto, path: str | Path, weights_dir: Path | None = None) -> None:
    """Write `model` atomically with an IR version ONNX Runtime can read.

    Models over 2 GiB are written with their weights in one external data file
    next to them (`<name>.data`); so are models whose weights were left in files
    under `weights_dir` (load_model_by_reference), copied from there in chunks.
    """
    path = Path(path)
    model.ir_version = min(model.ir_version or MAX_IR_VERSION, MAX_IR_VERSION)
    if weights_dir is not None and external_data_files(model):
        with atomic_path(path.with_name(f"{path.name}.data")) as data_tmp, atomic_path(path) as tmp:
            onnx.save_model(skeleton(model, data_tmp, location=f"{path.name}.data", weights_dir=weights_dir),
                            str(tmp))
        return
    if _has_inline_weights(model) and exceeds_protobuf_limit(model):
        # Streamed from `model` into the data file: no second copy of the weights, `model` unchanged.
        with atomic_path(path.with_name(f"{path.name}.data")) as data_tmp, atomic_path(path) as tmp:
            onnx.save_model(skeleton(model, data_tmp, location=f"{path.name}.data"), str(tmp))
        return
    with atomic_path(path) as tmp:
        onnx.save_model(model, str(tmp))


def _has_inline_weights(model: onnx.ModelProto) -> bool:
    return any(t.data_location != onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
