"""Feed dicts checked against the model's inputs before they reach Polygraphy.

Polygraphy would cast, transpose or reshape a mismatched input with only a log
warning; trtq refuses a wrong name, rank or fixed dimension with a DataError
that names the batch, and only casts between float types.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

import numpy as np

from trtq.errors import ConfigError, DataError
from trtq.onnx_model.model import TensorSpec


@dataclass(frozen=True)
class BatchInfo:
    """What the metrics need to know about a batch: its index, sample count and labels (-1 = none)."""

    index: int
    samples: int
    labels: np.ndarray | None


def check_feed(feed: object, inputs: list[TensorSpec], index: int) -> dict[str, np.ndarray]:
    """`feed` as a dict of contiguous arrays matching `inputs` (extra entries dropped).

    Raises:
        DataError: an input is missing, or has the wrong rank, fixed dimension or a non-float dtype
            where the model wants another one.
    """
    if not isinstance(feed, Mapping):
        raise DataError(f"batch {index} is a {type(feed).__name__}, not a dict of input name -> array")
    names = [spec.name for spec in inputs]
    checked = {}
    for spec in inputs:
        if spec.name not in feed:
            raise DataError(f"batch {index} has no array for model input '{spec.name}' (it has {sorted(feed)})",
                            hint=f"name the arrays after the model inputs: {', '.join(names)}")
        checked[spec.name] = _check_array(np.asarray(feed[spec.name]), spec, index)
    return checked


def _check_array(array: np.ndarray, spec: TensorSpec, index: int) -> np.ndarray:
    if spec.shape is not None:
        fixed = [d if isinstance(d, int) and d > 0 else None for d in spec.shape]
        if array.ndim != len(fixed) or any(w is not None and g != w for g, w in zip(array.shape, fixed, strict=True)):
            got = "x".join(map(str, array.shape)) or "scalar"
            raise DataError(f"input '{spec.name}' of batch {index} has shape {got}, the model expects "
                            f"{spec.shape_str()}", hint="check the data's layout, size and batch size")
    if spec.dtype != np.dtype("O") and array.dtype != spec.dtype:
        if not (np.issubdtype(array.dtype, np.floating) and np.issubdtype(spec.dtype, np.floating)):
            raise DataError(f"input '{spec.name}' of batch {index} is {array.dtype}, the model expects {spec.dtype}",
                            hint=f"store the data as {spec.dtype}")
        array = array.astype(spec.dtype)
    return np.ascontiguousarray(array)


class CheckedFeeds:
    """Iterates checked feed dicts and queues a BatchInfo for each, in order, for the metric side.

    Polygraphy's streaming run pulls one feed dict, runs both models and yields their outputs
    before pulling the next, so the queue holds at most one entry when the outputs arrive.

    Args:
        batches: feed dicts (input name -> array with the batch along axis 0).
        inputs: the model inputs.
        keys: one key per sample, in data order (needed only with `labels`).
        labels: sample key -> class index.

    Raises:
        ConfigError: labels are given without keys.
    """

    def __init__(self, batches: Iterable[Mapping[str, np.ndarray]], inputs: list[TensorSpec],
                 keys: Iterable[str] | None = None, labels: Mapping[str, int] | None = None) -> None:
        if labels is not None and keys is None:
            raise ConfigError("labels were given without sample keys", hint="pass keys= with one key per sample")
        self._batches = batches
        self._inputs = inputs
        self._keys = iter(keys) if keys is not None and labels is not None else None
        self._labels = labels
        self.pending: collections.deque[BatchInfo] = collections.deque()
        self.started = False  # set once Polygraphy, with its runners active, asks for the first batch

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        self.started = True
        for index, feed in enumerate(self._batches):
            checked = check_feed(feed, self._inputs, index)
            first = checked[self._inputs[0].name] if self._inputs else None
            samples = int(first.shape[0]) if first is not None and first.ndim else 1
            self.pending.append(BatchInfo(index, samples, self._batch_labels(samples, index)))
            yield checked

    def _batch_labels(self, samples: int, index: int) -> np.ndarray | None:
        if self._keys is None or self._labels is None:
            return None
        labels = np.full(samples, -1, np.int64)
        for i in range(samples):
            key = next(self._keys, None)
            if key is None:
                raise DataError(f"there are fewer sample keys than samples (ran out in batch {index})",
                                hint="pass one key per sample, in data order")
            labels[i] = self._labels.get(key, -1)
        return labels
