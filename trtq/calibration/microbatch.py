"""Split batches into micro-batches so that the exposed activations alive at once fit a memory budget.

Calibration exposes every calibrated activation as a model output, so one batch
of 8 at 320x320 can hold over a gigabyte of activations, and two batches are
alive at once (one observed while the next runs). The budget bounds that: each
batch runs in parts small enough that ALIVE copies of a part's exposed outputs
fit the budget. The per-sample size is measured, not guessed: the very first part
is one sample, and every later part updates the estimate (inputs of varying
resolution only ever make it larger).

The split changes no result: the histograms do not depend on how the values are
batched, and the moving average takes one step per sample (calibrators.observers).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from trtq.data import Batch

log = logging.getLogger(__name__)

MIB = 1 << 20
DEFAULT_BUDGET_MIB = 512
# Copies of a part's exposed activations alive at once: the part being observed, and for the part
# being computed ONNX Runtime's buffers, their copy into numpy and the slack of its memory arena
# (which grows in powers of two). Measured on MobileNetV2 at 224x224, batch 8: with a factor of 2,
# --memory-budget 512 peaked at 1016 MiB RSS and 64 at 397 MiB.
ALIVE = 4


@dataclass
class Part:
    """One micro-batch and whether it ends its batch."""

    batch: Batch
    batch_end: bool


class MicroBatcher:
    """Cuts batches into parts whose exposed outputs fit `budget_bytes / ALIVE`.

    Args:
        budget_bytes: bytes of exposed activations allowed alive at once (None: no limit).
    """

    def __init__(self, budget_bytes: int | None) -> None:
        self.budget = budget_bytes
        self.per_sample = 0  # largest measured exposed-output bytes per sample
        self.logged_size: int | None = None

    def part_size(self, batch_size: int) -> int:
        """Samples in the next part of a batch (or of its rest) of `batch_size`."""
        if self.budget is None:
            return batch_size
        if not self.per_sample:
            return 1  # measure first
        largest = max(1, min(batch_size, self.budget // (ALIVE * self.per_sample)))
        parts = -(-batch_size // largest)
        return -(-batch_size // parts)  # even parts: 8 at most 7 a part runs as 4 + 4, not 7 + 1

    def measured(self, outputs: list[np.ndarray], samples: int) -> None:
        """Record the exposed outputs of a part of `samples` samples."""
        nbytes = sum(int(o.nbytes) for o in outputs if isinstance(o, np.ndarray))
        self.per_sample = max(self.per_sample, -(-nbytes // max(samples, 1)))

    def split(self, batch: Batch) -> Iterator[Part]:
        """The parts of `batch`, sized from what has been measured when each is cut."""
        n = _batch_size(batch)
        start = 0
        while start < n:
            size = self.part_size(n - start)
            if self.per_sample and size < n and start == 0:  # the split of a whole batch, not of its rest
                self._log(size, n)
            end = min(n, start + size)
            if start == 0 and end == n:
                yield Part(batch, True)
                return
            feeds = {name: array[start:end] for name, array in batch.feeds.items()}
            yield Part(Batch(feeds, batch.keys[start:end]), end == n)
            start = end

    def _log(self, size: int, batch_size: int) -> None:
        if self.logged_size == size:
            return
        self.logged_size = size
        log.info("batches of %d run in micro-batches of %d: %.0f MiB of exposed activations per sample, "
                 "--memory-budget %.0f MiB (results are the same)", batch_size, size,
                 self.per_sample / MIB, (self.budget or 0) / MIB)


def _batch_size(batch: Batch) -> int:
    if batch.keys:
        return len(batch.keys)
    return int(next(iter(batch.feeds.values())).shape[0])
