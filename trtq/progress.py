"""Progress bars for long work, on stderr, off with --quiet or when not wanted; one-line announcements
with timing for steps that have nothing to count."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from typing import Any

from tqdm import tqdm


def progress_bar(total: int | None, desc: str, unit: str = "sample", enabled: bool = True) -> Any:
    """A tqdm bar showing count, rate (e.g. samples/s) and ETA; a no-op bar when disabled."""
    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled, dynamic_ncols=True,
                leave=False, smoothing=0.1)


@contextlib.contextmanager
def timed_step(log: logging.Logger, text: str) -> Iterator[None]:
    """Log `text ...` before a step without a bar, and `text: N.N s` after it, so that no stretch of
    the console is silent (e.g. computing every tensor's range after the calibration bar)."""
    log.info("%s ...", text)
    start = time.perf_counter()
    yield
    log.info("%s: %.1f s", text, time.perf_counter() - start)
