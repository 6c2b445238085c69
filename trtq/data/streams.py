"""Data readers people already have: a Polygraphy-style data-loader script, an ONNX Runtime
CalibrationDataReader, or any iterable of feed dicts, streamed batch by batch like the built-in readers.

A loader script is a Python file with a `load_data()` generator of feed dicts (input name -> array,
batch axis first), as `polygraphy run --data-loader-script` takes; `--calib loader.py` uses it. An
ONNX Runtime `CalibrationDataReader` (its `get_next()` returns a feed dict, then None) is read the
same way; it is rewound (its `rewind()`, where it has one) for every further pass. The batches are
used as they come: --batch-size and the preprocessing settings do not apply to them.

    reader = StreamReader(feed_factory("loader.py"), "loader script loader.py")
    for batch in reader:
        batch.feeds
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeGuard

import numpy as np

from trtq.data.reader import Batch, DataReader, FeedDicts
from trtq.errors import DataError

FeedFactory = Callable[[], Iterable[Mapping[str, Any]]]
LOADER_FUNCTION = "load_data"


def is_loader_script(path: object) -> TypeGuard[str | Path]:
    """True for a path naming a Python file (a data-loader script)."""
    return isinstance(path, (str, Path)) and Path(path).suffix == ".py"


def load_script(path: str | Path) -> FeedFactory:
    """The script's `load_data` function (called again for every pass over the data).

    Raises:
        DataError: the file is missing, fails to import, or has no callable load_data.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data-loader script {path} does not exist", hint="check the path given to --calib")
    spec = importlib.util.spec_from_file_location(f"trtq_data_loader_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    try:
        spec.loader.exec_module(module)  # type: ignore[union-attr]
    except Exception as exc:  # the user's script: any error is theirs, reported in one line
        raise DataError(f"data-loader script {path} failed to import: {type(exc).__name__}: {exc}",
                        hint="run the script with python to see the traceback") from None
    function = getattr(module, LOADER_FUNCTION, None)
    if not callable(function):
        raise DataError(f"data-loader script {path} has no function {LOADER_FUNCTION}()",
                        hint=f"define {LOADER_FUNCTION}() yielding feed dicts {{input name: array}}")
    return function  # type: ignore[no-any-return]


def _from_ort_reader(reader: Any) -> FeedFactory:
    """Passes over an ONNX Runtime CalibrationDataReader: get_next() until None, rewound between passes."""
    passes = 0

    def read() -> Iterator[Mapping[str, Any]]:
        nonlocal passes
        if passes and hasattr(reader, "rewind"):
            reader.rewind()
        elif passes:
            raise DataError("the CalibrationDataReader has no rewind() and was already read once",
                            hint="give it a rewind() method, or pass a function returning a fresh reader")
        passes += 1
        while (feed := reader.get_next()) is not None:
            yield feed

    return read


def feed_factory(data: Any) -> FeedFactory:
    """A function returning a fresh iterable of feed dicts on every call, for any data source:
    a loader-script path, an ORT CalibrationDataReader, a function returning an iterable, or a
    re-iterable (a list of feed dicts). A one-shot iterator is read once into memory.

    Raises:
        DataError: `data` is none of those.
    """
    if is_loader_script(data):
        return load_script(data)
    if hasattr(data, "get_next"):
        return _from_ort_reader(data)
    if callable(data):
        return data  # type: ignore[no-any-return]
    if isinstance(data, Iterable) and not isinstance(data, (str, bytes, Mapping)):
        if iter(data) is data:  # an iterator or generator: it can be read only once
            kept = list(data)
            return lambda: kept
        return lambda: data
    raise DataError(f"cannot read data from a {type(data).__name__}",
                    hint="give a path, a loader script, feed dicts, a function yielding them, or an "
                         "onnxruntime CalibrationDataReader")


def _checked(feed: Any, index: int) -> dict[str, np.ndarray]:
    if not isinstance(feed, Mapping) or not feed:
        raise DataError(f"batch {index} of the data loader is a {type(feed).__name__}, not a feed dict",
                        hint="yield dicts {input name: array with the batch axis first}")
    return {str(name): np.asarray(value) for name, value in feed.items()}


class StreamReader(DataReader):
    """A DataReader over a feed-dict stream: batches are yielded as they are produced, so every
    stage that takes a DataReader takes it (it has no `source`, `indices` or `batch_size`).

    The number of samples is known after the first full pass (0 before). A stream has no sample
    keys (`keys` is empty), so a cache made from a stream is never reused for a stream (the pipeline
    cannot tell whether the loader now yields other data before reading it all): it is remade.
    `max_samples` cuts the stream (the last batch sliced).
    """

    def __init__(self, factory: FeedFactory, description: str, max_samples: int | None = None) -> None:
        # DataReader.__init__ is not called: it indexes a Source, and a stream has none.
        self._factory = factory
        self._description = description
        self._max = max_samples
        self._batches: int | None = None
        self._count = 0
        self.skipped: list[tuple[str, str]] = []
        self.batch_shapes: dict[str, list[tuple[int, ...]]] = {}

    @property
    def num_samples(self) -> int:
        return self._count

    @property
    def keys(self) -> list[str]:
        return []

    @property
    def description(self) -> str:
        return self._description

    def __len__(self) -> int:
        """Batches of the last full pass (0 before the first)."""
        return self._batches or 0

    def feed_dicts(self) -> FeedDicts:
        return FeedDicts(self)

    def __iter__(self) -> Iterator[Batch]:
        shapes: dict[str, list[tuple[int, ...]]] = {}
        samples = count = 0
        for index, raw in enumerate(self._factory()):
            feeds = _checked(raw, index)
            rows = len(next(iter(feeds.values())))
            if self._max is not None:
                rows = min(rows, self._max - samples)
                feeds = {name: array[:rows] for name, array in feeds.items()}
            if rows <= 0:
                break
            batch_keys = [f"batch{index}[{i}]" for i in range(rows)]
            samples += rows
            count += 1
            for name, array in feeds.items():
                shapes.setdefault(name, []).append(array.shape)
            yield Batch(feeds, batch_keys)
        if not samples:
            raise DataError(f"{self._description} yielded no data", hint="check that load_data() yields feed dicts")
        self._count, self._batches, self.batch_shapes = samples, count, shapes
