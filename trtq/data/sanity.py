"""Calibration data that reads fine but is probably not what the model should see: warnings.

Two mistakes give a valid cache with useless ranges and no error anywhere: every sample the same
(one file copied, a glob that matched one image many times, a reader fed the same array) and an
input that is one value everywhere (a blank image, a mask or all-padding token ids, a wrong scale
that rounds everything to 0). `SampleCheck` watches the batches as calibration reads them and says
so in one line per input; hashing stops for an input as soon as two of its samples differ. A constant
integer input is normal (token_type_ids of single sentences, an attention mask without padding) and
is not reported; identical samples of one are (the same sentence over and over).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator

import numpy as np

from trtq.data.reader import Batch


class SampleCheck:
    """Whether each input's samples all have the same bytes, and whether it is one value everywhere."""

    def __init__(self) -> None:
        self.samples = 0
        self._first: dict[str, bytes] = {}
        self._varied: set[str] = set()
        self._low: dict[str, float] = {}
        self._high: dict[str, float] = {}
        self._floating: set[str] = set()

    def watch(self, batches: Iterable[Batch]) -> Iterator[Batch]:
        """Yield `batches` unchanged, checking each."""
        for batch in batches:
            self.update(batch.feeds)
            yield batch

    def update(self, feeds: dict[str, np.ndarray]) -> None:
        n = 0
        for name, x in feeds.items():
            x = np.asarray(x)
            if np.issubdtype(x.dtype, np.floating):
                self._floating.add(name)
            n = max(n, int(x.shape[0]) if x.ndim else 1)
            if x.size and self._low.get(name) == self._high.get(name):  # once not constant, never again
                self._low[name] = min(self._low.get(name, np.inf), float(np.min(x)))
                self._high[name] = max(self._high.get(name, -np.inf), float(np.max(x)))
            if name in self._varied or x.ndim == 0:
                continue
            for sample in x:
                digest = hashlib.blake2b(np.ascontiguousarray(sample).tobytes(), digest_size=16).digest()
                if self._first.setdefault(name, digest) != digest:
                    self._varied.add(name)
                    break
        self.samples += n

    def warnings(self) -> list[str]:
        """One line per input that looks wrong (none for a single sample: nothing to compare)."""
        if self.samples < 2:
            return []
        lines = []
        for name in self._first:
            low, high = self._low.get(name), self._high.get(name)
            constant = low is not None and low == high
            if constant and name in self._floating:
                lines.append(f"input {name!r} is {low:g} everywhere in all {self.samples} calibration samples: "
                             "the ranges are meaningless; check the data and the preprocessing")
            elif not constant and name not in self._varied:
                lines.append(f"all {self.samples} calibration samples of input {name!r} are identical: the ranges "
                             "describe one sample; check the data folder (one file copied?) and --max-samples")
        return lines
