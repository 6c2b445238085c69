"""Lazy access to the arrays in .npy and .npz files: headers without data, memory maps for data.

A .npy file is opened with np.load(mmap_mode='r'). An .npz written by np.savez stores its
members uncompressed, so each member is memory-mapped straight out of the zip at its data
offset; only members of np.savez_compressed files must be decompressed whole, and those are
held one file at a time (see ArrayCache).
"""

from __future__ import annotations

import struct
import threading
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

_LOCAL_HEADER = struct.Struct("<4s22xHH")  # signature, ..., file name length, extra field length
_LOCAL_MAGIC = b"PK\x03\x04"


@dataclass(frozen=True)
class Member:
    """One array: a whole .npy file, or one entry of an .npz.

    Attributes:
        path: the file.
        name: the array's name inside an .npz (None for .npy).
        shape, dtype, fortran: from the .npy header.
        offset: byte offset of the data in `path` when it can be memory-mapped, else None.
    """

    path: Path
    name: str | None
    shape: tuple[int, ...]
    dtype: np.dtype
    fortran: bool
    offset: int | None


def _read_header(stream) -> tuple[tuple[int, ...], bool, np.dtype]:
    version = np.lib.format.read_magic(stream)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
    else:
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream)
    return tuple(shape), bool(fortran), np.dtype(dtype)


def npy_member(path: Path) -> Member:
    """The header of a .npy file (raises ValueError/OSError for junk)."""
    with open(path, "rb") as stream:
        shape, fortran, dtype = _read_header(stream)
        return Member(path, None, shape, dtype, fortran, stream.tell())


def _data_start(raw, info: zipfile.ZipInfo) -> int:
    """Where the bytes of zip entry `info` start (after its local header)."""
    raw.seek(info.header_offset)
    magic, name_len, extra_len = _LOCAL_HEADER.unpack(raw.read(_LOCAL_HEADER.size))
    if magic != _LOCAL_MAGIC:
        raise ValueError(f"bad zip local header for {info.filename}")
    return info.header_offset + _LOCAL_HEADER.size + name_len + extra_len


def npz_members(path: Path) -> dict[str, Member]:
    """Headers of every array in an .npz, by name (raises ValueError/OSError/BadZipFile for junk)."""
    members = {}
    with zipfile.ZipFile(path) as archive, open(path, "rb") as raw:
        for info in archive.infolist():
            if info.is_dir() or not info.filename.endswith(".npy"):
                continue
            with archive.open(info) as stream:
                shape, fortran, dtype = _read_header(stream)
                header_len = stream.tell()
            offset = None
            if info.compress_type == zipfile.ZIP_STORED and not info.flag_bits & 0x1:  # stored, not encrypted
                offset = _data_start(raw, info) + header_len
            members[info.filename[:-4]] = Member(path, info.filename[:-4], shape, dtype, fortran, offset)
    return members


def open_member(member: Member) -> np.ndarray:
    """The array of `member`: a read-only memory map where possible, else decompressed in memory."""
    if member.name is None:
        return np.load(member.path, mmap_mode="r", allow_pickle=False)
    if member.offset is not None:
        if int(np.prod(member.shape)) == 0:
            return np.empty(member.shape, member.dtype)
        return np.memmap(member.path, dtype=member.dtype, mode="r", offset=member.offset, shape=member.shape,
                         order="F" if member.fortran else "C")
    with np.load(member.path, allow_pickle=False) as npz:
        return npz[member.name]


class ArrayCache:
    """Open arrays, least recently used dropped first.

    Memory maps cost address space and one file descriptor each; decompressed members cost
    their size in memory, so those of one file only are kept.
    """

    def __init__(self, max_open: int = 8) -> None:
        self._max_open = max_open
        self._open: OrderedDict[Member, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, member: Member) -> np.ndarray:
        with self._lock:
            if member in self._open:
                self._open.move_to_end(member)
                return self._open[member]
        array = open_member(member)
        with self._lock:
            if member.offset is None and member.name is not None:
                for other in [m for m in self._open if m.offset is None and m.path != member.path]:
                    del self._open[other]
            self._open[member] = array
            while len(self._open) > self._max_open:
                self._open.popitem(last=False)
        return array
