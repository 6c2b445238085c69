"""Streaming statistics collection: run the FP32 model on ONNX Runtime with the
calibrated tensors exposed as extra outputs, update one set of observers per
tensor from each batch, then drop the batch.

Memory is bounded by the observers' bins plus at most two batches of
activations (the one being observed while the next one runs), independent of
the number of samples. ONNX Runtime's own calibrators keep every batch's
activations until the end (see docs/peers.md), which is what makes them run out of
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

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from trtq.calibration.microbatch import DEFAULT_BUDGET_MIB, MIB, MicroBatcher
from trtq.calibrators import channels, histogram
from trtq.calibrators import stats as tensor_stats
from trtq.calibrators.channels import ChannelObserver
from trtq.data import Batch
from trtq.errors import DataError, first_line
from trtq.onnx_model.model import MAX_IR_VERSION
from trtq.onnx_model.token_axes import axes_from_probe, probe_feeds, real_tokens
from trtq.progress import progress_bar
from trtq.runtime.session import create_session, external_folder_entry, session_from_bytes

log = logging.getLogger(__name__)

# Waiting ORT threads spin by default, taking the core the observer thread needs (results are unchanged).
_SESSION_ENTRIES = {"session.intra_op.allow_spinning": "0"}


# Finite fills this negative (finfo(float32).min is -3.4e38) are mask values, not data: an INT8
# scale covering them would flush every real value to zero.
HUGE_NEGATIVE = -1e30
NONFINITE_FILL = "infinite-fill"
HUGE_NEGATIVE_FILL = "huge-negative-fill"
DATA_REASONS = {
    NONFINITE_FILL: "holds +-inf (no NaN) and no Q/DQ pair reads it: a mask fill, not a bad input",
    HUGE_NEGATIVE_FILL: f"holds values below {HUGE_NEGATIVE:g} (a mask fill) and no Q/DQ pair reads it",
}


@dataclass
class CollectionResult:
    """What one pass over the calibration data produced.

    Attributes:
        stats: tensor name -> its observers, in graph order (without the tensors left out).
        num_samples: samples that went through the model.
        nonfinite: tensor name -> number of NaN/Inf values ignored (nan_policy 'ignore').
        seconds: wall time of the pass.
        left_out: tensor -> kind (NONFINITE_FILL, HUGE_NEGATIVE_FILL): tensors that no Q/DQ pair
            reads and whose data holds mask values; they get no statistics and no cache entry.
    """

    stats: dict[str, tensor_stats.TensorStats]
    num_samples: int
    nonfinite: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    left_out: dict[str, str] = field(default_factory=dict)


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
    """Updates the observers of every tensor from one batch of activations.

    `quantized` names the tensors a Q/DQ pair will read (None: all of them). Another tensor whose data
    holds +-inf but no NaN (the -inf fill of an attention mask), or finite values below HUGE_NEGATIVE,
    is left out instead (see `left_out`); NaN is a bad input wherever it is (nan_policy decides).
    """

    def __init__(self, names: list[str], make_stats: Callable[[], tensor_stats.TensorStats],
                 nan_policy: str, quantized: set[str] | None = None, token_axes: dict[str, int] | None = None,
                 channel_tensors: Collection[str] = ()) -> None:
        self.stats = {name: make_stats() for name in names}
        for name in set(channel_tensors) & set(names):
            self.stats[name].channels = ChannelObserver()
        self.nan_policy = nan_policy
        self.quantized = quantized
        self.token_axes = token_axes or {}
        self.nonfinite: dict[str, int] = {}
        self.left_out: dict[str, str] = {}

    def observe(self, outputs: dict[str, np.ndarray], keys: list[str], mask: np.ndarray | None = None) -> None:
        """Update from one batch; with the attention `mask`, per-token tensors count their real tokens only."""
        for name in self.stats:
            x = outputs[name]
            if name in self.left_out or not np.issubdtype(x.dtype, np.floating):
                continue
            view = real_tokens(x, self.token_axes.get(name), mask) if mask is not None else x
            bad = self._update(name, view, keys, x)
            if bad:
                self.nonfinite[name] = self.nonfinite.get(name, 0) + bad

    def _update(self, name: str, x: np.ndarray, keys: list[str], whole: np.ndarray) -> int:
        """Observe `x` (the values of `whole` that count); returns the number of NaN/Inf values left out."""
        observers = self.stats[name]
        try:
            observers.update(x)  # finds NaN/Inf for free and then changes nothing
            return 0
        except ValueError:
            bad = tensor_stats.count_nonfinite(x)
            if not bad:
                raise
        if self.quantized is not None and name not in self.quantized and not np.isnan(x).any():
            self.left_out[name] = NONFINITE_FILL  # e.g. a mask bias the graph did not show as one
            return 0
        if self.nan_policy == "error":
            raise self._nonfinite_error(name, whole, tensor_stats.count_nonfinite(whole), keys)
        observers.update(x[np.isfinite(x)])
        return bad

    def result_stats(self) -> dict[str, tensor_stats.TensorStats]:
        """The statistics without the tensors left out; tensors no Q/DQ reads that hold huge negative
        fills are left out here (their minimum is known only at the end)."""
        for name, observers in self.stats.items():
            unread = self.quantized is not None and name not in self.quantized
            if unread and name not in self.left_out and observers.hist.min <= HUGE_NEGATIVE:
                self.left_out[name] = HUGE_NEGATIVE_FILL
        return {name: s for name, s in self.stats.items() if name not in self.left_out}

    @staticmethod
    def _nonfinite_error(name: str, x: np.ndarray, bad: int, keys: list[str]) -> DataError:
        per_sample = ~np.isfinite(x.reshape(x.shape[0], -1)).all(axis=1) if x.ndim else np.array([True])
        first = int(np.argmax(per_sample)) if len(keys) == len(per_sample) else 0
        sample = keys[first] if keys else "?"
        if len(keys) == len(per_sample) and len(keys) > 1:  # the count of that sample, and of the batch
            own = int(np.count_nonzero(~np.isfinite(x[first])))
            counted = f"{own} NaN/Inf values in sample {sample} ({bad} in the {len(keys)} samples run with it)"
        else:
            counted = f"{bad} NaN/Inf values in sample {sample}"
        return DataError(
            f"activation '{name}' has {counted}",
            hint="check the input and preprocessing, or pass --nan-policy ignore to skip such values",
        )


def warm_kernels() -> None:
    """Load the observers' compiled kernels now: numba's import and its cached machine code take 0.3-0.8 s,
    which collect_statistics spends in a thread while ONNX Runtime builds its session (most of that in
    C++), not on the observer thread at the first batch while the next one waits for it."""
    try:
        histogram_kernel = histogram.compiled_kernel()
        if histogram_kernel is not None:  # float32: the activations' type, the signature numba loads
            histogram_kernel(np.zeros(1, np.float32), 2, None)
        channel_kernel = channels.compiled_kernel()
        if channel_kernel is not None:
            channel_kernel(np.zeros((1, 1), np.float32))
    except Exception:  # the first batch meets the same failure, where the observers report it
        log.debug("warming the observer kernels failed", exc_info=True)


def exposed_file_bytes(model: onnx.ModelProto, source: Path, names: list[str]) -> bytes:
    """The bytes of `expose_tensors(model, names)` (IR version clamped as create_session does), made from the
    file `source` that `model` was read from, without copying or serializing the model.

    Protobuf parses concatenated messages as one merged message: repeated fields are appended and the
    last value of a scalar field wins (protobuf.dev, "Encoding": "Last One Wins", concatenation merges).
    So the file followed by a message holding only the extra graph outputs and the IR version is the
    exposed model. For all-mpnet-base-v2 (416 MB) that saves a 0.1 s copy and a 0.7 s serialization.
    """
    present = {o.name for o in model.graph.output}
    tail = onnx.ModelProto(ir_version=min(model.ir_version, MAX_IR_VERSION))
    tail.graph.output.extend(onnx.ValueInfoProto(name=n) for n in names if n not in present)  # as expose_tensors
    return source.read_bytes() + tail.SerializeToString()


def collection_session(model: onnx.ModelProto, model_dir: str | Path | None, names: list[str],
                       providers: list[str], source: Path | None = None) -> contextlib.AbstractContextManager[Any]:
    """The ONNX Runtime session collect_statistics runs: `model` with the tensors `names` exposed.

    A caller that collects many parts of the data (a Ray worker) opens it once and passes it as `session`.
    With `source`, the model file `model` was read unchanged from (load_model_by_reference), the session
    is made from that file's bytes (exposed_file_bytes), its external data read from the file's folder.
    """
    if source is not None:
        entries = {**_SESSION_ENTRIES, **external_folder_entry(Path(source).parent)}
        return contextlib.nullcontext(session_from_bytes(exposed_file_bytes(model, Path(source), names),
                                                         providers, entries))
    return create_session(expose_tensors(model, names), model_dir, providers, _SESSION_ENTRIES)


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
    quantized: set[str] | None = None,
    mask_input: str | None = None,
    memory_budget: int | None = DEFAULT_BUDGET_MIB * MIB,
    channel_tensors: Collection[str] = (),
    session: Any = None,
    source: Path | None = None,
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
        quantized: the tensors a Q/DQ pair will read (None: all). The others may hold +-inf or huge
            negative fills (attention masks): they are left out (CollectionResult.left_out) whatever
            the nan_policy, which applies to NaN anywhere and to Inf in the quantized tensors.
        mask_input: the input holding the attention mask of a language model: per-token tensors are
            observed at the real tokens only (trtq.onnx_model.token_axes; one extra run of the first batch finds them).
        memory_budget: bytes of exposed activations alive at once; larger batches run in
            micro-batches (same results, see microbatch.py). None: no limit.
        channel_tensors: tensors that also get per-channel statistics (SmoothQuant's MatMul inputs).
        session: a session from collection_session for the same model and names (None: one is made).
        source: the file `model` was read from, unchanged (see collection_session), if it was.

    Raises:
        DataError: an input does not fit the model, or a quantized activation is not finite.
    """
    observing = _Observing(names, make_stats, nan_policy, quantized, channel_tensors=channel_tensors)
    start = time.perf_counter()
    warming = threading.Thread(target=warm_kernels, name="trtq-kernels", daemon=True)
    warming.start()
    if session is None:
        log.info("starting ONNX Runtime with %d tensors exposed as outputs", len(names))  # seconds on big models
    opened = contextlib.nullcontext(session) if session is not None else \
        collection_session(model, model_dir, names, providers, source)
    with opened as sess, _Worker(observing.observe) as worker, \
            progress_bar(total_samples, "calibrating", enabled=show_progress) as bar:
        num_samples = _stream(sess, batches, worker, bar, MicroBatcher(memory_budget), mask_input, observing)
    warming.join()
    if num_samples == 0:
        raise DataError("no calibration samples were read", hint="check --calib and --max-samples")
    stats = observing.result_stats()
    return CollectionResult(stats, num_samples, observing.nonfinite, time.perf_counter() - start,
                            observing.left_out)


def _stream(session, batches: Iterable[Batch], worker: _Worker, bar, parts: MicroBatcher,
            mask_input: str | None = None, observing: _Observing | None = None) -> int:
    """Run every batch (in micro-batches) and hand its outputs (and attention mask) to the worker;
    returns the number of samples.

    With `mask_input`, the first part also runs cut by one position, and `observing` learns from the
    two which tensors are laid out per token (trtq.onnx_model.token_axes) before it sees any batch.
    """
    output_names = [o.name for o in session.get_outputs()]
    num_samples = 0
    for batch in batches:
        for part in parts.split(batch):
            worker.wait_for_slot()
            mask = part.batch.feeds.get(mask_input) if mask_input else None
            outputs = dict(zip(output_names, _run(session, output_names, part.batch), strict=True))
            n = len(part.batch.keys) if part.batch.keys else next(iter(part.batch.feeds.values())).shape[0]
            parts.measured(list(outputs.values()), n)
            if num_samples == 0 and mask is not None and observing is not None:
                observing.token_axes = _token_axes(session, output_names, part.batch, mask_input, outputs)
            # No local reference: the worker alone holds the activations and drops them when observed.
            worker.submit(outputs, part.batch.keys, mask)
            del outputs
            num_samples += n
            bar.update(n)
    return num_samples


def _token_axes(session, output_names: list[str], batch: Batch, mask_input: str,
                outputs: dict[str, np.ndarray]) -> dict[str, int]:
    """Per-token tensors and their sequence axis, from the first batch and a run of it cut by one position."""
    cut = probe_feeds(batch.feeds, mask_input)
    if cut is None:
        return {}
    probe = _run(session, output_names, Batch(feeds=cut, keys=batch.keys))
    full_shapes = {name: x.shape for name, x in outputs.items()}
    return axes_from_probe(full_shapes, {name: x.shape for name, x in zip(output_names, probe, strict=True)},
                           batch.feeds[mask_input].shape)


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

    def __init__(self, observe: Callable[[dict[str, np.ndarray], list[str], np.ndarray | None], None]) -> None:
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

    def submit(self, outputs: dict[str, np.ndarray], keys: list[str], mask: np.ndarray | None = None) -> None:
        self._raise_pending()
        self._queue.put((outputs, keys, mask))
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
