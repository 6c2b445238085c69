"""One exception hierarchy; each class carries the CLI exit code it maps to.

Exit codes (documented in the README):
    0  success
    1  an accuracy gate failed
    2  usage or configuration error
    3  a dependency or device is missing
    4  bad model or bad data
    5  an output file cannot be written (disk full, read-only folder, a folder in the way)
    130 interrupted (Ctrl-C)
"""

from __future__ import annotations

import reprlib
from typing import Any

EXIT_OK = 0
EXIT_GATE_FAILED = 1
EXIT_USAGE = 2
EXIT_MISSING_DEPENDENCY = 3
EXIT_BAD_INPUT = 4
EXIT_OUTPUT = 5
EXIT_INTERRUPTED = 130


_SHOWN = 80  # characters of a value quoted in a message
_REPR = reprlib.Repr()  # keyword arguments only from Python 3.12
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother = 3, _SHOWN, _SHOWN
_REPR.maxlist, _REPR.maxdict, _REPR.maxlong = 8, 8, 40


def short_repr(value: Any) -> str:
    """repr(value), cut to a readable length (a message must stay one line, whatever the input)."""
    try:
        text = _REPR.repr(value).replace("\n", "\\n")
    except ValueError:  # an int too long for str() (Python's 4300-digit limit)
        text = f"<an integer of {value.bit_length()} bits>" if isinstance(value, int) else f"<{type(value).__name__}>"
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."


def first_line(exc: BaseException) -> str:
    """The first line of a third-party exception's message (ONNX Runtime's run to many lines), or its type."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class TrtqError(Exception):
    """Base of every error trtq raises on purpose.

    Args:
        message: what failed, naming the value that caused it.
        hint: how to fix it; the CLI prints it after the message.
    """

    exit_code = EXIT_BAD_INPUT

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def one_line(self) -> str:
        """The message and hint as the single line the CLI prints."""
        text = self.message.rstrip(".")
        return f"{text}; {self.hint}" if self.hint else text


class ConfigError(TrtqError):
    """A config file, preset or option value is wrong."""

    exit_code = EXIT_USAGE


class MissingDependencyError(TrtqError):
    """An optional package, TensorRT, CUDA or a GPU is needed but absent."""

    exit_code = EXIT_MISSING_DEPENDENCY


class ModelError(TrtqError):
    """The ONNX model cannot be read or does not fit what was asked."""

    exit_code = EXIT_BAD_INPUT


class DataError(TrtqError):
    """Calibration or evaluation data is missing, corrupt or the wrong shape."""

    exit_code = EXIT_BAD_INPUT


class CacheError(TrtqError):
    """A calibration cache is malformed or does not match the model."""

    exit_code = EXIT_BAD_INPUT


class OutputError(TrtqError):
    """An output file or folder cannot be written (disk full, read-only, permissions, a folder in the way)."""

    exit_code = EXIT_OUTPUT


class GateFailed(TrtqError):
    """An accuracy gate was not met."""

    exit_code = EXIT_GATE_FAILED
