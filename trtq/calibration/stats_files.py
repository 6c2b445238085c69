"""Observer statistics files: `trtq calibrate --save-stats FILE` and `--load-stats FILE[,FILE...]`.

A statistics file is the .npz of trtq.calibrators.save_observers (tensor name ->
TensorStats) with string metadata saying where the statistics came from (a
StatsRecord): sample count, data hash, model fingerprint. Files collected on
different parts of the data merge exactly (the histograms re-bin by powers of
two), so calibrating shards separately and merging gives the ranges one run over
all of them gives, in any merge order. Every metadata key is optional when
reading, so files written without it (or by save_observers directly) still load.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from trtq._version import __version__
from trtq.atomic import atomic_path
from trtq.calibrators import TensorStats, load_observers, merge_observer_sets, save_observers
from trtq.errors import CacheError, ConfigError
from trtq.onnx_model.model import ModelFingerprint

log = logging.getLogger(__name__)

_SHOWN = 5
_SAVE_HINT = "save them from this model with 'trtq calibrate MODEL --calib DATA --save-stats FILE'"
_FORCE_HINT = "collect the statistics again on this model, or pass --force to use them anyway"


@dataclass(frozen=True)
class StatsRecord:
    """Where a set of statistics came from (the metadata of a statistics file).

    Attributes:
        num_samples: samples that went through the model, or None if unknown.
        data_sha256: hash of the sample keys, or None if unknown.
        model_graph_sha256, model_weights_sha256: fingerprint of the model that ran, or None.
        onnxruntime_version: ONNX Runtime version that ran the model, or None.
        random_data: the statistics come from random inputs.
        data_parts: hash of each part of the data (trtq.data.fingerprint.data_parts), or empty if unknown.
        preprocess: the preprocessing settings images were read with, or None.
    """

    num_samples: int | None = None
    data_sha256: str | None = None
    model_graph_sha256: str | None = None
    model_weights_sha256: str | None = None
    onnxruntime_version: str | None = None
    random_data: bool = False
    data_parts: dict[str, str] = field(default_factory=dict)
    preprocess: dict[str, Any] | None = None

    def to_meta(self) -> dict[str, str]:
        """The string metadata save_observers stores (unknown values are left out; dicts as JSON)."""
        meta = {"trtq_version": __version__, "random_data": "true" if self.random_data else "false"}
        for key in ("num_samples", "data_sha256", "model_graph_sha256", "model_weights_sha256",
                    "onnxruntime_version"):
            value = getattr(self, key)
            if value is not None:
                meta[key] = str(value)
        if self.data_parts:
            meta["data_parts"] = json.dumps(self.data_parts, sort_keys=True)
        if self.preprocess is not None:
            meta["preprocess"] = json.dumps(self.preprocess, sort_keys=True)
        return meta

    @classmethod
    def from_meta(cls, meta: Mapping[str, str], source: str) -> StatsRecord:
        """Read the metadata of a statistics file; missing keys stay unknown.

        Raises:
            CacheError: num_samples is not a non-negative integer.
        """
        count = meta.get("num_samples")
        if count is not None and not (count.isdigit() and count.isascii()):
            raise CacheError(f"statistics file {source} has num_samples {count!r}, not a sample count",
                             hint=_SAVE_HINT)
        parts, preprocess = _json_meta(meta, "data_parts", source), _json_meta(meta, "preprocess", source)
        return cls(num_samples=None if count is None else int(count), data_sha256=meta.get("data_sha256"),
                   model_graph_sha256=meta.get("model_graph_sha256"),
                   model_weights_sha256=meta.get("model_weights_sha256"),
                   onnxruntime_version=meta.get("onnxruntime_version"),
                   random_data=meta.get("random_data") == "true",
                   data_parts={str(k): str(v) for k, v in (parts or {}).items()}, preprocess=preprocess)


def _json_meta(meta: Mapping[str, str], key: str, source: str) -> dict[str, Any] | None:
    """The JSON object stored under `key`, or None when absent.

    Raises:
        CacheError: the value is not a JSON object.
    """
    if key not in meta:
        return None
    try:
        value = json.loads(meta[key])
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise CacheError(f"statistics file {source} has a {key} entry that is not a JSON object", hint=_SAVE_HINT)
    return value


@dataclass
class LoadedStats:
    """The merged statistics of one or more files.

    Attributes:
        stats: tensor name -> merged observers, in the model's graph order.
        record: the merged record: summed sample count (None if a file lacks it), a data hash
            over the files' data hashes, random_data if any file has it.
        num_bins: histogram bins of the statistics.
        warnings: things the user should know (unknown sample counts, --force overrides, ...).
    """

    stats: dict[str, TensorStats]
    record: StatsRecord
    num_bins: int
    warnings: list[str] = field(default_factory=list)


def save_stats(path: str | os.PathLike[str], stats: Mapping[str, TensorStats], record: StatsRecord) -> None:
    """Write `stats` and `record` to the statistics file `path`, atomically."""
    # save_observers is atomic itself; atomic_path makes the target follow the rule every trtq artifact does.
    with atomic_path(path) as tmp:
        save_observers(tmp, stats, record.to_meta())
    log.info("saved statistics of %d tensors to %s", len(stats), path)


def load_stats(paths: Sequence[str | os.PathLike[str]], tensor_names: Sequence[str], *,
               fingerprint: ModelFingerprint, force: bool = False) -> LoadedStats:
    """Read statistics files, check them against the model and merge them.

    Args:
        paths: the files (merge order does not change the result).
        tensor_names: the model's calibrated tensors (trtq.onnx_model.tensors.activation_tensors), in graph order.
        fingerprint: the model's fingerprint, checked against each file's record when it has one.
        force: report a fingerprint mismatch as a warning instead of raising.

    Raises:
        ConfigError: no file given.
        CacheError: a file is missing, corrupt, holds other tensors than the model calibrates,
            was collected on another model (unless `force`), or cannot be merged with the others.
    """
    if not paths:
        raise ConfigError("no statistics file given", hint="pass --load-stats FILE[,FILE...]")
    merged: dict[str, TensorStats] = {}
    records: list[StatsRecord] = []
    warnings: list[str] = []
    for path in paths:
        source = os.fspath(path)
        observers, meta = load_observers(path)
        stats = _tensor_stats(observers, source)
        check_names(stats, tensor_names, source)
        record = StatsRecord.from_meta(meta, source)
        warnings += _check_model(record, fingerprint, source, force)
        try:
            merged = merge_observer_sets(merged, stats)  # type: ignore[assignment]
        except ValueError as exc:
            raise CacheError(f"statistics file {source} cannot be merged with {os.fspath(paths[0])}: {exc}",
                             hint="save every file with the same --num-bins and --method") from None
        records.append(record)
    record, record_warnings = merge_records(records, [os.fspath(p) for p in paths])
    ordered = {name: merged[name] for name in tensor_names}
    num_bins = next(iter(ordered.values())).hist.num_bins if ordered else 0
    return LoadedStats(ordered, record, num_bins, warnings + record_warnings)


def _tensor_stats(observers: Mapping[str, object], source: str) -> dict[str, TensorStats]:
    for name, observer in observers.items():
        if not isinstance(observer, TensorStats):
            raise CacheError(f"statistics file {source} holds a {type(observer).__name__} for tensor '{name}', "
                             "not the TensorStats trtq calibrate saves", hint=_SAVE_HINT)
    return dict(observers)  # type: ignore[arg-type]


def check_names(stats: Mapping[str, object], tensor_names: Sequence[str], source: str) -> None:
    """Raise CacheError unless the file holds exactly the model's calibrated tensors."""
    wanted = set(tensor_names)
    missing = [n for n in tensor_names if n not in stats]
    extra = [n for n in stats if n not in wanted]
    if not missing and not extra:
        return
    problems = []
    if missing:
        problems.append(f"it lacks {len(missing)} of the model's {len(tensor_names)} calibrated tensors: "
                        f"{_quote(missing)}")
    if extra:
        problems.append(f"{len(extra)} of its {len(stats)} tensors are not calibrated in the model: {_quote(extra)}")
    raise CacheError(f"statistics file {source} does not match the model: {'; '.join(problems)}",
                     hint=f"{_SAVE_HINT} and the same --tensors scope")


def _check_model(record: StatsRecord, fingerprint: ModelFingerprint, source: str, force: bool) -> list[str]:
    changed = [what for what, saved, now in (("graph", record.model_graph_sha256, fingerprint.graph),
                                             ("weights", record.model_weights_sha256, fingerprint.weights))
               if saved is not None and saved != now]
    if not changed:
        return []
    text = f"statistics file {source} was collected on another model (its {' and '.join(changed)} changed)"
    if not force:
        raise CacheError(text, hint=_FORCE_HINT)
    log.warning("%s; used anyway (--force)", text)
    return [f"{text}; used anyway (--force)"]


def merge_records(records: Sequence[StatsRecord], sources: Sequence[str]) -> tuple[StatsRecord, list[str]]:
    """One record for merged statistics: counts summed, data hashes combined order-independently.

    A single record is returned unchanged, so saving and loading one file keeps its provenance.
    """
    if len(records) == 1:
        merged = records[0]
    else:
        counts = [r.num_samples for r in records]
        hashes = [r.data_sha256 for r in records]
        versions = {r.onnxruntime_version for r in records}
        merged = StatsRecord(
            num_samples=None if None in counts else sum(c for c in counts if c is not None),
            data_sha256=None if None in hashes else _combined_hash([h for h in hashes if h is not None]),
            model_graph_sha256=records[0].model_graph_sha256, model_weights_sha256=records[0].model_weights_sha256,
            onnxruntime_version=versions.pop() if len(versions) == 1 else None,
            random_data=any(r.random_data for r in records),
            # shards are other samples each: their parts do not add up; one preprocessing if they agree
            preprocess=records[0].preprocess if all(r.preprocess == records[0].preprocess for r in records) else None,
        )
    warnings = [f"statistics file {s} does not record its sample count; the provenance counts it as 0"
                for r, s in zip(records, sources, strict=True) if r.num_samples is None]
    warnings += [f"statistics file {s} was collected on RANDOM data" for r, s in zip(records, sources, strict=True)
                 if r.random_data]
    return merged, warnings


def _combined_hash(hashes: list[str]) -> str:
    return hashlib.sha256("\n".join(sorted(hashes)).encode()).hexdigest()


def _quote(names: Sequence[str]) -> str:
    shown = ", ".join(repr(n) for n in names[:_SHOWN])
    return shown + (f", ... ({len(names) - _SHOWN} more)" if len(names) > _SHOWN else "")

