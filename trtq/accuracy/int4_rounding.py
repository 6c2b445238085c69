"""Error-minimizing INT4 weight rounding: GPTQ on the block-wise INT4 grid, from calibration inputs.

Nearest rounding (RTN) makes every weight's own error smallest; at 4 bits the errors of weights
that multiply correlated inputs add up in the layer's output. This pass keeps the block scales of
trtq.qdq.int4_weights (max|w| / 7 per block) as a start and chooses scales and integers in [-8, 7]
to minimise each layer's output error on calibration inputs, E(Q) = sum_o (W - s Q)_o H (W - s Q)_o^T with
H = X^T X. First each block's scale is searched (`search_scales`: AWQ's clip search, alpha * max|w|
/ 7, weighted by the inputs' energy diag(H)), then the integers on that grid come from the GPTQ
solver learned INT8 rounding uses (trtq.qdq.rounding_solvers.gptq_round, Frantar et al. 2022),
which takes per-weight scales for block grids. Row by row the result is never worse than RTN on E:
a row whose searched scales and GPTQ integers have the larger error keeps RTN's.

Weight-only quantization leaves the activations float, so the inputs X are the FP32 model's: one
pass over the data collects H for every layer at once (GPTQ's sequential variant, which measures
each layer on the already quantized earlier layers, costs a pass per layer; on the encoders
measured here one pass was enough to beat RTN). At most `rows_per_sample` random rows (tokens) of
each sample enter H, so memory is K x K per layer plus one batch.

    integers, targets, report = gptq_integers(model, targets, calib_batches)
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx

from trtq.accuracy.evaluation import Batches, batch_samples, limit_samples, run_batches
from trtq.errors import DataError
from trtq.qdq.int4_weights import INT4_HIGH, INT4_LOW, Int4Target, nearest_integers
from trtq.qdq.rounding_solvers import gptq_round, row_errors

DEFAULT_SAMPLES = 64
# Clipping ratios of the block scale search (AWQ's grid: 0.5 to 1 in steps of 0.05).
CLIP_RATIOS = tuple(round(1.0 - 0.05 * i, 2) for i in range(11))
DEFAULT_ROWS_PER_SAMPLE = 256


@dataclass(frozen=True)
class Int4RoundingReport:
    """GPTQ's gain per layer: the output SQNR (dB) on the calibration rows with RTN and with GPTQ."""

    layers: tuple[tuple[str, float, float], ...]
    samples: int
    rows: int
    seconds: float

    def summary(self) -> str:
        gains = [g - n for _, n, g in self.layers if math.isfinite(n) and math.isfinite(g)]
        mean = f", layer output SQNR +{np.mean(gains):.2f} dB on average" if gains else ""
        return (f"INT4 rounding (gptq): {len(self.layers)} layers from {self.samples} calibration samples"
                f"{mean}, {self.seconds:.1f} s")

    def to_dict(self) -> dict[str, Any]:
        return {"samples": self.samples, "rows": self.rows, "seconds": round(self.seconds, 3),
                "layers": [{"node": n, "output_sqnr_nearest": _round(a), "output_sqnr_gptq": _round(b)}
                           for n, a, b in self.layers]}


def _round(x: float) -> float | None:
    return round(x, 3) if math.isfinite(x) else None


def input_moments(model: onnx.ModelProto, targets: Sequence[Int4Target], batches: Batches, *,
                  max_samples: int | None = DEFAULT_SAMPLES, rows_per_sample: int = DEFAULT_ROWS_PER_SAMPLE,
                  seed: int = 0) -> tuple[dict[str, np.ndarray], int, int]:
    """H = X^T X (1, K, K) of every target's input on the float model, one pass over `batches`.

    Returns:
        node -> H, samples seen, rows summed per layer (the most of any layer).

    Raises:
        DataError: no data, or a batch does not fit the model.
    """
    inputs = {t.node: _input_of(model, t.node) for t in targets}
    moments: dict[str, np.ndarray] = {}
    rngs = {t.node: np.random.default_rng([seed, i]) for i, t in enumerate(targets)}
    rows: dict[str, int] = dict.fromkeys(inputs, 0)
    samples = 0
    outputs = sorted(set(inputs.values()))
    for feed, values in run_batches(model, limit_samples(batches, max_samples), outputs):
        n = batch_samples(feed)
        samples += n
        for t in targets:
            x = t.shape.rows(values[inputs[t.node]], rows_per_sample * n, rngs[t.node])
            h = np.matmul(np.swapaxes(x, 1, 2), x).astype(np.float64)
            moments[t.node] = h if t.node not in moments else moments[t.node] + h
            rows[t.node] += x.shape[1]
    if samples == 0:
        raise DataError("there is no calibration data for INT4 rounding: the batches were empty",
                        hint="check the --calib path")
    return moments, samples, max(rows.values(), default=0)


def _input_of(model: onnx.ModelProto, node_name: str) -> str:
    return str(next(n.input[0] for n in model.graph.node if n.name == node_name))


def gptq_integers(model: onnx.ModelProto, targets: Sequence[Int4Target], batches: Batches, *,
                  max_samples: int | None = DEFAULT_SAMPLES, rows_per_sample: int = DEFAULT_ROWS_PER_SAMPLE,
                  seed: int = 0) -> tuple[dict[str, np.ndarray], list[Int4Target], Int4RoundingReport]:
    """GPTQ integers (1, O, K) in [-8, 7] for every target on searched block scales (search_scales), the
    targets with those scales (what apply_int4 writes), and the per-layer gain over RTN.

    Raises:
        DataError: no data, or a batch does not fit the model.
    """
    start = time.perf_counter()
    moments, samples, rows = input_moments(model, targets, batches, max_samples=max_samples,
                                           rows_per_sample=rows_per_sample, seed=seed)
    integers, layers, searched = {}, [], []
    for plain in targets:
        h = moments[plain.node]
        t = search_scales(plain, np.einsum("gkk->gk", h))
        grid = t.grid
        q = gptq_round(t.matrix, grid, h, low=INT4_LOW, high=INT4_HIGH)  # GPTQ's lazy blocks, not INT4's
        base = nearest_integers(plain)
        learned, nearest = row_errors(t.matrix, grid, q, h), row_errors(t.matrix, plain.grid, base, h)
        keep = learned <= nearest  # per output row: never worse than RTN on the objective
        q = np.where(keep[..., None], q, base)
        t = dataclasses.replace(t, scales=np.where(keep[..., None], t.scales, plain.scales))
        signal = float(np.einsum("gok,gkl,gol->", t.matrix, h, t.matrix))
        layers.append((t.node, _db(signal, nearest.sum()), _db(signal, np.minimum(learned, nearest).sum())))
        integers[t.node] = q
        searched.append(t)
    return integers, searched, Int4RoundingReport(tuple(layers), samples, rows, time.perf_counter() - start)


def search_scales(target: Int4Target, energy: np.ndarray) -> Int4Target:
    """Per block, the scale alpha * max|w| / 7 (alpha in CLIP_RATIOS) with the least RTN output error,
    each weight's error weighted by its input's energy diag(H) (AWQ's clip search, Lin et al. 2024,
    with the diagonal of H standing in for the activations): clipping the block's largest weight
    can pay when it makes the step, and so the rounding error of the others, smaller."""
    w, k, b = target.matrix, target.matrix.shape[-1], target.block_size
    blocks = target.scales.shape[-1]
    pad = blocks * b - k
    wp = np.pad(w, ((0, 0), (0, 0), (0, pad))).reshape(*w.shape[:2], blocks, b)
    ep = np.pad(energy, ((0, 0), (0, pad))).reshape(energy.shape[0], 1, blocks, b)
    best, best_error = target.scales, np.full(target.scales.shape, np.inf)
    for ratio in CLIP_RATIOS:
        s = (target.scales * ratio).astype(np.float32).astype(np.float64)
        q = np.clip(np.rint(wp / s[..., None]), INT4_LOW, INT4_HIGH)
        error = ((wp - s[..., None] * q) ** 2 * ep).sum(-1)
        better = error < best_error
        best, best_error = np.where(better, s, best), np.where(better, error, best_error)
    return dataclasses.replace(target, scales=best)


def _db(signal: float, noise: float) -> float:
    noise = max(float(noise), 0.0)
    return math.inf if noise == 0 else 10 * math.log10(max(signal, 1e-300) / noise)
