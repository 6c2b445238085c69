"""A TensorRT logger that keeps the error lines, so a failed build can say why."""

from __future__ import annotations

import logging
from collections import deque
from types import ModuleType
from typing import Any

_pylog = logging.getLogger("trtq.engine.tensorrt")

# Kept lines: enough to explain a failure, bounded for builds that log a lot.
_KEEP = 40


def make_trt_logger(trt: ModuleType) -> Any:
    """A trt.ILogger subclass instance that forwards to Python logging and keeps errors/warnings.

    The instance has `.errors` and `.warnings` (the last lines of each severity).
    """

    class CollectingLogger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)  # the bindings need the base __init__ called explicitly
            self.errors: deque[str] = deque(maxlen=_KEEP)
            self.warnings: deque[str] = deque(maxlen=_KEEP)

        def log(self, severity: Any, msg: str) -> None:
            if severity in (trt.ILogger.Severity.INTERNAL_ERROR, trt.ILogger.Severity.ERROR):
                self.errors.append(msg)
                _pylog.debug("TensorRT error: %s", msg)  # reported by the caller if the step fails
            elif severity == trt.ILogger.Severity.WARNING:
                self.warnings.append(msg)
                _pylog.warning("TensorRT: %s", msg)
            else:
                _pylog.debug("TensorRT: %s", msg)

    return CollectingLogger()


def explain(sink: Any, limit: int = 10) -> str:
    """The last error lines of `sink` (or its warnings when there are none) on one line."""
    lines = list(sink.errors) or list(sink.warnings)
    if not lines:
        return "TensorRT logged no error"
    return " | ".join(line.strip() for line in lines[-limit:])
