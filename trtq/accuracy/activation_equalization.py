"""Activation equalization: per-channel rescaling of Conv -> (Relu | Clip(0, M) | identity) -> Conv
chains, chosen from calibration data, exact in FP32.

A per-tensor INT8 activation gives every channel the same step, amax / 127: a channel whose values
stay far below the tensor's widest channel keeps few levels. Where a conv reads such a tensor
through a sensitive layer (the first depthwise convolution of MobileNetV2 reads the stem's ReLU6
output: that one quantized tensor alone costs the output 17.9 dB), the rounding noise of the narrow
channels dominates. Rescaling channel i of the chain's intermediate by 1 / s_i (channel i of the
first conv's weight and bias divided by s_i, input channel i of the second conv multiplied by s_i,
Clip(0, M) rewritten as Relu and Min(M / s_i) as in trtq.qdq.equalization) changes nothing in exact
arithmetic. Where the second conv is depthwise (one input channel per output channel), this pass
takes s_i = min(1, 2 a_i / max_j a_j), a_i the channel's largest |x| on the calibration data: every
channel is widened to at least half of the tensor's range. The per-channel INT8 weights of both convs
are invariant under per-channel scaling, so only the activation error changes: channel i's step
shrinks from max a / 127 to about 2 a_i / 127, and no weight error changes.

Why half and not the whole range (s_i = a_i / max a, the smallest step a max-based range allows): a
widened channel is clipped where new data exceed its calibration max by more than the headroom. On
EfficientNet-Lite0 (300 calibration crops of 9 photos, 300 held-out crops of 5 others) the late
blocks' channels do (7x7 maps, class-specific channels): the whole range cost 3.1 dB held out
(17.48 -> 14.35 dB; capping the widening at 8x or 4x did not help: 14.35 and 14.82 dB), a headroom of
2 kept 17.32 dB, while on MobileNetV2 it gives 12.89 -> 14.24 dB (the whole range: 14.94 dB). The
max's spread between two halves of the calibration data (1.0-1.4x) did not predict the held-out one.

Cross-layer equalization (Nagel et al. 2019) equalizes the *weight* ranges, which per-channel weights
do not need; this pass equalizes what per-tensor activations need. Chains into dense convs are left
alone: there a scale trades activation error for the second conv's weight error, and SmoothQuant's
rule (Xiao et al. 2023) with alpha chosen per chain by trtq.qdq.smoothquant_search's estimate
measured worse on MobileNetV2 (top-1 agreement 0.893 -> 0.803, 14.88 -> 14.93 dB on 300 held-out
crops).

    equalized, report = equalize_activations(model, calib_batches)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx

from trtq.accuracy.evaluation import Batches, batch_samples, limit_samples, run_batches
from trtq.errors import DataError
from trtq.qdq.equalization import DEAD, MAX_SCALE, Chain, find_chains, scale_chain, write_chains
from trtq.qdq.graph import GraphIndex

HEADROOM = 2.0


@dataclass(frozen=True)
class ChainScaling:
    """What the pass did to one chain.

    Attributes:
        first, second: the convs; activation: the op(s) between them.
        channels: channels of the intermediate (and of the depthwise conv).
        spread_before, spread_after: largest / smallest live channel max of the intermediate.
    """

    first: str
    second: str
    activation: str
    channels: int
    spread_before: float
    spread_after: float


@dataclass(frozen=True)
class ActivationEqualizationReport:
    chains: tuple[ChainScaling, ...] = ()
    skipped: tuple[tuple[str, str], ...] = ()
    samples: int = 0

    def summary(self) -> str:
        spread = max((c.spread_before for c in self.chains), default=1.0)
        after = max((c.spread_after for c in self.chains), default=1.0)
        return (f"activation equalization: {len(self.chains)} conv -> depthwise conv chains rescaled from "
                f"{self.samples} calibration samples (widest / narrowest channel up to {spread:.0f}x before, "
                f"{after:.0f}x after)")

    def to_dict(self) -> dict[str, Any]:
        return {"method": "activations", "chains": [dict(c.__dict__) for c in self.chains],
                "skipped": [list(s) for s in self.skipped], "samples": self.samples}


def equalize_activations(model: onnx.ModelProto, batches: Batches, max_samples: int | None = None
                         ) -> tuple[onnx.ModelProto, ActivationEqualizationReport]:
    """A copy of `model` with the intermediates of its conv chains rescaled (module docstring).

    Raises:
        DataError: there is no data, or a batch does not fit the model.
    """
    work = onnx.ModelProto()
    work.CopyFrom(model)
    chains, skipped = find_chains(GraphIndex.build(work, infer=False))
    chains = [c for c in chains if c.group == c.w1.shape[0] > 1]  # into a depthwise conv
    if not chains:
        return work, ActivationEqualizationReport(skipped=tuple(skipped))
    maxima, samples = _observe(model, chains, batches, max_samples)
    done, changed = [], []
    for c in chains:
        a = maxima[c.second.input[0]]
        s = _depthwise_scale(a)
        if s is None:
            continue
        scale_chain(c, s)
        changed.append(c)
        done.append(ChainScaling(c.first.name, c.second.name, c.activation, len(a), _spread(a), _spread(a / s)))
    write_chains(work, changed)
    return work, ActivationEqualizationReport(tuple(done), tuple(skipped), samples)


def _observe(model: onnx.ModelProto, chains: list[Chain], batches: Batches, max_samples: int | None
             ) -> tuple[dict[str, np.ndarray], int]:
    """Per-channel max |x| (channel axis 1) of every chain's intermediate on the FP32 model."""
    names = sorted({c.second.input[0] for c in chains})
    maxima: dict[str, np.ndarray] = {}
    samples = 0
    for k, (feed, values) in enumerate(run_batches(model, limit_samples(batches, max_samples), names)):
        samples += batch_samples(feed)
        for name in names:
            x = values[name]
            peak = np.abs(x).max(axis=tuple(i for i in range(x.ndim) if i != 1)).astype(np.float64)
            if not np.all(np.isfinite(peak)):
                raise DataError(f"activation {name!r} has NaN/Inf values on batch {k}",
                                hint="check the calibration data")
            maxima[name] = np.maximum(maxima[name], peak) if name in maxima else peak
    if samples == 0:
        raise DataError("there is no calibration data for activation equalization: the batches were empty",
                        hint="check the data path")
    return maxima, samples


def _depthwise_scale(a: np.ndarray) -> np.ndarray | None:
    """s_i = min(1, HEADROOM * a_i / max a) (module docstring); dead channels keep 1; None without data."""
    if not a.size or a.max() <= 0:
        return None
    live = a > DEAD * a.max()
    return np.clip(np.where(live, np.minimum(1.0, HEADROOM * a / a.max()), 1.0), 1 / MAX_SCALE, 1.0)


def _spread(a: np.ndarray) -> float:
    live = a[a > DEAD * a.max()] if a.size and a.max() > 0 else a[:0]
    return float(live.max() / live.min()) if live.size else 1.0
