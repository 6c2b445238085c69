"""Weights left in their external data files: read one tensor at a time, hashed and copied in chunks.

A model whose weights would take it over protobuf's 2 GiB is loaded without its external data
(`onnx.load(load_external_data=False)`): each large initializer is then a reference (location,
offset, length) relative to the model's folder. trtq reads a weight's values only where it needs
them (weight scales), hashes and copies the bytes in chunks (fingerprint, writing the Q/DQ model),
so memory stays near the largest single tensor instead of two or more copies of every weight.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Protocol

import numpy as np
import onnx
from onnx import external_data_helper, numpy_helper

# Bytes read at a time when hashing or copying external data.
CHUNK = 64 << 20
# Element types whose external bytes are exactly numpy_helper.to_array(t).tobytes() (no packing, no strings).
_PLAIN_TYPES = frozenset({
    onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16, onnx.TensorProto.INT8,
    onnx.TensorProto.UINT8, onnx.TensorProto.INT16, onnx.TensorProto.UINT16, onnx.TensorProto.INT32,
    onnx.TensorProto.UINT32, onnx.TensorProto.INT64, onnx.TensorProto.UINT64, onnx.TensorProto.BOOL,
})


class _Hash(Protocol):
    def update(self, data: bytes | memoryview, /) -> None: ...


def is_external(tensor: onnx.TensorProto) -> bool:
    """True when the tensor's data lives in an external file (not in the proto)."""
    return bool(tensor.data_location == onnx.TensorProto.EXTERNAL)


def any_external(model: onnx.ModelProto) -> bool:
    """True when any tensor of the model (initializers and node attributes, subgraphs included) is external."""
    return any(is_external(t) for t in _all_tensors(model.graph))


def _all_tensors(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("g"):
                yield from _all_tensors(attr.g)
            for sub in attr.graphs:
                yield from _all_tensors(sub)


def referenced_bytes(model: onnx.ModelProto) -> int:
    """Bytes the model's initializers keep in external files (from their lengths or shapes)."""
    return sum(_length(t) for t in model.graph.initializer if is_external(t))


def data_file(tensor: onnx.TensorProto, base_dir: Path) -> Path:
    """The external file of `tensor` under `base_dir`.

    Raises:
        ValueError: the location is absolute or leaves `base_dir` (as onnx's own loader refuses).
        FileNotFoundError: the file does not exist.
    """
    location = external_data_helper.ExternalDataInfo(tensor).location
    if not location or os.path.isabs(location) or ".." in Path(location).parts:
        raise ValueError(f"external data location {location!r} of tensor {tensor.name!r} must be a relative path "
                         "inside the model's folder")
    path = Path(base_dir) / location
    if not path.is_file():
        raise FileNotFoundError(2, "external data file not found", str(location))
    return path


def tensor_values(tensor: onnx.TensorProto, weights_dir: Path | None) -> np.ndarray:
    """The values of `tensor`: from its file under `weights_dir` if it is external there, else from the proto."""
    if weights_dir is not None and is_external(tensor):
        return read_tensor(tensor, weights_dir)
    array: np.ndarray = numpy_helper.to_array(tensor)
    return array


def read_tensor(tensor: onnx.TensorProto, base_dir: Path) -> np.ndarray:
    """The values of an external tensor, read from its file (the tensor itself is not changed)."""
    if tensor.data_type in _PLAIN_TYPES:
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type))
        offset, length = _span(tensor, base_dir)
        count = int(np.prod(tensor.dims, dtype=np.int64))
        if length != count * dtype.itemsize:
            raise ValueError(f"external data of tensor {tensor.name!r} holds {length} bytes, its shape needs "
                             f"{count * dtype.itemsize}")
        values: np.ndarray = np.fromfile(data_file(tensor, base_dir), dtype=dtype, count=count, offset=offset)
        return values.reshape(tuple(tensor.dims))
    loaded = onnx.TensorProto()
    loaded.CopyFrom(tensor)
    external_data_helper.load_external_data_for_tensor(loaded, str(base_dir))
    array: np.ndarray = numpy_helper.to_array(loaded)
    return array


def hash_tensor(h: _Hash, tensor: onnx.TensorProto, base_dir: Path) -> None:
    """Feed `h` the header and bytes trtq.onnx_model.model's weight hash takes from a loaded tensor,
    streamed from the file for plain types (the same digest as the tensor loaded whole)."""
    if tensor.data_type not in _PLAIN_TYPES:
        array = read_tensor(tensor, base_dir)
        h.update(f"{tensor.name}|{array.dtype}|{array.shape}\n".encode())
        h.update(np.ascontiguousarray(array).tobytes())
        return
    dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type))
    h.update(f"{tensor.name}|{dtype}|{tuple(int(d) for d in tensor.dims)}\n".encode())
    offset, length = _span(tensor, base_dir)
    with open(data_file(tensor, base_dir), "rb") as source:
        source.seek(offset)
        for chunk in _chunks(source, length, tensor.name):
            h.update(chunk)


def copy_tensor(tensor: onnx.TensorProto, base_dir: Path, target: IO[bytes]) -> int:
    """Append the external bytes of `tensor` to `target` in chunks; returns how many were written."""
    offset, length = _span(tensor, base_dir)
    with open(data_file(tensor, base_dir), "rb") as source:
        source.seek(offset)
        for chunk in _chunks(source, length, tensor.name):
            target.write(chunk)
    return length


def check_references(model: onnx.ModelProto, base_dir: Path) -> None:
    """Check that every external tensor's file exists under `base_dir` and holds its bytes.

    Raises:
        FileNotFoundError: a data file is missing.
        ValueError: a location leaves the folder, or a file is shorter than a tensor's span.
    """
    for tensor in model.graph.initializer:
        if is_external(tensor):
            _span(tensor, base_dir)


def _span(tensor: onnx.TensorProto, base_dir: Path) -> tuple[int, int]:
    """(offset, length) of the tensor's bytes in its file, checked against the file's size."""
    info = external_data_helper.ExternalDataInfo(tensor)
    size = data_file(tensor, base_dir).stat().st_size
    offset = int(info.offset or 0)
    length = int(info.length) if info.length is not None else size - offset
    if offset < 0 or length < 0 or offset + length > size:
        raise ValueError(f"external data of tensor {tensor.name!r} ({length} bytes at {offset}) runs past the end "
                         f"of its {size}-byte file")
    return offset, length


def _length(tensor: onnx.TensorProto) -> int:
    info = external_data_helper.ExternalDataInfo(tensor)
    if info.length is not None:
        return int(info.length)
    try:
        itemsize = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type)).itemsize
    except (KeyError, TypeError, ValueError):
        itemsize = 1
    return int(np.prod(tensor.dims, dtype=np.int64)) * itemsize


def _chunks(source: IO[bytes], length: int, name: str) -> Iterator[bytes]:
    """`length` bytes of `source` in CHUNK pieces, one held at a time."""
    while length > 0:
        chunk = source.read(min(CHUNK, length))
        if not chunk:
            raise ValueError(f"external data of tensor {name!r} ends early")
        length -= len(chunk)
        yield chunk
