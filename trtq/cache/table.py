"""The calibration table: tensor name -> symmetric amax, and where it came from.

Units: `amax` is the symmetric range of a tensor (the largest |x| kept); the
INT8 scale TensorRT uses is `amax / 127`.

The cache module stores an algorithm *name* only; it never runs the range
algorithms, and reads only their names and cache headers from the registry
(trtq.calibrators.registry; see docs/design.md, interfaces).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from trtq._version import __version__
from trtq.calibrators.registry import available_methods
from trtq.errors import CacheError

# Largest INT8 magnitude: scale = amax / INT8_MAX.
INT8_MAX = 127
# Version of the JSON layouts written here (table, provenance, sidecar).
SCHEMA_VERSION = 1
# Range algorithms trtq names in caches; "unknown" for caches written by other tools. TensorRT has
# calibrators for entropy and minmax only: the others, auto included (its per-tensor winners are
# the other methods), get the TensorRT cache header EntropyCalibration2 (trt_format), because
# TensorRT 10 reads a cache only under the header of the calibrator reading it, and trtq's
# implicit builds hand every method but minmax to an IInt8EntropyCalibrator2 (pipeline/engine_stage.py);
# the trtq algorithm name lives in the sidecar.


def known_algorithms() -> tuple[str, ...]:
    """The algorithm names a table may carry: every registered method, and "unknown" (a cache TensorRT wrote)."""
    return (*available_methods(), "unknown")


def names_sha256(names: Iterable[str]) -> str:
    """sha256 of the sorted tensor names, one per line (what Provenance.tensor_names_sha256 holds)."""
    return hashlib.sha256("\n".join(sorted(names)).encode("utf-8")).hexdigest()


def _json_value(value: Any, where: str) -> Any:
    """A JSON-friendly copy of `value` (numpy scalars become Python numbers, tuples lists)."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, (list, tuple)):
        return [_json_value(v, where) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_value(v, where) for k, v in value.items()}
    if hasattr(value, "item"):  # numpy scalar
        return _json_value(value.item(), where)
    raise TypeError(f"{where} must hold JSON values (str, number, bool, None, list, dict), got {type(value).__name__}")


def json_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Algorithm parameters as Provenance stores them: keys sorted, JSON values (for comparing with a record)."""
    return {str(k): _json_value(v, "algorithm_params") for k, v in sorted(params.items())}


@dataclass(frozen=True)
class Provenance:
    """Where a calibration table came from, for checking it against a model later.

    A flat, JSON-friendly record. The caller computes the hashes; this class only
    stores and validates them.

    Attributes:
        model_graph_sha256: ModelFingerprint.graph of the calibrated model.
        model_weights_sha256: ModelFingerprint.weights of the calibrated model.
        tensor_names_sha256: names_sha256() of the calibrated tensor names.
        algorithm: range algorithm name (one of known_algorithms()).
        num_samples: calibration samples fed through the model.
        trtq_version: trtq version that calibrated.
        data_sha256: hash of the calibration data (sample keys, sizes, mtimes), or None.
        algorithm_params: every parameter the algorithm ran with (e.g. {"percentile": 99.99}), keys
            sorted; a cache recording other parameters than asked for is not reused.
        num_bins: histogram bins per tensor, or None for non-histogram methods.
        onnxruntime_version: ONNX Runtime version that ran the model, or None.
        random_data: the statistics come from random inputs the user explicitly allowed.
        method_counts: `auto` only: candidate method -> number of tensors it won, most first.
        stats_file: absolute path of the file holding the statistics the ranges were made from
            (--save-stats, or the only --load-stats file), or None; ranges for other settings can be
            made from it without running the model.
        left_out: tensor -> why it has no range although it is a calibrated tensor of the model: its
            data held attention-mask values (-inf, huge negative fills) and no Q/DQ pair reads it
            (trtq.calibration.collect). A cache lacking exactly these tensors still fits the model.
        data_parts: sha256 of each part of the calibration data ("samples", "contents", "preprocess";
            trtq.data.fingerprint.data_parts), so that a cache not reused can say which part changed;
            empty in older sidecars and for streamed data.
        preprocess: the preprocessing settings the images were read with, or None (NumPy data, or an
            older sidecar); names the settings that changed.
    """

    model_graph_sha256: str
    model_weights_sha256: str
    tensor_names_sha256: str
    algorithm: str
    num_samples: int
    trtq_version: str = __version__
    data_sha256: str | None = None
    algorithm_params: dict[str, Any] = field(default_factory=dict)
    num_bins: int | None = None
    onnxruntime_version: str | None = None
    random_data: bool = False
    method_counts: dict[str, int] = field(default_factory=dict)
    stats_file: str | None = None
    left_out: dict[str, str] = field(default_factory=dict)
    data_parts: dict[str, str] = field(default_factory=dict)
    preprocess: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "algorithm_params", json_params(self.algorithm_params))
        object.__setattr__(self, "method_counts", {str(k): int(v) for k, v in self.method_counts.items()})
        # keys sorted, as a statistics file stores them: the same run gives the same sidecar bytes
        object.__setattr__(self, "data_parts", {str(k): v for k, v in sorted(self.data_parts.items())})
        if self.preprocess is not None:
            object.__setattr__(self, "preprocess", dict(sorted(self.preprocess.items())))

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict, with "schema" first."""
        data: dict[str, Any] = {"schema": SCHEMA_VERSION}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            data[f.name] = dict(value) if isinstance(value, dict) else value
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "provenance") -> Provenance:
        """Rebuild from `to_dict()` output.

        Raises:
            CacheError: not a dict, wrong schema, an unknown or missing key, or a value of the wrong type.
        """
        if not isinstance(data, Mapping):
            raise CacheError(f"{source} must be a JSON object, got {type(data).__name__}")
        check_schema(data, source)
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = [k for k in data if k != "schema" and k not in known]
        if unknown:
            raise CacheError(f"{source} has unknown key {unknown[0]!r}",
                             hint=f"known keys: schema, {', '.join(known)}")
        required = [f.name for f in known.values()
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        missing = [k for k in required if k not in data]
        if missing:
            raise CacheError(f"{source} lacks key {missing[0]!r}", hint="write it again with trtq")
        kwargs = {k: v for k, v in data.items() if k != "schema"}
        _check_types(kwargs, source)
        return cls(**kwargs)


# Expected JSON types of the Provenance fields (None allowed where the field is optional).
_STR_FIELDS = ("model_graph_sha256", "model_weights_sha256", "tensor_names_sha256", "algorithm", "trtq_version")
_OPTIONAL_STR_FIELDS = ("data_sha256", "onnxruntime_version", "stats_file")


def _check_types(values: Mapping[str, Any], source: str) -> None:
    def bad(key: str, want: str) -> CacheError:
        return CacheError(f"{source} key {key!r} must be {want}, got {values[key]!r}")

    for key, value in values.items():
        if key in _STR_FIELDS and not isinstance(value, str):
            raise bad(key, "a string")
        if key in _OPTIONAL_STR_FIELDS and value is not None and not isinstance(value, str):
            raise bad(key, "a string or null")
        if key == "num_samples" and (isinstance(value, bool) or not isinstance(value, int)):
            raise bad(key, "an integer")
        if key == "num_bins" and value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise bad(key, "an integer or null")
        if key == "random_data" and not isinstance(value, bool):
            raise bad(key, "true or false")
        if key == "algorithm_params" and not isinstance(value, dict):
            raise bad(key, "an object")
        if key == "method_counts" and not (isinstance(value, dict) and all(
                isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in value.values())):
            raise bad(key, "an object of counts")
        if key == "data_parts" and not (isinstance(value, dict) and all(isinstance(v, str) for v in value.values())):
            raise bad(key, "an object of strings")
        if key == "preprocess" and value is not None and not isinstance(value, dict):
            raise bad(key, "an object or null")
        if key == "left_out" and not (isinstance(value, dict) and all(isinstance(v, str) for v in value.values())):
            raise bad(key, "an object of strings")


def check_schema(data: Mapping[str, Any], source: str) -> None:
    """Raise CacheError unless `data["schema"]` is the schema version this trtq reads."""
    schema = data.get("schema")
    if schema is None:
        raise CacheError(f"{source} has no 'schema' key", hint="it was not written by trtq; convert it with trtq")
    if schema != SCHEMA_VERSION:
        raise CacheError(f"{source} has schema {schema!r}, this trtq reads schema {SCHEMA_VERSION}",
                         hint="upgrade trtq, or recalibrate")


@dataclass(frozen=True)
class CalibrationTable:
    """Symmetric ranges of a model's activations.

    Attributes:
        amax: tensor name -> symmetric amax (scale = amax / 127 for INT8), in the
            order the caller gives (graph order); writers keep this order.
        algorithm: trtq range algorithm name (one of known_algorithms()).
        trt_version: TensorRT version the table was read from or is meant for (e.g. "10.16.1"), or None.
        provenance: where it came from, or None (e.g. a cache TensorRT wrote).
        trt_algorithm: calibrator name of the TensorRT header it was read from
            (e.g. "EntropyCalibration2"), or None.
    """

    amax: dict[str, float]
    algorithm: str = "unknown"
    trt_version: str | None = None
    provenance: Provenance | None = None
    trt_algorithm: str | None = None

    def __post_init__(self) -> None:
        amax: dict[str, float] = {}
        for name, value in self.amax.items():
            if not isinstance(name, str) or not name:
                raise ValueError(f"tensor names must be non-empty strings, got {name!r}")
            amax[name] = float(value)
        object.__setattr__(self, "amax", amax)
        if not isinstance(self.algorithm, str) or not self.algorithm:
            raise ValueError(f"algorithm must be a non-empty string, got {self.algorithm!r}")

    def names(self) -> list[str]:
        """Tensor names in table order."""
        return list(self.amax)

    def scales(self) -> dict[str, float]:
        """Tensor name -> INT8 scale (amax / 127)."""
        return {name: amax / INT8_MAX for name, amax in self.amax.items()}

    def __len__(self) -> int:
        return len(self.amax)


def check_finite(table: CalibrationTable, what: str) -> None:
    """Raise CacheError naming the first tensor whose amax is NaN, infinite, zero or negative.

    Writers refuse those: a scale must be finite and positive (TensorRT rejects a zero scale and
    would divide by it), so no cache trtq writes can hold one.
    """
    for name, amax in table.amax.items():
        if not math.isfinite(amax) or amax <= 0:
            raise CacheError(f"cannot write {what}: amax of tensor {name!r} is {amax} (a scale must be finite "
                             "and positive)", hint="recalibrate; the statistics of that tensor are broken")
