"""A TensorRT cache plus its provenance sidecar `<cache path>.json`.

TensorRT's cache format holds names and scales only, so trtq keeps what it
needs to check a cache against a model later -- the Provenance (model and data
fingerprints, algorithm and its parameters, sample count, versions) and the
trtq algorithm name the header cannot say (percentile, mse, ema) -- in a JSON
file next to it:

    {"schema": 1, "cache_sha256": "<sha256 of the cache bytes>", "algorithm": "percentile",
     "provenance": {...} or null}

`cache_sha256` ties the sidecar to the exact cache bytes: if anything else
(TensorRT's own calibrator, a hand edit) rewrites the cache, the sidecar no
longer describes it and is ignored with a warning.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from trtq.atomic import atomic_open
from trtq.cache.files import load_bytes, parse_table, serialize_table
from trtq.cache.strict_json import load_json
from trtq.cache.table import SCHEMA_VERSION, CalibrationTable, Provenance, check_schema
from trtq.errors import CacheError, ConfigError

log = logging.getLogger(__name__)

SIDECAR_SUFFIX = ".json"
_KEYS = ("schema", "cache_sha256", "algorithm", "provenance")
# Formats that cannot hold provenance themselves and so get a sidecar.
_SIDECAR_FORMATS = ("trt", "ort", "ort-text")


def sidecar_path(cache_path: str | os.PathLike[str]) -> Path:
    """`model.cache` -> `model.cache.json`."""
    return Path(f"{os.fspath(cache_path)}{SIDECAR_SUFFIX}")


def sidecar_dict(table: CalibrationTable, cache_bytes: bytes) -> dict[str, Any]:
    """The sidecar document for `table` written as `cache_bytes`."""
    return {
        "schema": SCHEMA_VERSION,
        "cache_sha256": hashlib.sha256(cache_bytes).hexdigest(),
        "algorithm": table.algorithm,
        "provenance": table.provenance.to_dict() if table.provenance else None,
    }


def write_cache(table: CalibrationTable, path: str | os.PathLike[str], trt_version: str | None = None, *,
                format: str = "trt", calibrator: str | None = None) -> None:
    """Write a cache and its sidecar, both atomically; on failure neither is replaced.

    Args:
        table: the ranges and provenance.
        path: cache file; the sidecar goes to sidecar_path(path).
        trt_version: target TensorRT version of the header (see serialize_table for the default).
        format: "trt" (TensorRT cache) or "ort" (ONNX Runtime calibration.flatbuffers).
        calibrator: the TensorRT calibrator that will read a trt cache (see header_calibrator).

    Raises:
        ConfigError: another format, bad version or calibrator.
        CacheError: the table cannot be written in that format.
    """
    if format not in ("trt", "ort"):
        raise ConfigError(f"write_cache writes trt or ort caches, not {format!r}",
                          hint="JSON tables hold their provenance; use write_table")
    data = serialize_table(table, format, trt_version, calibrator)
    sidecar = json.dumps(sidecar_dict(table, data), indent=2, ensure_ascii=False) + "\n"
    # The sidecar is renamed into place first: if the cache rename then failed, the new
    # sidecar's cache_sha256 would not match the old cache and read_cache would ignore it.
    with atomic_open(path, "wb") as cache_file, atomic_open(sidecar_path(path), "wb") as sidecar_file:
        cache_file.write(data)
        sidecar_file.write(sidecar.encode("utf-8"))


def _read_sidecar(path: Path) -> dict[str, Any]:
    source = str(path)
    try:
        doc = load_json(load_bytes(path), f"sidecar {source}")
    except CacheError as exc:
        raise CacheError(exc.message, hint="delete it (the cache then has no provenance) or write the cache "
                                           "again") from None
    if not isinstance(doc, dict):
        raise CacheError(f"sidecar {source} is not a JSON object")
    check_schema(doc, f"sidecar {source}")
    unknown = [k for k in doc if k not in _KEYS]
    if unknown:
        raise CacheError(f"sidecar {source} has unknown key {unknown[0]!r}", hint=f"known keys: {', '.join(_KEYS)}")
    algorithm = doc.get("algorithm")
    if not isinstance(doc.get("cache_sha256"), str) or not isinstance(algorithm, str) or not algorithm:
        raise CacheError(f"sidecar {source} needs 'cache_sha256' and 'algorithm' strings",
                         hint="delete it (the cache then has no provenance) or write the cache again")
    return doc


def read_cache(path: str | os.PathLike[str], format: str = "auto") -> CalibrationTable:
    """Read a cache and, if present and still matching it, its sidecar.

    Args:
        path: the cache file (any READ_FORMATS format; JSON tables carry their own provenance).
        format: as in parse_table.

    Returns:
        The table; with a matching sidecar, its algorithm and provenance come from the sidecar,
        otherwise provenance is None (for trt, ort and ort-text files).

    Raises:
        CacheError: missing or malformed cache, or malformed sidecar.
    """
    data = load_bytes(path)
    table, fmt = parse_table(data, format, str(path))
    side = sidecar_path(path)
    if fmt not in _SIDECAR_FORMATS or not side.is_file():
        return table
    doc = _read_sidecar(side)
    if doc["cache_sha256"] != hashlib.sha256(data).hexdigest():
        log.warning("sidecar %s does not describe %s (the cache changed after it was written); "
                    "ignoring its provenance", side, path)
        return table
    provenance = doc.get("provenance")
    if provenance is not None:
        provenance = Provenance.from_dict(provenance, f"sidecar {side} provenance")
    return dataclasses.replace(table, algorithm=doc["algorithm"], provenance=provenance)
