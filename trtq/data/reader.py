"""Batches from a Source: samples loaded in worker threads, a bounded number ahead.

Memory: at most `prefetch` samples are loaded ahead (two batches by default) plus the
batch being filled, whatever the number of samples.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from trtq.data.source import Source, UnreadableFile
from trtq.errors import ConfigError, DataError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Batch:
    """One batch: input name -> array with the batch axis first, and the key of each sample."""

    feeds: dict[str, np.ndarray]
    keys: list[str]


def _ahead(load: Callable[[int], dict[str, np.ndarray]], indices: list[int], workers: int,
           depth: int) -> Iterator[tuple[int, Future]]:
    """(index, future of load(index)) in order, with at most `depth` loads submitted ahead."""
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="trtq-data") as pool:
        pending: deque[tuple[int, Future]] = deque()
        upcoming = iter(indices)
        try:
            for index in upcoming:
                pending.append((index, pool.submit(load, index)))
                if len(pending) >= depth:
                    break
            while pending:
                item = pending.popleft()
                following = next(upcoming, None)
                if following is not None:
                    pending.append((following, pool.submit(load, following)))
                yield item
        finally:  # the consumer stopped early or a load failed: drop what is queued
            for _, future in pending:
                future.cancel()


def _signature(sample: dict[str, np.ndarray]) -> tuple:
    return tuple((name, array.shape, array.dtype.str) for name, array in sample.items())


def _stack(samples: list[dict[str, np.ndarray]], keys: list[str],
           shapes: dict[str, list[tuple[int, ...]]]) -> Batch:
    """One batch of `samples`; appends each input's batch shape to `shapes`."""
    feeds = {name: np.stack([s[name] for s in samples]) for name in samples[0]}
    for name, array in feeds.items():
        shapes.setdefault(name, []).append(array.shape)
    return Batch(feeds, list(keys))


class DataReader:
    """Iterable of Batch over `indices` of `source`, in index order; can be iterated again.

    Args:
        source: where samples come from.
        indices: which samples, in order (None: all).
        batch_size: samples per batch; the last batch may be smaller, and a batch also ends
            early where the sample shape changes (dynamic model axes), since only samples of
            one shape can be stacked.
        workers: loader threads (0: load in the iterating thread).
        skip_bad_files: skip unreadable files (logged, listed in `skipped`) instead of failing.
        prefetch: samples loaded ahead (default two batches).
    """

    def __init__(self, source: Source, indices: list[int] | None, batch_size: int, workers: int = 4,
                 skip_bad_files: bool = False, prefetch: int | None = None) -> None:
        if batch_size < 1:
            raise ConfigError(f"--batch-size must be at least 1, got {batch_size}")
        if workers < 0:
            raise ConfigError(f"--workers must be 0 or more, got {workers}")
        self.source = source
        self.indices = list(range(len(source))) if indices is None else list(indices)
        if any(not 0 <= i < len(source) for i in self.indices):
            raise IndexError(f"sample indices must be in 0..{len(source) - 1}")
        self.batch_size = batch_size
        self.workers = workers
        self.skip_bad_files = skip_bad_files
        self.prefetch = max(prefetch if prefetch is not None else 2 * batch_size, 1)
        self.skipped: list[tuple[str, str]] = []
        # Input name -> shape of every batch of the last complete pass ({} until one completes).
        # Recorded while batches are yielded, so e.g. engine profiles can cover every shape
        # calibration saw (dynamic sequence lengths, image sizes) without decoding the data again.
        self.batch_shapes: dict[str, list[tuple[int, ...]]] = {}

    @property
    def num_samples(self) -> int:
        """Samples this reader yields (before any are skipped)."""
        return len(self.indices)

    @property
    def keys(self) -> list[str]:
        """The key of every sample, in the order batches yield them."""
        return [self.source.keys[i] for i in self.indices]

    @property
    def description(self) -> str:
        return self.source.description

    def __len__(self) -> int:
        """Number of batches if no batch ends early."""
        return -(-len(self.indices) // self.batch_size)

    def feed_dicts(self) -> FeedDicts:
        """The batches as plain feed dicts, as Polygraphy and the TensorRT calibrators take them."""
        return FeedDicts(self)

    def _samples(self) -> Iterator[tuple[int, dict[str, np.ndarray] | UnreadableFile]]:
        """(index, sample or the UnreadableFile it raised), in order."""
        if self.workers == 0:
            for index in self.indices:
                try:
                    yield index, self.source.load(index)
                except UnreadableFile as exc:
                    yield index, exc
            return
        for index, future in _ahead(self.source.load, self.indices, self.workers, self.prefetch):
            try:
                yield index, future.result()
            except UnreadableFile as exc:
                yield index, exc

    def __iter__(self) -> Iterator[Batch]:
        self.skipped = []
        shapes: dict[str, list[tuple[int, ...]]] = {}
        samples: list[dict[str, np.ndarray]] = []
        keys: list[str] = []
        read = 0
        for index, sample in self._samples():
            key = self.source.keys[index]
            if isinstance(sample, UnreadableFile):
                if not self.skip_bad_files:
                    raise sample
                log.warning("skipping %s", sample.message)
                self.skipped.append((key, sample.message))
                continue
            if samples and _signature(sample) != _signature(samples[0]):
                yield _stack(samples, keys, shapes)
                samples, keys = [], []
            samples.append(sample)
            keys.append(key)
            read += 1
            if len(samples) == self.batch_size:
                yield _stack(samples, keys, shapes)
                samples, keys = [], []
        if samples:
            yield _stack(samples, keys, shapes)
        self.batch_shapes = shapes
        if read == 0 and self.skipped:
            reason = self.skipped[0][1]
            raise DataError(f"all {len(self.skipped)} samples were unreadable (first: {reason})",
                            hint="check the data path and files")


class FeedDicts:
    """A DataReader's batches as `{input name: array}` dicts; re-iterable, with a length."""

    def __init__(self, reader: DataReader) -> None:
        self.reader = reader

    def __len__(self) -> int:
        return len(self.reader)

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        return (batch.feeds for batch in self.reader)
