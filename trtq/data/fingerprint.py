"""data_fingerprint: one hash of everything that changes what the model sees during calibration.

A cache is reused only when its data fingerprint matches (trtq.calibrate), so the hash must
change whenever the ranges could: the selected samples (their keys, in order: --max-samples, the
evaluation split and its --seed, --video-stride), the bytes of every file they are read from (a
content hash: replacing an image under the same name is other data), and, for images and video,
the preprocessing that turns pixels into inputs (--mean/--std, size, resize mode, channel order,
layout, a preset's values). The batch size is left out: the statistics do not depend on it.

File hashes are remembered per process by (path, size, mtime, inode), so `trtq build`, which
asks more than once, reads each file once; a file that changed on disk is hashed again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from trtq.config import PreprocessConfig
from trtq.data.reader import DataReader
from trtq.data.source import Source
from trtq.errors import DataError

# Bumped when what the fingerprint covers changes, so older caches are made again, not trusted.
_VERSION = b"trtq-data-fingerprint-2\n"
_CHUNK = 1 << 20
_file_hashes: dict[tuple[str, int, int, int], str] = {}


def file_sha256(path: Path) -> str:
    """sha256 of the file's bytes (remembered while its size, mtime and inode stay the same).

    Raises:
        DataError: the file cannot be read.
    """
    try:
        info = os.stat(path)
        memo = (os.fspath(Path(path).resolve()), info.st_size, info.st_mtime_ns, info.st_ino)
        if memo in _file_hashes:
            return _file_hashes[memo]
        digest = hashlib.sha256()
        with open(path, "rb") as stream:
            while chunk := stream.read(_CHUNK):
                digest.update(chunk)
    except OSError as exc:
        raise DataError(f"data file {path} cannot be read ({exc.strerror})", hint="check the file") from None
    _file_hashes[memo] = digest.hexdigest()
    return _file_hashes[memo]


def _uses_pixels(source: Source) -> bool:
    """True when `source` (or a part of it) decodes images or video, so preprocessing applies."""
    parts = getattr(source, "parts", [source])
    return any(getattr(part, "pipeline", None) is not None for part in parts)


def data_fingerprint(reader: DataReader, preprocess: PreprocessConfig | None) -> str:
    """sha256 over the selected sample keys, their files' contents and (for pixels) the preprocessing.

    Args:
        reader: the calibration reader (its source and selected indices).
        preprocess: the resolved preprocessing settings (ignored for NumPy data, which is fed as is).
    """
    source = getattr(reader, "source", None)
    if source is None:  # a stream (loader script, reader object): its data are known only once read
        return hashlib.sha256(_VERSION + f"stream {reader.description}\n".encode()).hexdigest()
    digest = hashlib.sha256(_VERSION)
    if preprocess is not None and _uses_pixels(source):
        settings = json.dumps(dataclasses.asdict(preprocess), sort_keys=True, default=str)
        digest.update(f"preprocess {settings}\n".encode())
    samples, files = _selection(reader, source)
    digest.update(samples)
    for path in files:
        digest.update(f"file {file_sha256(path)}\n".encode())
    return digest.hexdigest()


def _selection(reader: DataReader, source: Source) -> tuple[bytes, list[Path]]:
    """What data_fingerprint hashes of the sample selection (a random source's seed, which makes the
    values, and the selected keys in order), and the files those samples read, each once."""
    lines = []
    seed = getattr(source, "seed", None)
    if seed is not None:
        lines.append(f"seed {seed}\n".encode())
    files_of = getattr(source, "files_of", None)
    files: dict[Path, None] = {}
    for index in reader.indices:
        lines.append(f"sample {source.keys[index]}\n".encode("utf-8", "surrogateescape"))
        if files_of is not None:
            files.update(dict.fromkeys(files_of(index)))
    return b"".join(lines), list(files)


def data_parts(reader: DataReader, preprocess: PreprocessConfig | None) -> dict[str, str]:
    """sha256 of each part data_fingerprint covers, so that a cache made from other data can say which
    part changed: "samples" (the selected keys in order, and a random source's seed), "contents" (the
    bytes of their files) and, for pixels, "preprocess" (the settings). Empty for a stream.
    """
    source = getattr(reader, "source", None)
    if source is None:
        return {}
    selection, files = _selection(reader, source)
    samples, contents = hashlib.sha256(_VERSION + selection), hashlib.sha256(_VERSION)
    for path in files:  # hashed once per process (file_sha256), so this costs no second read
        contents.update(f"file {file_sha256(path)}\n".encode())
    parts = {"samples": samples.hexdigest(), "contents": contents.hexdigest()}
    settings = preprocess_settings(reader, preprocess)
    if settings is not None:
        parts["preprocess"] = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()
    return parts


def preprocess_settings(reader: DataReader, preprocess: PreprocessConfig | None) -> dict[str, Any] | None:
    """The preprocessing settings as JSON data when they apply to `reader` (images or video), else None."""
    source = getattr(reader, "source", None)
    if preprocess is None or source is None or not _uses_pixels(source):
        return None
    loaded: dict[str, Any] = json.loads(json.dumps(dataclasses.asdict(preprocess), default=str))
    return loaded
