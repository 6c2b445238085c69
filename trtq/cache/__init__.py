"""Calibration caches: TensorRT text format, JSON, ONNX Runtime tables, provenance, validation.

    from trtq.cache import CalibrationTable, write_cache, read_cache, validate_table
    write_cache(table, "model.cache", trt_version="8.6.1")    # + model.cache.json sidecar
    table = read_cache("model.cache")
    warnings = validate_table(table, fingerprint=fingerprint(model), tensor_names=names)
"""

from trtq.cache.files import (
    EXTENSIONS,
    READ_FORMATS,
    WRITE_FORMATS,
    detect_format,
    format_for_path,
    parse_table,
    read_table,
    serialize_table,
    write_table,
)
from trtq.cache.sidecar import read_cache, sidecar_path, write_cache
from trtq.cache.table import INT8_MAX, CalibrationTable, Provenance, known_algorithms, names_sha256
from trtq.cache.trt_format import (
    DEFAULT_TRT_VERSION,
    decode_trt_version,
    encode_trt_version,
    format_trt_cache,
    parse_trt_cache,
    trt_version_header,
)
from trtq.cache.validate import TableDiff, TensorChange, diff_tables, validate_table

__all__ = [
    "DEFAULT_TRT_VERSION",
    "EXTENSIONS",
    "INT8_MAX",
    "READ_FORMATS",
    "WRITE_FORMATS",
    "CalibrationTable",
    "Provenance",
    "TableDiff",
    "TensorChange",
    "decode_trt_version",
    "detect_format",
    "diff_tables",
    "encode_trt_version",
    "format_for_path",
    "format_trt_cache",
    "known_algorithms",
    "names_sha256",
    "parse_table",
    "parse_trt_cache",
    "read_cache",
    "read_table",
    "serialize_table",
    "sidecar_path",
    "trt_version_header",
    "validate_table",
    "write_cache",
    "write_table",
]
