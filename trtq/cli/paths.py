"""Path options and arguments: `click.Path` types whose checks give trtq's one-line errors and exit codes.

click's own `click.Path(exists=True, dir_okay=False)` fails at parse time with a three-line usage
message and exit 2, whatever the path is for. A bad path is not a usage error here: a missing or
wrong-kind input is bad input (exit 4, ModelError / DataError / CacheError) and an output with a file
or folder in its way, or in a folder that refuses new files, cannot be written (exit 5, OutputError),
as README "Exit codes" says. So these types only convert at parse time; TrtqCommand.invoke runs their
checks once the command's parameters are all parsed (not for --print-config, which reads no file),
each ending in one `error: ...` line with a hint.

    @click.argument("model", type=InputPath("model file", ModelError, dir_okay=False))
    @click.option("-o", "--output", type=OutputPath(dir_okay=False))
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from trtq.errors import TrtqError


class CheckedPath(click.Path):
    """A click.Path whose checks run after parsing (see the module docstring); the value stays a string."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        return os.fspath(value)

    def check(self, value: str, flag: str) -> None:
        """Raise the TrtqError that fits when `value` (given to `flag`) cannot serve."""
        raise NotImplementedError


class InputPath(CheckedPath):
    """A file or folder that must exist and be readable.

    Args:
        what: how messages name it ("model file", "data path").
        error: the TrtqError subclass raised (its exit code is the command's).
        hint: what to do instead; `{flag}` is replaced by the option's flag.
        skip: values that are words, not paths (`--labels folders`).
    """

    def __init__(self, what: str, error: type[TrtqError], *, file_okay: bool = True, dir_okay: bool = True,
                 hint: str = "check the path", skip: tuple[str, ...] = ()) -> None:
        super().__init__(exists=True, file_okay=file_okay, dir_okay=dir_okay)
        self.what, self.error, self.hint, self.skip = what, error, hint, skip

    def check(self, value: str, flag: str) -> None:
        if value in self.skip:
            return
        path, hint = Path(value), self.hint.format(flag=flag)
        if not path.exists():
            raise self.error(f"{self.what} {value} does not exist", hint=hint)
        if path.is_dir() and not self.dir_okay:
            raise self.error(f"{self.what} {value} is a folder, not a file", hint=hint)
        if not path.is_dir() and not self.file_okay:
            raise self.error(f"{self.what} {value} is a file, not a folder", hint=hint)
        if not os.access(path, os.R_OK | (os.X_OK if path.is_dir() else 0)):
            raise self.error(f"{self.what} {value} cannot be read (permission denied)",
                             hint="fix its permissions, or give a copy you can read")


class InputPaths(InputPath):
    """Comma-separated InputPath values (`--load-stats a.npz,b.npz`); the value stays the string given."""

    def check(self, value: str, flag: str) -> None:
        for part in (p.strip() for p in value.split(",")):
            if part:
                super().check(part, flag)


class OutputPath(CheckedPath):
    """A file (dir_okay=False) or folder (file_okay=False) trtq writes, made if missing: it must not
    have a file or folder in its way, and its folder (or the nearest one that exists) must take new files.
    A file that exists may also be read first (a cache, a timing cache)."""

    def __init__(self, *, file_okay: bool = True, dir_okay: bool = True) -> None:
        super().__init__(file_okay=file_okay, dir_okay=dir_okay, writable=True)

    def check(self, value: str, flag: str) -> None:
        from trtq.atomic import check_writable
        from trtq.errors import OutputError

        path = Path(value)
        if not self.file_okay:  # a folder
            check_writable(path)
            return
        if path.is_dir():
            raise OutputError(f"cannot write {flag} {value}: it is a folder", hint="give a file name")
        check_writable(path.parent, path)


def check_paths(ctx: click.Context) -> None:
    """Run the checks of every CheckedPath parameter of `ctx`'s command that was given, in their order."""
    for param in ctx.command.params:
        if not isinstance(param.type, CheckedPath) or param.name is None:
            continue
        values = ctx.params.get(param.name)
        flag = param.opts[0] if isinstance(param, click.Option) else param.human_readable_name
        for value in values if isinstance(values, (tuple, list)) else [values]:
            if value is not None:
                param.type.check(value, flag)


DATA_HINT = "give {flag} an image folder or file, .npy/.npz files, a video or a data-loader script (.py)"


def model_file(hint: str = "check the path to the .onnx file") -> InputPath:
    """An ONNX model (or engine) argument: a file that exists (else ModelError, exit 4)."""
    from trtq.errors import ModelError

    return InputPath("model file", ModelError, dir_okay=False, hint=hint)


def data_path() -> InputPath:
    """Data to read: an image folder or file, arrays, a video or a loader script (else DataError, exit 4)."""
    from trtq.errors import DataError

    return InputPath("data path", DataError, hint=DATA_HINT)


def cache_file() -> InputPath:
    """A calibration cache or table to read (else CacheError, exit 4)."""
    from trtq.errors import CacheError

    return InputPath("calibration cache", CacheError, dir_okay=False)
