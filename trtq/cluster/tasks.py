"""The accuracy search's measurements as Ray tasks (a trtq.accuracy.tasks.TaskMap).

The shared part of the measurements (the Q/DQ model, the FP32 reference outputs and the evaluation
inputs: trtq.accuracy.evaluation.Reference.shareable) goes into Ray's object store once; each task
reads it from there (zero-copy for the arrays on the same node) and measures one item: one layer
quantized alone, or one fallback trial. Results are put back in item order, so the sensitivity
ranking and the layers the fallback keeps in float are those of the serial run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from trtq.accuracy.evaluation import Reference
from trtq.cluster.ray_runtime import RETRIES, Workers, gather, require_ray
from trtq.progress import progress_bar
from trtq.runtime.session import set_process_threads

R = TypeVar("R")


def _run_item(fn: Callable[[Any, Any], R], shared: Any, item: Any, threads: int) -> R:
    set_process_threads(threads)  # this worker's share of the cores for the sessions fn opens
    return fn(shared, item)


def shareable(shared: Any) -> Any:
    """`shared` with every Reference in it (itself, in a tuple, or a dataclass field) made shareable."""
    if isinstance(shared, Reference):
        return shared.shareable()
    if isinstance(shared, tuple):
        return tuple(shareable(x) for x in shared)
    if dataclasses.is_dataclass(shared) and not isinstance(shared, type):
        changes = {f.name: getattr(shared, f.name).shareable() for f in dataclasses.fields(shared)
                   if isinstance(getattr(shared, f.name), Reference)}
        return dataclasses.replace(shared, **changes) if changes else shared
    return shared


class RayMap:
    """Runs each `fn(shared, item)` as a Ray task on `workers`' resources (retried if its worker dies).

    The shared object is put into the object store once per call and cached by identity, so the
    fallback's steps, which share one reference, send it once.
    """

    def __init__(self, workers: Workers) -> None:
        self.workers = workers
        self._shared: tuple[int, Any, Any] | None = None  # (id of the original, its copy, its object ref)

    def __call__(self, fn: Callable[[Any, Any], R], shared: Any, items: Sequence[Any], *, desc: str,
                 unit: str = "item", show_progress: bool = False) -> list[R]:
        ray = require_ray()
        ref = self._put(ray, shared)
        remote = ray.remote(max_retries=RETRIES)(_run_item).options(**self.workers.options())
        refs = [remote.remote(fn, ref, item, self.workers.threads) for item in items]
        results: list[Any] = [None] * len(items)
        with progress_bar(len(items), f"{desc} on Ray", unit=unit, enabled=show_progress) as bar:

            def keep(position: int, value: Any) -> None:
                results[position] = value
                bar.update(1)

            gather(refs, keep)
        return results

    def _put(self, ray: Any, shared: Any) -> Any:
        if self._shared is None or self._shared[0] != id(shared):
            # The original is kept with its copy, so its id cannot be reused by another object meanwhile.
            self._shared = (id(shared), shared, ray.put(shareable(shared)))
        return self._shared[2]
