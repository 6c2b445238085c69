"""ONNX Runtime's TensorRT execution provider calibration tables.

`calibration.flatbuffers` is what the TensorRT EP reads for INT8
(`trt_int8_calibration_table_name`): FlatBuffers schema
`CalTableFlatBuffers.TrtTable { dict: [KeyValue { key: string, value: string }] }`,
no file identifier, value = amax as a decimal string (ORT's
`quant_utils.write_calibration_table`; the EP uses it as the tensor's dynamic range).
ORT sorts the keys; trtq keeps the table order (callers give graph order) --
the reader builds a map, so order does not matter to it.

`calibration.cache` from the same ORT function holds `name amax` lines with no
header. It is *not* TensorRT's format, and a bare "name number" list is too
ambiguous to detect, so it is read only when format 'ort-text' is asked for.
"""

from __future__ import annotations

import struct

from trtq._lazy import require
from trtq.cache.table import CalibrationTable, check_finite
from trtq.errors import CacheError


def format_ort_table(table: CalibrationTable) -> bytes:
    """The `calibration.flatbuffers` bytes of `table` (deterministic).

    Raises:
        CacheError: a non-finite amax.
        MissingDependencyError: the flatbuffers package (installed with onnxruntime) is missing.
    """
    check_finite(table, "an ONNX Runtime table")
    flatbuffers = require("flatbuffers")
    builder = flatbuffers.Builder(1024)
    entries = []
    for name, amax in table.amax.items():
        key, value = builder.CreateString(name), builder.CreateString(repr(amax))
        builder.StartObject(2)  # KeyValue
        builder.PrependUOffsetTRelativeSlot(0, key, 0)
        builder.PrependUOffsetTRelativeSlot(1, value, 0)
        entries.append(builder.EndObject())
    builder.StartVector(4, len(entries), 4)
    for entry in reversed(entries):  # prepending builds back to front: reverse to keep table order
        builder.PrependUOffsetTRelative(entry)
    vector = builder.EndVector()
    builder.StartObject(1)  # TrtTable
    builder.PrependUOffsetTRelativeSlot(0, vector, 0)
    builder.Finish(builder.EndObject())
    return bytes(builder.Output())


class _Malformed(Exception):
    """Raised inside the reader; turned into a CacheError by parse_ort_table."""


def _read(fmt: str, buf: bytes, pos: int) -> int:
    size = struct.calcsize(fmt)
    if pos < 0 or pos + size > len(buf):
        raise _Malformed(f"offset {pos} outside the {len(buf)}-byte file")
    value: int = struct.unpack_from(fmt, buf, pos)[0]
    return value


def _u32(buf: bytes, pos: int) -> int:
    return _read("<I", buf, pos)


def _field(buf: bytes, table: int, index: int) -> int | None:
    """Position of field `index` of the table at `table`, or None if absent (FlatBuffers vtable lookup)."""
    vtable = table - _read("<i", buf, table)
    vt_size = _read("<H", buf, vtable)
    slot = 4 + 2 * index
    if slot + 2 > vt_size:
        return None
    offset = _read("<H", buf, vtable + slot)
    return table + offset if offset else None


def _string(buf: bytes, table: int, index: int) -> str | None:
    pos = _field(buf, table, index)
    if pos is None:
        return None
    start = pos + _u32(buf, pos)
    length = _u32(buf, start)
    end = start + 4 + length
    if end >= len(buf) or buf[end] != 0:  # FlatBuffers strings end with a NUL byte
        raise _Malformed("string runs past the end of the file")
    return buf[start + 4:end].decode("utf-8")


def _entries(buf: bytes) -> list[tuple[str | None, str | None]]:
    root = _u32(buf, 0)
    pos = _field(buf, root, 0)
    if pos is None:
        return []
    vector = pos + _u32(buf, pos)
    count = _u32(buf, vector)
    if vector + 4 + 4 * count > len(buf):
        raise _Malformed(f"vector of {count} entries runs past the end of the file")
    entries = []
    for i in range(count):
        elem = vector + 4 + 4 * i
        kv = elem + _u32(buf, elem)
        entries.append((_string(buf, kv, 0), _string(buf, kv, 1)))
    return entries


def _amax(key: str, value: str | None, source: str) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise CacheError(f"{source}: value of tensor {key!r} is {value!r}, not a decimal amax") from None


def parse_ort_table(data: bytes, source: str = "table") -> CalibrationTable:
    """Read `calibration.flatbuffers` bytes (algorithm "unknown": ORT's table does not say).

    Raises:
        CacheError: not a TrtTable flatbuffer, an entry without key, a value that is not a number,
            or a tensor listed twice.
    """
    if len(data) < 8:
        raise CacheError(f"{source} is too short ({len(data)} bytes) to be an ONNX Runtime calibration table")
    try:
        entries = _entries(bytes(data))
    except (_Malformed, struct.error, UnicodeDecodeError) as exc:
        raise CacheError(f"{source} is not an ONNX Runtime calibration.flatbuffers table ({exc})") from None
    amax: dict[str, float] = {}
    for i, (key, value) in enumerate(entries):
        if not key:
            raise CacheError(f"{source}: entry {i} has no tensor name")
        if key in amax:
            raise CacheError(f"{source}: tensor {key!r} appears twice")
        amax[key] = _amax(key, value, source)
    return CalibrationTable(amax=amax, algorithm="unknown")


def parse_ort_text(data: bytes | str, source: str = "table") -> CalibrationTable:
    """Read ORT's `calibration.cache` ("<name> <amax>" per line, split on the last space).

    Raises:
        CacheError: a line without a number (with its line number), or a tensor listed twice.
    """
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
    except UnicodeDecodeError as exc:
        raise CacheError(f"{source} is not UTF-8 text (byte {exc.start})") from None
    amax: dict[str, float] = {}
    for lineno, raw in enumerate(text.split("\n"), start=1):
        line = raw.rstrip()
        if not line:
            continue
        name, sep, value = line.rpartition(" ")
        try:
            number = float(value)
        except ValueError:
            sep = ""
        if not sep or not name:
            raise CacheError(f"{source} line {lineno} is not '<tensor name> <amax>': {line[:120]!r}",
                             hint="format 'ort-text' reads ONNX Runtime's calibration.cache")
        if name in amax:
            raise CacheError(f"{source} line {lineno}: tensor {name!r} appears twice")
        amax[name] = number
    return CalibrationTable(amax=amax, algorithm="unknown")
