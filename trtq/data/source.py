"""What every data source offers, plus the pieces the sources share: listing files,
checking a sample against the model inputs, and concatenating sources."""

from __future__ import annotations

import bisect
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from trtq.errors import DataError
from trtq.onnx_model.model import TensorSpec

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
ARRAY_SUFFIXES = (".npy", ".npz")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm")


@runtime_checkable
class Source(Protocol):
    """Random access to preprocessed samples.

    Attributes:
        keys: one stable id per sample (a path relative to the data folder, 'a.npy:3',
            'clip.mp4#frame=30'); the eval split hashes these.
        description: one line saying what the samples are, for logs and the report.
    """

    keys: list[str]
    description: str

    def __len__(self) -> int:
        """Number of samples."""
        ...

    def load(self, index: int) -> dict[str, np.ndarray]:
        """Sample `index` as input name -> array without the batch axis, preprocessed.

        Raises:
            DataError: the file is unreadable (UnreadableFile) or does not fit the model.
        """
        ...


class UnreadableFile(DataError):
    """A file that cannot be decoded; the only error `skip_bad_files` skips.

    Shape and channel mismatches stay plain DataErrors: they come from the
    configuration, and skipping them would silently drop the whole data set.
    """


def is_fixed(dim: int | str) -> bool:
    """True for a known dimension (exporters write dynamic ones as names, '?', 0 or -1)."""
    return isinstance(dim, int) and dim > 0


def list_files(root: Path, suffixes: Sequence[str]) -> list[Path]:
    """Files under `root` (recursively) whose suffix is in `suffixes`, case-insensitive,
    sorted by relative path so the order never depends on the file system.

    Hidden files and folders (name starting with '.') are left out: they are editor
    or macOS metadata ('._photo.jpg'), not data.
    """
    found: list[Path] = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found.extend(Path(folder) / f for f in files
                     if not f.startswith(".") and Path(f).suffix.lower() in suffixes)
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def file_key(path: Path, root: Path) -> str:
    """The sample key of a file: its path relative to the data folder (its name for a single file)."""
    return path.name if path == root else path.relative_to(root).as_posix()


def check_shape(spec: TensorSpec, shape: tuple[int, ...], key: str, layout: str | None = None,
                hint: str | None = None) -> None:
    """Check the shape of one sample (no batch axis) against the fixed dims of input `spec`.

    Raises:
        DataError: rank or a fixed dimension differs, naming the input, what it expects and what it got.
    """
    if spec.shape is None:
        return
    expected = spec.shape[1:]
    fits = len(shape) == len(expected) and all(
        not is_fixed(d) or d == n for d, n in zip(expected, shape, strict=True))
    if not fits:
        what = f"{layout} {spec.dtype}" if layout else str(spec.dtype)
        got = "x".join(str(n) for n in shape) or "a scalar"
        raise DataError(f"input '{spec.name}' expects {spec.shape_str()} ({what}), sample {key} has {got}",
                        hint=hint or "give data of the model's input shape")


def check_sample(sample: dict[str, np.ndarray], specs: dict[str, TensorSpec], key: str,
                 layout: str | None = None, hint: str | None = None) -> None:
    """check_shape for every array of one sample."""
    for name, array in sample.items():
        check_shape(specs[name], array.shape, key, layout, hint)


class ConcatSource:
    """Several sources one after the other (e.g. the images and the videos of one folder)."""

    def __init__(self, parts: list[Source]) -> None:
        self.parts = parts
        self.keys = [key for part in parts for key in part.keys]
        self.description = "; ".join(part.description for part in parts)
        self._starts = []
        start = 0
        for part in parts:
            self._starts.append(start)
            start += len(part)
        self.skipped = [item for part in parts for item in getattr(part, "skipped", [])]

    def __len__(self) -> int:
        return len(self.keys)

    def load(self, index: int) -> dict[str, np.ndarray]:
        if not 0 <= index < len(self.keys):
            raise IndexError(index)
        part = bisect.bisect_right(self._starts, index) - 1
        return self.parts[part].load(index - self._starts[part])
