"""trtq's JSON calibration table: exact amax values plus provenance in one file.

    {"schema": 1, "algorithm": "entropy", "trt_version": "10.16.1", "trt_algorithm": null,
     "tensors": {"x": {"amax": 2.5, "scale": 0.01968503937007874}},
     "provenance": {...} or null}

Floats are written with repr (json's default), so they read back bit-exact.
`scale` (amax / 127) is there for readers; on reading, amax is the value used
and a scale that disagrees with it is an error (one of them was edited).
"""

from __future__ import annotations

import json
import math
from typing import Any

from trtq.cache.strict_json import load_json
from trtq.cache.table import INT8_MAX, SCHEMA_VERSION, CalibrationTable, Provenance, check_finite, check_schema
from trtq.errors import CacheError

_KEYS = ("schema", "algorithm", "trt_version", "trt_algorithm", "tensors", "provenance")
# Relative disagreement between scale and amax/127 tolerated on reading (decimal rounding of hand edits).
_SCALE_RTOL = 1e-6


def table_to_dict(table: CalibrationTable) -> dict[str, Any]:
    """The JSON document of `table` as a dict (tensors in table order)."""
    return {
        "schema": SCHEMA_VERSION,
        "algorithm": table.algorithm,
        "trt_version": table.trt_version,
        "trt_algorithm": table.trt_algorithm,
        "tensors": {name: {"amax": amax, "scale": amax / INT8_MAX} for name, amax in table.amax.items()},
        "provenance": table.provenance.to_dict() if table.provenance else None,
    }


def format_json_table(table: CalibrationTable) -> str:
    """JSON text of `table`; identical tables give identical text.

    Raises:
        CacheError: a non-finite amax (JSON cannot hold it).
    """
    check_finite(table, "a JSON table")
    return json.dumps(table_to_dict(table), indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def _optional_str(doc: dict[str, Any], key: str, source: str) -> str | None:
    value = doc.get(key)
    if value is not None and not isinstance(value, str):
        raise CacheError(f"{source}: {key!r} must be a string or null, got {value!r}")
    return value


def _tensor_amax(name: str, entry: Any, source: str) -> float:
    if not isinstance(entry, dict) or "amax" not in entry:
        raise CacheError(f"{source}: tensor {name!r} must be an object with an 'amax' number, got {entry!r}")
    unknown = [k for k in entry if k not in ("amax", "scale")]
    if unknown:
        raise CacheError(f"{source}: tensor {name!r} has unknown key {unknown[0]!r}", hint="known keys: amax, scale")
    amax = entry["amax"]
    if isinstance(amax, bool) or not isinstance(amax, (int, float)):
        raise CacheError(f"{source}: amax of tensor {name!r} must be a number, got {amax!r}")
    scale = entry.get("scale")
    if scale is not None:
        if isinstance(scale, bool) or not isinstance(scale, (int, float)):
            raise CacheError(f"{source}: scale of tensor {name!r} must be a number, got {scale!r}")
        if not math.isclose(scale, amax / INT8_MAX, rel_tol=_SCALE_RTOL):
            raise CacheError(f"{source}: tensor {name!r} has amax {amax!r} but scale {scale!r} (amax/127 expected)",
                             hint="edit amax only, or delete the scale")
    try:
        return float(amax)
    except OverflowError:
        raise CacheError(f"{source}: amax of tensor {name!r} is too large for a float") from None


def table_from_dict(doc: Any, source: str = "table") -> CalibrationTable:
    """Rebuild a table from `table_to_dict` output.

    Raises:
        CacheError: wrong schema, unknown key, missing or ill-typed value (naming the key or tensor).
    """
    if not isinstance(doc, dict):
        raise CacheError(f"{source} is not a JSON object")
    check_schema(doc, source)
    unknown = [k for k in doc if k not in _KEYS]
    if unknown:
        raise CacheError(f"{source} has unknown key {unknown[0]!r}", hint=f"known keys: {', '.join(_KEYS)}")
    tensors = doc.get("tensors")
    if not isinstance(tensors, dict):
        raise CacheError(f"{source} has no 'tensors' object")
    algorithm = doc.get("algorithm", "unknown")
    if not isinstance(algorithm, str) or not algorithm:
        raise CacheError(f"{source}: 'algorithm' must be a non-empty string, got {algorithm!r}")
    if "" in tensors:
        raise CacheError(f"{source} has a tensor with an empty name")
    provenance = doc.get("provenance")
    return CalibrationTable(
        amax={name: _tensor_amax(name, entry, source) for name, entry in tensors.items()},
        algorithm=algorithm,
        trt_version=_optional_str(doc, "trt_version", source),
        provenance=Provenance.from_dict(provenance, f"{source} provenance") if provenance is not None else None,
        trt_algorithm=_optional_str(doc, "trt_algorithm", source),
    )


def parse_json_table(data: bytes | str, source: str = "table") -> CalibrationTable:
    """Read a JSON table.

    Raises:
        CacheError: not JSON (with the line) or not a trtq table.
    """
    return table_from_dict(load_json(data, source), source)
