"""Progress bars for long work, on stderr, off with --quiet or when not wanted."""

from __future__ import annotations

from typing import Any

from tqdm import tqdm


def progress_bar(total: int | None, desc: str, unit: str = "sample", enabled: bool = True) -> Any:
    """A tqdm bar showing count, rate (e.g. samples/s) and ETA; a no-op bar when disabled."""
    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled, dynamic_ncols=True,
                leave=False, smoothing=0.1)
