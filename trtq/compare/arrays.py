"""Evaluation data from NumPy files, for `trtq compare --data` until the trtq.data readers are wired in.

Accepted:
    x.npz            arrays named after the model inputs, samples along axis 0
    x.npy            one array for a single-input model, samples along axis 0
    folder/          every .npz/.npy file in it (sorted, recursively), each as above

Samples are regrouped into batches of `batch_size`; files are read one at a
time (.npy memory-mapped), so only the current file and batch are in memory.
Sample keys are "<file path relative to the folder>:<index in the file>" (for a
single file, its name), to match a labels file.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trtq.errors import DataError
from trtq.model import TensorSpec

SUFFIXES = (".npz", ".npy")
Feed = dict[str, np.ndarray]


@dataclass(frozen=True)
class ArrayData:
    """Batches of feed dicts from NumPy files; iterable more than once; len() = number of batches."""

    files: tuple[Path, ...]
    root: Path
    inputs: tuple[str, ...]
    batch_size: int
    sample_count: int

    def __len__(self) -> int:
        return -(-self.sample_count // self.batch_size)

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        pending: list[Feed] = []
        held = 0
        for path in self.files:
            arrays = _read(path, self.inputs)
            pending.append(arrays)
            held += _count(arrays, path)
            while held >= self.batch_size:
                batch, pending, held = _take(pending, self.batch_size)
                yield batch
        if held:
            yield _take(pending, held)[0]

    def keys(self) -> list[str]:
        """One key per sample, in the order the batches yield them."""
        keys: list[str] = []
        for path in self.files:
            name = path.relative_to(self.root).as_posix() if self.root != path else path.name
            keys.extend(f"{name}:{i}" for i in range(_count(_read(path, self.inputs), path)))
        return keys


def _take(pending: list[Feed], size: int) -> tuple[Feed, list[Feed], int]:
    """Split the first `size` samples off `pending`: (batch, rest, samples left)."""
    parts: list[Feed] = []
    need = size
    while need:
        head = pending[0]
        n = next(iter(head.values())).shape[0]
        if n <= need:
            parts.append(pending.pop(0))
            need -= n
        else:
            parts.append({k: v[:need] for k, v in head.items()})
            pending[0] = {k: v[need:] for k, v in head.items()}
            need = 0
    batch = {k: np.concatenate([np.asarray(p[k]) for p in parts]) for k in parts[0]}
    return batch, pending, sum(next(iter(p.values())).shape[0] for p in pending)


def _read(path: Path, inputs: tuple[str, ...]) -> dict[str, np.ndarray]:
    try:
        if path.suffix == ".npy":
            if len(inputs) != 1:
                raise DataError(f"{path} is a .npy file but the model has {len(inputs)} inputs",
                                hint=f"use .npz files with arrays named {', '.join(inputs)}")
            return {inputs[0]: np.load(path, mmap_mode="r", allow_pickle=False)}
        with np.load(path, allow_pickle=False) as npz:
            missing = [name for name in inputs if name not in npz.files]
            if missing:
                raise DataError(f"{path} has no array named '{missing[0]}' (it has {', '.join(npz.files)})",
                                hint=f"name the arrays after the model inputs: {', '.join(inputs)}")
            return {name: npz[name] for name in inputs}
    except DataError:
        raise
    except Exception as exc:  # numpy raises ValueError, OSError, BadZipFile... for junk
        raise DataError(f"{path} is not a readable NumPy file ({type(exc).__name__}: {exc})") from None


def _count(arrays: dict[str, np.ndarray], path: Path) -> int:
    counts = {a.shape[0] if a.ndim else None for a in arrays.values()}
    if None in counts or len(counts) != 1:
        raise DataError(f"the arrays in {path} do not share a sample count along axis 0",
                        hint="store samples along the first axis of every array")
    return int(next(iter(counts)))  # type: ignore[arg-type]


def open_arrays(path: str | Path, inputs: list[TensorSpec], batch_size: int) -> ArrayData:
    """Evaluation batches from a .npz/.npy file or a folder of them.

    Raises:
        DataError: the path does not exist, holds no .npz/.npy file, or a file does not fit the inputs.
    """
    path = Path(path)
    if batch_size < 1:
        raise DataError(f"batch size must be at least 1, got {batch_size}")
    if path.is_dir():
        files = tuple(sorted(p for p in path.rglob("*") if p.suffix in SUFFIXES and p.is_file()))
        root = path
    elif path.is_file() and path.suffix in SUFFIXES:
        files, root = (path,), path
    else:
        raise DataError(f"data {path} is not a .npz/.npy file or a folder of them",
                        hint="for now `trtq compare --data` reads NumPy files; see trtq.compare.arrays")
    if not files:
        raise DataError(f"folder {path} holds no .npz or .npy file")
    names = tuple(spec.name for spec in inputs)
    count = sum(_count(_read(f, names), f) for f in files)
    return ArrayData(files, root, names, batch_size, count)
