"""Samples from .npy/.npz files, read lazily (memory-mapped where the file allows it).

An .npz holds one array per model input, named after the input. A .npy feeds the single
input of a one-input model. An array of rank (input rank - 1) is one sample; an array of
the input's rank holds one sample per row of its first axis. An input of unknown rank is
taken to have samples along the first axis.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from trtq.data.npyfile import ArrayCache, Member, npy_member, npz_members
from trtq.data.source import UnreadableFile, check_shape, file_key
from trtq.errors import DataError
from trtq.onnx_model.model import TensorSpec

log = logging.getLogger(__name__)


def _members(path: Path, inputs: list[TensorSpec]) -> dict[str, Member]:
    """Input name -> the array feeding it in `path`.

    Raises:
        UnreadableFile: the file is not a readable .npy/.npz.
        DataError: the arrays do not match the model inputs by name.
    """
    names = [s.name for s in inputs]
    try:
        found = npz_members(path) if path.suffix.lower() == ".npz" else {"": npy_member(path)}
    except Exception as exc:  # numpy/zipfile raise ValueError, OSError, BadZipFile... for junk
        raise UnreadableFile(f"{path} is not a readable NumPy file ({type(exc).__name__}: {exc})",
                             hint="replace or delete the file, or pass --skip-bad-files") from None
    if "" in found:
        if len(names) != 1:
            raise DataError(f"{path} is a .npy file but the model has {len(names)} inputs ({', '.join(names)})",
                            hint=f"give .npz files with one array per input: np.savez(path, {names[0]}=..., ...)")
        return {names[0]: found[""]}
    for key in found:
        if key not in names:
            raise DataError(f"{path} has an array '{key}' that matches no model input (inputs: {', '.join(names)})",
                            hint="name each array after a model input")
    for name in names:
        if name not in found:
            raise DataError(f"{path} has no array for input '{name}' (it has {', '.join(found) or 'none'})",
                            hint=f"save the arrays named after the inputs: {', '.join(names)}")
    return {name: found[name] for name in names}


def _rows(path: Path, members: dict[str, Member], specs: dict[str, TensorSpec], key: str) -> int | None:
    """Samples in the file: None for one sample without a batch axis, else the first-axis length.

    Raises:
        DataError: an array fits neither form, the files' arrays disagree, or a dtype cannot be cast.
    """
    counts = set()
    for name, member in members.items():
        spec = specs[name]
        if member.dtype.hasobject or not np.can_cast(member.dtype, _target_dtype(spec, member), "same_kind"):
            raise DataError(f"{path}: array for input '{name}' is {member.dtype}, the input takes {spec.dtype}",
                            hint=f"save the array as {spec.dtype}")
        # rank R-1: one sample; rank R: samples along axis 0; any other rank is reported whole
        single = spec.shape is not None and len(member.shape) != len(spec.shape)
        rows = None if single or not member.shape else member.shape[0]
        sample_shape = member.shape if rows is None else member.shape[1:]
        check_shape(spec, sample_shape, key if rows is None else f"{key}:0",
                    hint="store one sample per array, or samples along a first axis")
        counts.add(rows)
    if len(counts) != 1:
        raise DataError(f"the arrays in {path} hold different sample counts ({sorted(map(str, counts))})",
                        hint="store the same number of samples along the first axis of every array")
    return counts.pop()


def _target_dtype(spec: TensorSpec, member: Member) -> np.dtype:
    return member.dtype if spec.dtype == np.dtype("O") else spec.dtype


class ArraySource:
    """Samples from .npy/.npz files; `skipped` lists files that could not be read at all."""

    def __init__(self, files: list[Path], root: Path, inputs: list[TensorSpec], skip_bad_files: bool) -> None:
        self._specs = {s.name: s for s in inputs}
        self._files: list[dict[str, Member]] = []
        self._index: list[tuple[int, int | None]] = []
        self.keys: list[str] = []
        self.skipped: list[tuple[str, str]] = []
        self._cache = ArrayCache()
        for path in files:
            key = file_key(path, root)
            try:
                members = _members(path, inputs)
            except UnreadableFile as exc:
                if not skip_bad_files:
                    raise
                log.warning("skipping %s", exc.message)
                self.skipped.append((key, exc.message))
                continue
            rows = _rows(path, members, self._specs, key)
            self._files.append(members)
            n = len(self._files) - 1
            if rows is None:
                self._index.append((n, None))
                self.keys.append(key)
            else:
                self._index.extend((n, row) for row in range(rows))
                self.keys.extend(f"{key}:{row}" for row in range(rows))
        where = root.name if root.is_file() else f"{root}/"
        self.description = (f"{len(self.keys)} sample(s) from {len(self._files)} NumPy file(s) in {where} -> "
                            f"input(s) {', '.join(self._specs)}")

    def __len__(self) -> int:
        return len(self.keys)

    def load(self, index: int) -> dict[str, np.ndarray]:
        file_index, row = self._index[index]
        sample = {}
        for name, member in self._files[file_index].items():
            try:
                array = self._cache.get(member)
                part = array if row is None else array[row]
                sample[name] = np.array(part, dtype=_target_dtype(self._specs[name], member))
            except Exception as exc:  # corrupt zip data, I/O errors
                raise UnreadableFile(f"{member.path} cannot be read ({type(exc).__name__}: {exc})",
                                     hint="replace or delete the file, or pass --skip-bad-files") from None
        return sample
