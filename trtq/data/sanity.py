"""Calibration data that reads fine but is probably not what the model should see: warnings.

Two mistakes give a valid cache with useless ranges and no error anywhere: every sample the same
(one file copied, a glob that matched one image many times, a reader fed the same array) and an
input that is one value everywhere (a blank image, a mask or all-padding token ids, a wrong scale
that rounds everything to 0). `SampleCheck` watches the batches as calibration reads them and says
so in one line per input; hashing stops for an input as soon as two of its samples differ. A constant
integer input is normal (token_type_ids of single sentences, an attention mask without padding) and
is not reported; identical samples of one are (the same sentence over and over).

A third mistake is preprocessing left out: raw 0..255 pixels fed to a model trained on normalized
input. Which input range a model expects is not written in it, so this check only covers the case
that is almost never right: a float input read by Conv layers alone (no Sub/Div/Mul/BatchNorm of
the model's own in front) whose values are all >= 0, reach above RAW_PIXEL_MAX and average above
RAW_PIXEL_MEAN. Caffe-style models read mean-subtracted pixels (negative values), and models that
normalize inside the graph have another op first, so neither is reported. MobileNetV2 fed its
ImageNet-normalized crops: nothing; the same crops x255 without mean/std (mean 88): reported.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable, Iterator

import numpy as np

from trtq.data.reader import Batch

RAW_PIXEL_MAX = 50.0  # normalized images stay within about +-3; 0..1 images below 1
RAW_PIXEL_MEAN = 20.0  # photos in 0..255 average about 100-130


class SampleCheck:
    """Whether each input's samples all have the same bytes, whether it is one value everywhere, and
    whether a Conv-only input looks like raw 0..255 pixels.

    Args:
        conv_inputs: the float inputs the model reads with Conv/ConvTranspose layers only.
    """

    def __init__(self, conv_inputs: Collection[str] = ()) -> None:
        self.conv_inputs = set(conv_inputs)
        self._pixels: dict[str, list[float]] = {}  # input -> [min, max, sum, count]
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
            if name in self.conv_inputs and x.size and np.issubdtype(x.dtype, np.floating):
                acc = self._pixels.setdefault(name, [np.inf, -np.inf, 0.0, 0])
                acc[0], acc[1] = min(acc[0], float(np.min(x))), max(acc[1], float(np.max(x)))
                acc[2] += float(np.sum(x, dtype=np.float64))
                acc[3] += int(x.size)
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
        for name, (low, high, total, count) in self._pixels.items():
            mean = total / count
            if low >= 0 and high > RAW_PIXEL_MAX and mean > RAW_PIXEL_MEAN:
                lines.append(f"input {name!r} looks like raw 0..255 pixels (range {low:g}..{high:g}, mean {mean:.0f}) "
                             "fed straight to a Conv, which models are rarely trained on: check --scale/--mean/--std "
                             "or use a preset (-c imagenet); ignore this if the model was trained on raw pixels")
        return lines
