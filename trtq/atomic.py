"""Atomic file writes: a failed or interrupted run leaves no partial artifact.

Each writer writes to a temporary file in the destination folder (same file
system, so the rename is atomic) and renames it over the target only once the
content is complete.

The file gets the mode a plain `open()` would give it: 0666 minus the umask for a
new file, the old file's mode when one is replaced (mkstemp's 0600 would make a
cache or model unreadable to a TensorRT or Triton container running as another
user). A failing write (disk full, read-only folder, a folder where the file
should be) is an OutputError naming the file, not an OSError traceback.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from trtq.errors import OutputError

_umask_lock = threading.Lock()
# Every file completed (renamed into place) since the last reset: a command that fails late says which
# of its outputs it kept (trtq.cli), so "no partial output" is never claimed for a half-done run.
_completed: list[Path] = []


def completed_files() -> list[Path]:
    """The files written (complete) since reset_completed(), in order, each once."""
    return list(dict.fromkeys(_completed))


def reset_completed() -> None:
    """Forget the files written so far (called when a command starts)."""
    _completed.clear()


def current_umask() -> int:
    """The process umask (os.umask can only be read by setting it, so set it back at once)."""
    with _umask_lock:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def output_mode(target: Path) -> int:
    """The permission bits `target` gets: an existing file's own, else 0666 minus the umask."""
    try:
        return stat.S_IMODE(os.stat(target).st_mode)
    except OSError:
        return 0o666 & ~current_umask()


def output_error(target: Path, exc: OSError) -> OutputError:
    """A one-line OutputError for an OSError met while writing `target`."""
    return OutputError(f"cannot write {target}: {exc.strerror or type(exc).__name__}",
                       hint="free disk space, or choose a writable folder (-o/--out-dir, --cache)")


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path; on success it replaces `target`, on error it is removed.

    Use it for writers that want a path rather than a file object (onnx.save,
    TensorRT serialisation).

    Raises:
        OutputError: the file cannot be written (an OSError of the folder, the temp file or the rename).
    """
    target = Path(target)
    if target.is_dir():
        raise OutputError(f"cannot write {target}: it is a folder", hint="give a file name")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.close(fd)
    except OSError as exc:
        raise output_error(target, exc) from None
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, output_mode(target))
        os.replace(tmp, target)
        _completed.append(target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise output_error(target, exc) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def check_writable(folder: str | os.PathLike[str], file: str | os.PathLike[str] | None = None) -> None:
    """Fail now, not after the long work, when files cannot be created in `folder`.

    Nothing is created: a missing folder is checked through its nearest existing parent (where
    the writer will make it), so a run that fails later leaves no empty folder behind.

    Args:
        folder: where the outputs go.
        file: an output file that must not be a folder, if any.

    Raises:
        OutputError: the folder (or a parent) is a file, refuses a new file, or `file` is a folder.
    """
    if file is not None and Path(file).is_dir():
        raise OutputError(f"cannot write {file}: it is a folder", hint="give a file name")
    existing = Path(folder)
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"cannot write into {folder}: {existing} is a file, not a folder",
                          hint="choose another output folder (-o/--out-dir, --cache)")
    try:
        with tempfile.TemporaryFile(prefix=".trtq-write-check.", dir=existing) as probe:
            probe.write(b"x")
            probe.flush()
    except OSError as exc:
        raise OutputError(f"output folder {existing} is not writable ({exc.strerror or type(exc).__name__})",
                          hint="choose a writable folder (-o/--out-dir, --cache) or fix its permissions") from None


@contextlib.contextmanager
def atomic_open(target: str | os.PathLike[str], mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temporary file for writing; it becomes `target` only on success."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes only, got mode {mode!r}")
    with atomic_path(target) as tmp:
        encoding = None if "b" in mode else "utf-8"
        with open(tmp, mode, encoding=encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())


def write_text(target: str | os.PathLike[str], text: str) -> None:
    """Write `text` to `target` atomically (UTF-8)."""
    with atomic_open(target, "w") as f:
        f.write(text)


def write_bytes(target: str | os.PathLike[str], data: bytes) -> None:
    """Write `data` to `target` atomically."""
    with atomic_open(target, "wb") as f:
        f.write(data)
