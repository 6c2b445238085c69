"""One process-wide TensorRT logger that keeps the error lines, so a failed build can say why.

TensorRT keeps the logger it was first given for as long as any TensorRT object lives (builders,
parsers, runtimes share it), so a new logger per build would not see later builds' errors. NVIDIA's
samples and Polygraphy (`polygraphy.backend.trt.util.get_trt_logger`) create one per process; so do we,
and each build starts by clearing the kept lines (`trt_logger(trt, fresh=True)`).
"""

from __future__ import annotations

import logging
from collections import deque
from types import ModuleType
from typing import Any

_pylog = logging.getLogger("trtq.engine.tensorrt")

# Kept lines: enough to explain a failure, bounded for builds that log a lot.
_KEEP = 40

# tensorrt module -> its logger (one TensorRT per process in practice; the test stand-ins make several).
_LOGGERS: dict[int, tuple[ModuleType, Any]] = {}


def trt_logger(trt: ModuleType, *, fresh: bool = False) -> Any:
    """The process-wide logger for `trt` (created on first use); `fresh` forgets the kept lines first."""
    entry = _LOGGERS.get(id(trt))
    if entry is None or entry[0] is not trt:
        entry = _LOGGERS[id(trt)] = (trt, make_trt_logger(trt))
    sink = entry[1]
    if fresh:
        sink.errors.clear()
        sink.warnings.clear()
    return sink


def make_trt_logger(trt: ModuleType) -> Any:
    """A new trt.ILogger subclass instance that forwards to Python logging and keeps errors/warnings.

    Use `trt_logger` (the process-wide one) rather than this.

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
