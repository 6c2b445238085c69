"""How the accuracy search runs its independent measurements: one after the other here, or in
parallel elsewhere (trtq.cluster.tasks runs them as Ray tasks).

A measurement is `fn(shared, item)`: `shared` is what every measurement reads (the Q/DQ model, the FP32
reference outputs), `item` what differs (the layer to quantize alone, the exclusion to try). `fn` must
be a module-level function, so that another process can import it; results come back in item order,
so the ranking and the chosen layers are those of the serial run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

from trtq.progress import progress_bar

R = TypeVar("R")


class TaskMap(Protocol):
    """Runs `fn(shared, item)` for every item; returns the results in item order."""

    def __call__(self, fn: Callable[[Any, Any], R], shared: Any, items: Sequence[Any], *, desc: str,
                 unit: str = "item", show_progress: bool = False) -> list[R]: ...


def serial_map(fn: Callable[[Any, Any], R], shared: Any, items: Sequence[Any], *, desc: str,
               unit: str = "item", show_progress: bool = False) -> list[R]:
    """The TaskMap of one process: each item in turn, under a progress bar."""
    results = []
    with progress_bar(len(items), desc, unit=unit, enabled=show_progress) as bar:
        for item in items:
            results.append(fn(shared, item))
            bar.update(1)
    return results
