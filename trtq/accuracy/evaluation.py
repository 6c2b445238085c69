"""Repeated accuracy measurements on ONNX Runtime CPU, for sensitivity, fallback and bias correction.

Those jobs run one FP32 reference against many candidates (one per excluded layer, one
per bias-correction step). `trtq.accuracy.compare_models` runs both models through
Polygraphy each time; here the reference outputs are computed once and kept, and each
candidate alone runs on a plain ONNX Runtime session. On the PP-OCR direction classifier
(64 samples) a measurement takes 0.4-0.8 s instead of compare_models' 0.8-1.1 s. Metrics are
trtq.accuracy's own accumulators, so a `measure` result is a ComparisonResult that
`trtq.accuracy.check_gates` accepts, with the same definitions as `trtq compare`.

Batches: every function here takes `Batches`, i.e. a list/tuple of feed dicts, any
re-iterable (e.g. `DataReader.feed_dicts()`), or a callable returning a fresh iterable,
since several passes are made. A one-shot iterator is read once into memory.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import onnx

from trtq.accuracy.compare import ComparisonResult, check_candidate_outputs
from trtq.accuracy.feeds import check_feed
from trtq.accuracy.metrics import REL_EPSILON, OutputAccumulator, ToleranceCheck
from trtq.errors import ConfigError, DataError, ModelError, first_line
from trtq.onnx_model.model import graph_inputs, graph_outputs
from trtq.onnx_model.token_axes import attention_mask_input
from trtq.runtime.session import cpu_session

log = logging.getLogger(__name__)

FeedDict = Mapping[str, np.ndarray]
Batches = Iterable[FeedDict] | Callable[[], Iterable[FeedDict]]
# Reference outputs kept in memory at most; beyond it the reference runs again for every measurement.
DEFAULT_CACHE_BYTES = 1 << 30


def replayable(batches: Batches) -> Callable[[], Iterator[FeedDict]]:
    """A function returning a fresh iterator over `batches` on every call.

    A callable is called each time; a re-iterable (list, DataReader.feed_dicts()) is iterated
    again; a one-shot iterator (iter(x) is x) is read into a list once.
    """
    if callable(batches) and not isinstance(batches, Iterable):
        factory = batches
        return lambda: iter(factory())
    if iter(batches) is batches:  # an iterator or generator: it can be read only once
        kept = list(batches)
        return lambda: iter(kept)
    return lambda: iter(batches)


def limit_samples(batches: Batches, max_samples: int | None) -> Callable[[], Iterator[FeedDict]]:
    """`replayable(batches)` cut after `max_samples` samples (the last batch sliced); None keeps all.

    Raises:
        ConfigError: max_samples < 1.
    """
    replay = replayable(batches)
    if max_samples is None:
        return replay
    if isinstance(max_samples, bool) or not isinstance(max_samples, int) or max_samples < 1:
        raise ConfigError(f"max_samples must be a positive integer or None, got {max_samples!r}")

    def limited() -> Iterator[FeedDict]:
        left = max_samples
        for feed in replay():
            if left <= 0:
                return
            n = batch_samples(feed)
            yield feed if n <= left else {name: np.asarray(a)[:left] for name, a in feed.items()}
            left -= n

    return limited


def run_batches(model: onnx.ModelProto, batches: Batches, outputs: Sequence[str] | None = None,
                weights_dir: Path | None = None) -> Iterator[tuple[dict[str, np.ndarray], dict[str, np.ndarray]]]:
    """Run `model` on each batch: yields (checked feed, {output name: array}), one batch alive at a time.

    `weights_dir`: the folder of the weights a model loaded by reference (or made from one) left in files
    (trtq.onnx_model.model.load_model_by_reference); see trtq.runtime.session.cpu_session.

    Raises:
        DataError: a batch does not fit the model's inputs, or inference fails on it.
        ModelError: the model cannot be loaded.
    """
    sess = cpu_session(model, outputs, weights_dir=weights_dir)
    names = [o.name for o in sess.get_outputs()]
    inputs = graph_inputs(model)
    for index, feed in enumerate(replayable(batches)()):
        checked = check_feed(feed, inputs, index)
        try:
            values = sess.run(names, checked)
        except Exception as exc:  # ONNX Runtime's failure types are its own
            first = first_line(exc)
            raise DataError(f"inference failed on batch {index}: {first}",
                            hint="check the data matches the model inputs") from None
        yield checked, dict(zip(names, values, strict=True))


def batch_samples(feed: Mapping[str, np.ndarray]) -> int:
    """Samples in a batch: the leading dimension of its first input (1 for a scalar input)."""
    first = next(iter(feed.values()), None)
    return int(first.shape[0]) if first is not None and first.ndim else 1


@dataclass(frozen=True)
class _Replay:
    """Feed dicts kept in memory, replayed on every call (picklable, unlike a closure)."""

    feeds: list[dict[str, np.ndarray]]

    def __call__(self) -> Iterator[dict[str, np.ndarray]]:
        return iter(self.feeds)


@dataclass
class _Tolerance:
    """Polygraphy's elementwise atol/rtol verdict, batch by batch (see trtq.accuracy.metrics.ToleranceCheck)."""

    atol: float
    rtol: float
    batches: int = 0
    failed: int = 0
    max_abs: float = 0.0
    max_rel: float = 0.0

    def update(self, ref: np.ndarray, cand: np.ndarray) -> None:
        r = np.asarray(ref, np.float64).ravel()
        absdiff = np.abs(np.asarray(cand, np.float64).ravel() - r)
        reldiff = absdiff / np.where(r == 0.0, REL_EPSILON, np.abs(r))
        bad = ((absdiff > self.atol) | np.isnan(absdiff)) & ((reldiff > self.rtol) | np.isnan(reldiff))
        self.batches += 1
        self.failed += int(bad.any())
        if absdiff.size:
            self.max_abs = max(self.max_abs, float(np.nanmax(absdiff, initial=0.0)))
            self.max_rel = max(self.max_rel, float(np.nanmax(reldiff, initial=0.0)))

    def result(self) -> ToleranceCheck:
        return ToleranceCheck(self.atol, self.rtol, self.batches, self.failed, self.max_abs, self.max_rel)


@dataclass
class Reference:
    """The FP32 model's outputs on fixed evaluation batches, computed once, against which candidates are measured.

    Args:
        model: the FP32 model.
        batches: the evaluation batches (see `Batches`).
        max_cached_bytes: keep the reference outputs in memory up to this size; beyond it they are
            recomputed for every measurement (slower, same results).
        weights_dir: the folder of the weights `model` left in files (loaded by reference); candidates
            measured here, made from `model`, read theirs from there too.

    Raises:
        DataError: there are no batches, or one does not fit the model.
        ModelError: the model cannot be loaded.
    """

    model: onnx.ModelProto
    batches: Batches
    max_cached_bytes: int = DEFAULT_CACHE_BYTES
    weights_dir: Path | None = None
    outputs: list[str] = field(init=False)
    mask_input: str | None = field(init=False)
    _cache: list[dict[str, np.ndarray]] | None = field(init=False, default=None, repr=False)

    def __post_init__(self) -> None:
        self.outputs = [o.name for o in graph_outputs(self.model)]
        self.mask_input = attention_mask_input(graph_inputs(self.model))
        self.batches = replayable(self.batches)
        cache: list[dict[str, np.ndarray]] | None = []
        size = count = 0
        for _, values in run_batches(self.model, self.batches, self.outputs, self.weights_dir):
            count += 1
            size += sum(v.nbytes for v in values.values())
            if cache is not None and size > self.max_cached_bytes:
                log.info("reference outputs exceed %d bytes: recomputing them for every measurement",
                         self.max_cached_bytes)
                cache = None
            if cache is not None:
                cache.append(values)
        if count == 0:
            raise DataError("there is no data to evaluate on: the batches were empty", hint="check the data path")
        self._cache = cache

    def shareable(self) -> Reference:
        """A copy holding its evaluation inputs in memory, for another process (trtq.cluster.tasks).

        The copy has no reader or closure to pickle: its batches are a list of the feed dicts, and the
        reference outputs computed here go with it, so no other process reads the data or runs FP32.
        """
        copy = object.__new__(Reference)
        copy.__dict__.update(self.__dict__)
        copy.batches = _Replay([dict(feed) for feed in replayable(self.batches)()])
        return copy

    def _reference_outputs(self) -> Iterator[dict[str, np.ndarray]]:
        if self._cache is not None:
            return iter(self._cache)
        return (values for _, values in run_batches(self.model, self.batches, self.outputs, self.weights_dir))

    def measure(self, candidate: onnx.ModelProto, *, atol: float | None = None, rtol: float | None = None,
                label: str = "<candidate>") -> ComparisonResult:
        """Run `candidate` on the batches and compare its outputs with the reference's.

        Args:
            candidate: a model with the reference's inputs and outputs (e.g. its Q/DQ version).
            atol, rtol: also run the elementwise tolerance check (as compare_models does).
            label: the candidate's name in the result.

        Returns:
            Per-output metrics (no per-layer view), usable with trtq.accuracy.check_gates.

        Raises:
            ModelError: the candidate lacks an output of the reference or its shape differs.
            DataError: inference fails.
        """
        start = time.perf_counter()
        check_candidate_outputs(candidate, self.outputs)
        accs = {name: OutputAccumulator(name) for name in self.outputs}
        checks = {name: _Tolerance(atol or 0.0, rtol or 0.0) for name in self.outputs} \
            if atol is not None or rtol is not None else {}
        runs = run_batches(candidate, self.batches, self.outputs, self.weights_dir)
        batches = samples = 0
        for ref, (feed, cand) in zip(self._reference_outputs(), runs, strict=True):
            n = batch_samples(feed)
            for name, acc in accs.items():
                r, c = ref[name], cand[name]
                if r.size != c.size:
                    raise ModelError(f"output '{name}' has shape {r.shape} in the reference but {c.shape} "
                                     "in the candidate", hint="compare models built for the same input shapes")
                acc.update(r, c.reshape(r.shape), n, mask=feed.get(self.mask_input) if self.mask_input else None)
                if name in checks:
                    checks[name].update(r, c)
            batches += 1
            samples += n
        metrics = {}
        for name, acc in accs.items():
            tolerance = checks[name].result() if name in checks else None
            metrics[name] = replace(acc.result(), tolerance=tolerance)
        return ComparisonResult(reference="<fp32 reference>", candidate=label, candidate_kind="onnx",
                                samples=samples, batches=batches, seconds=time.perf_counter() - start,
                                outputs=metrics)


def worst_sqnr(result: ComparisonResult) -> float:
    """The lowest output SQNR (dB) of a comparison: one number to rank candidates by."""
    return min(m.sqnr_db for m in result.outputs.values())


def worst_top1(result: ComparisonResult) -> float | None:
    """The lowest top-1 agreement over classifier-like outputs, or None if there is none."""
    values = [m.top1_agreement for m in result.outputs.values() if m.top1_agreement is not None]
    return min(values) if values else None


def worst_pooled_cosine(result: ComparisonResult) -> float | None:
    """The lowest mean pooled-embedding cosine over token-embedding outputs, or None if there is none."""
    values = [m.pooled_cosine_mean for m in result.outputs.values() if m.pooled_cosine_mean is not None]
    return min(values) if values else None

