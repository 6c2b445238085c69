"""Save, load and merge sets of observers (tensor name -> Observer) as one .npz file.

Layout of the .npz (no pickles, so `np.load(allow_pickle=False)` reads it):

    format            "trtq-observers"          format_version   1
    names/utf8        uint8: the tensor names, UTF-8, concatenated
    names/lengths     int64: byte length of each name
    meta/keys/...     the same two arrays for the metadata keys
    meta/values/...   and for the metadata values
    <i>/<field>       field of the i-th observer's to_dict() (scalars as 0-d arrays)

Tensor names may contain any character ('/', ':', unicode, NUL), so they are
never used in keys; numpy's own string arrays would drop trailing NULs.
The file is written to a temporary file in the target folder and renamed over
the target only when complete.
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from trtq.calibrators.histogram import HistogramObserver
from trtq.calibrators.observers import EmaMinMaxObserver, MinMaxObserver, Observer
from trtq.calibrators.stats import TensorStats
from trtq.errors import CacheError

FORMAT = "trtq-observers"
FORMAT_VERSION = 1

# Serialized 'type' -> class, for load_observers.
OBSERVER_TYPES: dict[str, type[Observer]] = {
    cls.kind: cls for cls in (MinMaxObserver, EmaMinMaxObserver, HistogramObserver, TensorStats)
}

_HINT = "re-create it with 'trtq calibrate --save-stats' or remove it from --load-stats"


def save_observers(path: str | os.PathLike[str], observers: Mapping[str, Observer],
                   meta: Mapping[str, str] | None = None) -> None:
    """Write `observers` and string metadata to the .npz file `path`, atomically.

    Args:
        path: target file; its folder is created if missing. The name is used as given
            (numpy's habit of appending '.npz' does not apply).
        observers: tensor name -> observer (any class of OBSERVER_TYPES).
        meta: free-form strings stored with them (e.g. model fingerprint, trtq version).
    """
    meta = dict(meta or {})
    arrays: dict[str, np.ndarray] = {"format": np.array(FORMAT), "format_version": np.array(FORMAT_VERSION)}
    arrays.update(_pack("names", list(observers)))
    arrays.update(_pack("meta/keys", [str(k) for k in meta]))
    arrays.update(_pack("meta/values", [str(v) for v in meta.values()]))
    for i, observer in enumerate(observers.values()):
        for field, value in observer.to_dict().items():
            arrays[f"{i}/{field}"] = np.asarray(value)
    _write_atomically(Path(path), arrays)


def load_observers(path: str | os.PathLike[str]) -> tuple[dict[str, Observer], dict[str, str]]:
    """Read a file written by `save_observers`.

    Returns:
        (tensor name -> observer, metadata), in the order they were saved.

    Raises:
        CacheError: the file is missing, not such an .npz, or its content is inconsistent.
    """
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except FileNotFoundError:
        raise CacheError(f"statistics file {os.fspath(path)} does not exist", hint=_HINT) from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise CacheError(f"statistics file {os.fspath(path)} is not a readable .npz: {exc}", hint=_HINT) from None
    try:
        return _decode(arrays)
    except (KeyError, ValueError, TypeError, UnicodeDecodeError) as exc:
        raise CacheError(f"statistics file {os.fspath(path)} is malformed: {exc}", hint=_HINT) from None


def merge_observer_sets(a: Mapping[str, Observer], b: Mapping[str, Observer]) -> dict[str, Observer]:
    """Merge two observer sets per tensor into a new set; the inputs are left unchanged.

    A tensor present in only one set is kept as is (copied). Order: a's tensors, then b's new ones.

    Raises:
        ValueError: the observers of one tensor cannot be merged (type or settings differ);
            the message names the tensor.
    """
    merged: dict[str, Observer] = {name: copy_observer(obs) for name, obs in a.items()}
    for name, obs in b.items():
        if name not in merged:
            merged[name] = copy_observer(obs)
            continue
        try:
            merged[name].merge(obs)
        except ValueError as exc:
            raise ValueError(f"tensor '{name}': {exc}") from None
    return merged


def copy_observer(observer: Observer) -> Observer:
    """An independent copy of `observer` (through its dict form)."""
    return observer_from_dict(observer.to_dict())


def observer_from_dict(d: Mapping[str, Any]) -> Observer:
    """Rebuild any observer from its to_dict() form, dispatching on its 'type'."""
    kind = str(d.get("type", ""))
    if kind not in OBSERVER_TYPES:
        raise ValueError(f"unknown observer type '{kind}' (known: {', '.join(OBSERVER_TYPES)})")
    observer: Observer = OBSERVER_TYPES[kind].from_dict(dict(d))
    return observer


def _decode(arrays: dict[str, np.ndarray]) -> tuple[dict[str, Observer], dict[str, str]]:
    if "format" not in arrays or str(arrays["format"]) != FORMAT:
        raise ValueError(f"not a {FORMAT} file")
    version = int(arrays["format_version"])
    if version != FORMAT_VERSION:
        raise ValueError(f"format version {version} is not supported (this trtq reads {FORMAT_VERSION})")
    names = _unpack(arrays, "names")
    meta = dict(zip(_unpack(arrays, "meta/keys"), _unpack(arrays, "meta/values"), strict=True))
    fields: list[dict[str, Any]] = [{} for _ in names]
    for key, value in arrays.items():
        index, sep, field = key.partition("/")
        if sep and index.isdigit():
            if int(index) >= len(names):
                raise ValueError(f"entry '{key}' has no tensor name")
            fields[int(index)][field] = value.item() if value.ndim == 0 else value
    observers = {}
    for name, d in zip(names, fields, strict=True):
        try:
            observers[name] = observer_from_dict(d)
        except (KeyError, ValueError, TypeError) as exc:
            raise ValueError(f"tensor '{name}': {exc!r}") from None
    return observers, meta


def _pack(prefix: str, strings: list[str]) -> dict[str, np.ndarray]:
    encoded = [s.encode("utf-8") for s in strings]
    return {f"{prefix}/utf8": np.frombuffer(b"".join(encoded), dtype=np.uint8),
            f"{prefix}/lengths": np.array([len(e) for e in encoded], dtype=np.int64)}


def _unpack(arrays: dict[str, np.ndarray], prefix: str) -> list[str]:
    data = arrays[f"{prefix}/utf8"].astype(np.uint8).tobytes()
    lengths = arrays[f"{prefix}/lengths"].astype(np.int64)
    if (lengths < 0).any() or int(lengths.sum()) != len(data):
        raise ValueError(f"'{prefix}' string table is inconsistent")
    ends = np.cumsum(lengths)
    return [data[end - n : end].decode("utf-8") for n, end in zip(lengths.tolist(), ends.tolist(), strict=True)]


def _write_atomically(path: Path, arrays: dict[str, np.ndarray]) -> None:
    # trtq.atomic is above this package, so the same temp-file + os.replace pattern is repeated here.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)  # type: ignore[arg-type]  # no key is named allow_pickle
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
