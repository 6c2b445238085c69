"""Streaming statistics collection: run the FP32 model on ONNX Runtime with the
calibrated tensors exposed as extra outputs, update one set of observers per
tensor from each batch, then drop the batch.

Memory is bounded by the observers' bins plus at most two batches of
activations (the one being observed while the next one runs), independent of
the number of samples. ONNX Runtime's own calibrators keep every batch's
activations until the end (see PEERS.md), which is what makes them run out of
memory.

Speed: binning every activation costs several times more CPU than the
inference itself on light models (about 2.3 ns per value, and np.bincount,
most of it, holds the GIL, so a second observer thread measured slower, not
faster). The observers therefore run in one background thread while ONNX
Runtime computes the next batch, and ONNX Runtime's idle threads sleep instead
of spinning so that they leave a core to the observers. Neither changes any
result. benchmarks/bench_calibration.py measures it against plain inference.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

from trtq.calibrators import stats as tensor_stats
from trtq.data import Batch
from trtq.errors import DataError, first_line
from trtq.progress import progress_bar
from trtq.runtime.session import create_session

log = logging.getLogger(__name__)

# Waiting ORT threads spin by default, taking the core the observer thread needs (results are unchanged).
_SESSION_ENTRIES = {"session.intra_op.allow_spinning": "0"}


@dataclass
class CollectionResult:
    """What one pass over the calibration data produced.

    Attributes:
        stats: tensor name -> its observers, in graph order.
        num_samples: samples that went through the model.
        nonfinite: tensor name -> number of NaN/Inf values ignored (nan_policy 'ignore').
        seconds: wall time of the pass.
    """

    stats: dict[str, tensor_stats.TensorStats]
    num_samples: int
    nonfinite: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def expose_tensors(model: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    """A copy of `model` whose graph outputs also include `names`."""
    exposed = onnx.ModelProto()
    exposed.CopyFrom(model)
    present = {o.name for o in exposed.graph.output}
    for name in names:
        if name not in present:
            exposed.graph.output.append(onnx.ValueInfoProto(name=name))
    return exposed


class _Observing:
    """Updates the observers of every tensor from one batch of activations."""

    def __init__(self, names: list[str], make_stats: Callable[[], tensor_stats.TensorStats],
                 nan_policy: str) -> None:
        self.stats = {name: make_stats() for name in names}
        self.nan_policy = nan_policy
        self.nonfinite: dict[str, int] = {}

    def observe(self, outputs: dict[str, np.ndarray], keys: list[str]) -> None:
        for name in self.stats:
            x = outputs[name]
            if not np.issubdtype(x.dtype, np.floating):
                continue
            bad = self._update(name, x, keys)
            if bad:
                self.nonfinite[name] = self.nonfinite.get(name, 0) + bad

    def _update(self, name: str, x: np.ndarray, keys: list[str]) -> int:
        """Observe `x`; returns the number of NaN/Inf values left out."""
        observers = self.stats[name]
        try:
            observers.update(x)  # finds NaN/Inf for free (min/max) and then changes nothing
            return 0
        except ValueError:
            bad = tensor_stats.count_nonfinite(x)
            if not bad:
                raise
        if self.nan_policy == "error":
            raise self._nonfinite_error(name, x, bad, keys)
        observers.update(x[np.isfinite(x)])
        return bad

    @staticmethod
    def _nonfinite_error(name: str, x: np.ndarray, bad: int, keys: list[str]) -> DataError:
        per_sample = ~np.isfinite(x.reshape(x.shape[0], -1)).all(axis=1) if x.ndim else np.array([True])
        first = int(np.argmax(per_sample)) if len(keys) == len(per_sample) else 0
        sample = keys[first] if keys else "?"
        return DataError(
            f"activation '{name}' has {bad} NaN/Inf values for sample {sample}",
            hint="check the input and preprocessing, or pass --nan-policy ignore to skip such values",
        )


def collect_statistics(
    model: onnx.ModelProto,
    model_dir: str | Path | None,
    names: list[str],
    batches: Iterable[Batch],
    make_stats: Callable[[], tensor_stats.TensorStats],
    *,
    providers: list[str],
    nan_policy: str = "error",
    total_samples: int | None = None,
    show_progress: bool = True,
) -> CollectionResult:
    """Run `model` over `batches` and observe the tensors `names`.

    Args:
        model: the FP32 model (weights loaded, or external data under model_dir).
        model_dir: folder of the model file, for external data.
        names: tensors to observe, in graph order.
        batches: feed dicts with the batch dimension.
        make_stats: factory of the observers each tensor gets.
        providers: ONNX Runtime providers.
        nan_policy: 'error' or 'ignore' for NaN/Inf activations.
        total_samples: for the progress bar.
        show_progress: draw a progress bar on stderr.

    Raises:
        DataError: an input does not fit the model, or an activation is not finite.
    """
    observing = _Observing(names, make_stats, nan_policy)
    start = time.perf_counter()
    with create_session(expose_tensors(model, names), model_dir, providers, _SESSION_ENTRIES) as session, \
            _Worker(observing.observe) as worker, \
            progress_bar(total_samples, "calibrating", enabled=show_progress) as bar:
        num_samples = _stream(session, batches, worker, bar)
    if num_samples == 0:
        raise DataError("no calibration samples were read", hint="check --calib and --max-samples")
    return CollectionResult(observing.stats, num_samples, observing.nonfinite, time.perf_counter() - start)


def _stream(session, batches: Iterable[Batch], worker: _Worker, bar) -> int:
    """Run every batch and hand its outputs to the worker; returns the number of samples."""
    output_names = [o.name for o in session.get_outputs()]
    num_samples = 0
    for batch in batches:
        worker.wait_for_slot()
        # No local reference: the worker alone holds the activations and drops them when observed.
        worker.submit(dict(zip(output_names, _run(session, output_names, batch), strict=True)), batch.keys)
        n = len(batch.keys) if batch.keys else next(iter(batch.feeds.values())).shape[0]
        num_samples += n
        bar.update(n)
    return num_samples


def _run(session, output_names: list[str], batch: Batch) -> list[np.ndarray]:
    try:
        return session.run(output_names, batch.feeds)
    except Exception as exc:  # ORT reports shape/type mismatches as its own exception types
        first = first_line(exc)
        sample = batch.keys[0] if batch.keys else "?"
        raise DataError(f"ONNX Runtime failed on the batch starting with {sample}: {first}",
                        hint="check that the data matches the model inputs ('trtq inspect MODEL')") from None


class _Worker:
    """Observes one batch in a background thread while ONNX Runtime runs the next.

    The caller waits for a slot before running a batch, and a slot frees when the
    worker takes the previous batch, so at most two batches of activations are
    alive at once (being observed, being computed) and none waits in the queue
    while holding memory. An error in the worker is re-raised in the caller.
    """

    def __init__(self, observe: Callable[[dict[str, np.ndarray], list[str]], None]) -> None:
        self._observe = observe
        self._queue: queue.Queue = queue.Queue(maxsize=1)
        self._error: BaseException | None = None
        self._stopping = False  # set on Ctrl-C or a failed batch: queued batches are dropped, not observed
        self._slot = threading.Semaphore(1)
        self._thread = threading.Thread(target=self._loop, name="trtq-observer", daemon=True)

    def __enter__(self) -> _Worker:
        self._thread.start()
        return self

    def wait_for_slot(self) -> None:
        """Block until the worker has taken the last batch submitted."""
        self._slot.acquire()
        self._raise_pending()

    def submit(self, outputs: dict[str, np.ndarray], keys: list[str]) -> None:
        self._raise_pending()
        self._queue.put((outputs, keys))
        self._raise_pending()

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            self._slot.release()
            if self._error is None and not self._stopping:
                try:
                    self._observe(*item)
                except BaseException as exc:
                    self._error = exc
            del item  # the batch's activations go now, not when the next batch arrives

    def _raise_pending(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def __exit__(self, exc_type, exc, tb) -> None:
        self._stopping = exc_type is not None
        self._queue.put(None)
        self._thread.join()
        if exc_type is None:
            self._raise_pending()
