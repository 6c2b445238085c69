"""Models over protobuf's 2 GiB limit: size them without serializing, write them with external data
without copying or changing the in-memory model.

`model.ByteSize()` raises EncodeError on current protobuf once a message passes 2 GiB, and
`onnx.save_model(save_as_external_data=True)` moves the weights out of the model it is given (the
caller's model then has no weights). Here the size is summed from the tensors, and a model is written
as a small "skeleton" proto whose large initializers point into one data file, streamed tensor by
tensor from the original, so memory stays near one copy of the weights.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

import onnx
from onnx import numpy_helper

from trtq.onnx_model import external_data

# protobuf cannot serialise a message over 2 GiB (trtq.onnx_model.model.PROTOBUF_LIMIT has the same value).
LIMIT = 2**31 - 1
# Leave room for the graph itself (nodes, names, attributes) next to the tensors.
_MARGIN = 64 << 20
# Initializers of at least this many bytes go to the data file.
EXTERNAL_THRESHOLD = 1024


def tensor_bytes(tensor: onnx.TensorProto) -> int:
    """Bytes of values `tensor` holds in the proto itself (0 for external data)."""
    if tensor.data_location == onnx.TensorProto.EXTERNAL:
        return 0
    if tensor.raw_data:
        return len(tensor.raw_data)
    return 8 * (len(tensor.float_data) + len(tensor.int32_data) + len(tensor.int64_data) + len(tensor.double_data)
                + len(tensor.uint64_data)) + sum(len(s) for s in tensor.string_data)


def inline_bytes(model: onnx.ModelProto) -> int:
    """Bytes of weights held in the proto itself (initializers and Constant tensors; an upper bound)."""
    total = sum(tensor_bytes(t) for t in model.graph.initializer)
    for node in model.graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.TENSOR:
                total += tensor_bytes(attr.t)
    return total


def exceeds_protobuf_limit(model: onnx.ModelProto) -> bool:
    """True when `model` cannot be serialized in one piece (never raises, unlike ByteSize())."""
    if inline_bytes(model) > LIMIT - _MARGIN:
        return True
    try:
        return bool(model.ByteSize() > LIMIT)
    except Exception:  # protobuf's EncodeError / ValueError past the limit
        return True


def serialized_within_limit(model: onnx.ModelProto) -> bytes | None:
    """`model.SerializeToString()`, or None when `model` cannot be serialized in one piece.

    One serialization where `exceeds_protobuf_limit` and then `SerializeToString` make two: upb's
    ByteSize() encodes the whole message too (0.36 s of the 0.64 s the two took for the 90 MB
    all-MiniLM-L6-v2 on a loaded 2-core machine).
    """
    if inline_bytes(model) > LIMIT - _MARGIN:
        return None
    try:
        data = model.SerializeToString()
    except Exception:  # protobuf's EncodeError / ValueError past the limit
        return None
    return data if len(data) <= LIMIT else None


def exceeds_limit_when_loaded(model: onnx.ModelProto) -> bool:
    """True when `model`, read without its external data, would pass the limit with that data loaded."""
    referenced = external_data.referenced_bytes(model)
    return bool(referenced) and inline_bytes(model) + referenced > LIMIT - _MARGIN


def external_reference(tensor: onnx.TensorProto, location: str, offset: int, length: int) -> onnx.TensorProto:
    """A copy of `tensor`'s name, type and shape whose values are `length` bytes at `offset` of file `location`."""
    ref = onnx.TensorProto(name=tensor.name, data_type=tensor.data_type, dims=tensor.dims,
                           data_location=onnx.TensorProto.EXTERNAL, doc_string=tensor.doc_string)
    for key, value in (("location", location), ("offset", str(offset)), ("length", str(length))):
        entry = ref.external_data.add()
        entry.key, entry.value = key, value
    return ref


def skeleton(model: onnx.ModelProto, data_path: Path, location: str | None = None,
             weights_dir: Path | None = None) -> onnx.ModelProto:
    """A copy of `model` without its large initializers, which are written to `data_path` (any existing
    file is replaced) and referenced as `location` (default: its file name); `model` is not changed.

    With `weights_dir` (the folder a model loaded by reference came from), initializers that still
    point into external files there are copied, in chunks, into `data_path` too; without it such
    references are kept as they are.

    Raises:
        OSError: the data file cannot be written.
    """
    light = onnx.ModelProto()
    copy_fields(model, light, skip="graph")
    copy_fields(model.graph, light.graph, skip="initializer")
    location = location or data_path.name
    offset = 0
    with open(data_path, "wb") as data:
        for tensor in model.graph.initializer:
            if weights_dir is not None and external_data.is_external(tensor):
                offset += _pad(data, offset)
                length = external_data.copy_tensor(tensor, weights_dir, data)
                light.graph.initializer.append(external_reference(tensor, location, offset, length))
                offset += length
                continue
            if tensor_bytes(tensor) < EXTERNAL_THRESHOLD:
                light.graph.initializer.add().CopyFrom(tensor)
                continue
            payload = tensor.raw_data or numpy_helper.to_array(tensor).tobytes()
            offset += _pad(data, offset)
            data.write(payload)
            light.graph.initializer.append(external_reference(tensor, location, offset, len(payload)))
            offset += len(payload)
        data.flush()
        os.fsync(data.fileno())
    return light


def _pad(data: BinaryIO, offset: int) -> int:
    """Write zeros up to the next 4 KiB boundary (so ONNX Runtime can map the file); returns how many."""
    padding = -offset % 4096
    data.write(b"\0" * padding)
    return padding


def drop_initializers(graph: onnx.GraphProto, names: set[str]) -> None:
    """Remove the initializers named in `names` from `graph`, in place.

    Deleted by index rather than by rebuilding the list: upb's `extend`/`append` copy each message by
    serializing and parsing it (0.5 s per 300 MB kept, and EncodeError for a tensor over 2 GiB).
    """
    for i in reversed(range(len(graph.initializer))):
        if graph.initializer[i].name in names:
            del graph.initializer[i]


def copy_fields(source: object, target: object, skip: str) -> None:
    """Copy every set field of the proto `source` into `target` except `skip`."""
    for field, value in source.ListFields():  # type: ignore[attr-defined]
        if field.name == skip:
            continue
        if getattr(field, "is_repeated", None) or getattr(field, "label", None) == field.LABEL_REPEATED:
            getattr(target, field.name).extend(value)
        elif field.message_type:
            getattr(target, field.name).CopyFrom(value)
        else:
            setattr(target, field.name, value)
