"""Reading and writing calibration tables in any supported format.

Formats:
    trt       TensorRT's calibration cache text (trt_format)
    json      trtq's JSON table with exact amax values and provenance (json_format)
    ort       ONNX Runtime TensorRT EP `calibration.flatbuffers` (ort_format)
    ort-text  ONNX Runtime's `calibration.cache` "name amax" lines; read only, and only on request

Reading detects the format from the content: a `TRT-` header, a JSON brace, or
a FlatBuffers TrtTable. Every write is atomic and deterministic: the same table
gives the same bytes.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from trtq.atomic import write_bytes
from trtq.cache.json_format import format_json_table, parse_json_table
from trtq.cache.ort_format import format_ort_table, parse_ort_table, parse_ort_text
from trtq.cache.table import CalibrationTable
from trtq.cache.trt_format import format_trt_cache, normalize_trt_version, parse_trt_cache
from trtq.errors import CacheError, ConfigError

READ_FORMATS = ("auto", "trt", "json", "ort", "ort-text")
WRITE_FORMATS = ("trt", "json", "ort")
# Output file extension -> format, for writes with format "auto".
EXTENSIONS = {".cache": "trt", ".json": "json", ".flatbuffers": "ort"}

_PARSERS = {"trt": parse_trt_cache, "json": parse_json_table, "ort": parse_ort_table, "ort-text": parse_ort_text}
_KNOWN_HINT = ("trtq reads TensorRT caches (TRT-<version>-<calibrator> header), trtq JSON tables and "
               "ONNX Runtime calibration.flatbuffers; for ONNX Runtime's calibration.cache ('name amax' lines) "
               "ask for format ort-text")


# A cache names each tensor once in ~40 bytes: 16 MiB is 400,000 tensors, far beyond any model, and
# keeps the parse (about 20 bytes of memory per byte of text) bounded.
MAX_CACHE_BYTES = 16 << 20


def load_bytes(path: str | os.PathLike[str]) -> bytes:
    """The content of a cache file.

    Raises:
        CacheError: the file is missing, larger than MAX_CACHE_BYTES or cannot be read.
    """
    path = Path(path)
    if not path.is_file():
        what = "is a directory, not a file" if path.is_dir() else "does not exist"
        raise CacheError(f"calibration cache {path} {what}", hint="check the path")
    try:
        size = path.stat().st_size
        if size > MAX_CACHE_BYTES:
            raise CacheError(f"{path} is {size} bytes, more than a calibration cache can be ({MAX_CACHE_BYTES})",
                             hint="check the path: this is not a cache trtq wrote or TensorRT writes")
        return path.read_bytes()
    except OSError as exc:
        raise CacheError(f"calibration cache {path} cannot be read ({exc.strerror})") from None


def _sniff(data: bytes) -> str | None:
    head = data.removeprefix(b"\xef\xbb\xbf")
    if head.startswith(b"TRT-"):
        return "trt"
    if head.lstrip().startswith(b"{"):
        return "json"
    return None


def _unrecognised(data: bytes, source: str) -> CacheError:
    if not data.strip():
        return CacheError(f"{source} is empty", hint=_KNOWN_HINT)
    try:
        first = data.decode("utf-8").split("\n", 1)[0].strip()
    except UnicodeDecodeError:
        return CacheError(f"{source} is not a calibration cache trtq can read", hint=_KNOWN_HINT)
    return CacheError(f"{source} has no TensorRT cache header (line 1 is {first[:80]!r}); a valid header "
                      "looks like TRT-8601-EntropyCalibration2", hint=_KNOWN_HINT)


def parse_table(data: bytes, format: str = "auto", source: str = "cache") -> tuple[CalibrationTable, str]:
    """Parse cache bytes.

    Args:
        data: file content.
        format: one of READ_FORMATS; "auto" detects trt, json or ort from the content.
        source: what to call the file in errors.

    Returns:
        The table and the format it was read as.

    Raises:
        ConfigError: unknown format name.
        CacheError: the content is not a valid table of that format.
    """
    if format not in READ_FORMATS:
        raise ConfigError(f"cache format {format!r} is not known", hint=f"use one of {', '.join(READ_FORMATS)}")
    if format != "auto":
        return _PARSERS[format](data, source), format
    sniffed = _sniff(data)
    if sniffed == "trt":
        return parse_trt_cache(data, source), "trt"
    if sniffed == "json":
        try:
            return parse_json_table(data, source), "json"
        except CacheError as json_error:  # a flatbuffer may start with '{' by chance
            try:
                return parse_ort_table(data, source), "ort"
            except CacheError:
                raise json_error from None
    try:
        return parse_ort_table(data, source), "ort"
    except CacheError:
        raise _unrecognised(data, source) from None


def read_table(path: str | os.PathLike[str], format: str = "auto") -> CalibrationTable:
    """Read a calibration table file (no sidecar; see read_cache).

    Raises:
        CacheError: missing file or malformed content (naming the file, and the line for text formats).
        ConfigError: unknown format name.
    """
    return parse_table(load_bytes(path), format, str(path))[0]


def detect_format(path: str | os.PathLike[str]) -> str:
    """The format `read_table(path)` reads the file as (trt, json or ort)."""
    return parse_table(load_bytes(path), "auto", str(path))[1]


def format_for_path(path: str | os.PathLike[str]) -> str:
    """Output format implied by a file extension (.cache trt, .json json, .flatbuffers ort).

    Raises:
        ConfigError: the extension implies no format.
    """
    suffix = Path(path).suffix.lower()
    if suffix not in EXTENSIONS:
        raise ConfigError(f"cannot tell the cache format from the name {Path(path).name!r}",
                          hint=f"name it *{', *'.join(EXTENSIONS)}, or give the format (--to trt|json|ort)")
    return EXTENSIONS[suffix]


def serialize_table(table: CalibrationTable, format: str, trt_version: str | None = None,
                    calibrator: str | None = None) -> bytes:
    """The bytes `write_table` writes.

    Args:
        table: the ranges.
        format: one of WRITE_FORMATS.
        trt_version: target TensorRT version: the trt header's version, recorded in json; default
            table.trt_version, else the installed TensorRT (< 11), else DEFAULT_TRT_VERSION (trt only).
        calibrator: trt only: the TensorRT calibrator that will read the cache (see header_calibrator).

    Raises:
        ConfigError: unknown format, bad version or calibrator.
        CacheError: the table cannot be written in that format (non-finite amax, ...).
    """
    if format not in WRITE_FORMATS:
        raise ConfigError(f"cannot write cache format {format!r}", hint=f"use one of {', '.join(WRITE_FORMATS)}")
    if trt_version is not None:
        table = dataclasses.replace(table, trt_version=normalize_trt_version(trt_version))
    if format == "trt":
        return format_trt_cache(table, calibrator=calibrator).encode("utf-8")
    if format == "json":
        return format_json_table(table).encode("utf-8")
    return format_ort_table(table)


def write_table(table: CalibrationTable, path: str | os.PathLike[str], format: str = "auto",
                trt_version: str | None = None, *, calibrator: str | None = None) -> None:
    """Write `table` atomically (no sidecar; see write_cache).

    Args:
        table: the ranges.
        path: output file.
        format: one of WRITE_FORMATS, or "auto" for the format of the file extension.
        trt_version, calibrator: as in serialize_table.

    Raises:
        ConfigError: unknown format or extension, bad version or calibrator.
        CacheError: the table cannot be written in that format.
    """
    fmt = format_for_path(path) if format == "auto" else format
    write_bytes(path, serialize_table(table, fmt, trt_version, calibrator))
