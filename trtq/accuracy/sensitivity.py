"""Which quantized layers cost the most accuracy: a cheap ranking of all, an exact measure of the worst.

Two measures per quantized layer (a node that reads Q/DQ inputs in the Q/DQ model):

- local SQNR (dB): the layer's output when only *its* inputs are quantized and everything
  before it is FP32, against its FP32 output. All layers are measured in one pass over
  the data, with one "probe" model: the Q/DQ model with every layer rewired to read the
  float tensors (so the main path is FP32) plus, next to each layer, a copy that reads
  the Q/DQ inputs. It isolates each layer's own error, unlike the per-layer view of
  `trtq compare --per-layer`, where errors accumulate along the graph.
- alone (end metric): the model outputs when only this layer is quantized (every other
  layer reads float inputs; same scales as the full Q/DQ model), against FP32: worst
  output SQNR and top-1 agreement. One evaluation pass per layer.

The trade-off: measuring every layer alone costs one pass per layer (hundreds for a
detector), while the local SQNR costs one pass in all but ignores how much an error
matters downstream (a layer whose output is diluted by a larger branch can have a poor
local SQNR and no effect on the outputs). So `layer_sensitivity` ranks all layers by the
local SQNR and measures only the `measure_top` worst alone; the final ranking puts the
measured layers first, worst end metric first, then the rest by local SQNR.

"Only this layer quantized" is made from the Q/DQ model by removing the other layers'
Q/DQ inputs, not by re-quantizing with every other node excluded: exclusion would also
change the layer's own placement (a residual Add is quantized only next to a quantized
Conv; a Concat only when its consumer is), and it would re-run the quantizer each time.

Timing (shared 2-core CPU, PP-OCR direction classifier, 64 samples of 3x48x192, 71
quantized layers): one evaluation pass of the Q/DQ model 0.4-0.8 s; the probe pass 1-4 s
(twice the layers, unfused, every layer output returned); the default ranking with 8
layers measured alone 3-11 s.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx

from trtq.accuracy.evaluation import Batches, Reference, run_batches, worst_pooled_cosine, worst_sqnr, worst_top1
from trtq.accuracy.metrics import json_float
from trtq.accuracy.probe import SqnrSums, only_layers, probe_model, quantized_layers
from trtq.accuracy.tasks import TaskMap, serial_map
from trtq.config import QuantizeConfig
from trtq.qdq import quantize_model

log = logging.getLogger(__name__)

DEFAULT_MEASURE_TOP: int | None = None  # all layers; see the module docstring


@dataclass(frozen=True)
class LayerSensitivity:
    """How much quantizing one layer costs.

    Attributes:
        node: node name.
        op_type: its op type.
        local_sqnr_db: SQNR of its output with only its inputs quantized (FP32 elsewhere), in dB.
        alone_sqnr_db: worst model-output SQNR with only this layer quantized, in dB; None if not measured.
        alone_top1_agreement: top-1 agreement with FP32 in that case (classifier-like outputs), else None.
        alone_pooled_cosine: worst mean pooled-embedding cosine in that case (token embeddings), else None.
    """

    node: str
    op_type: str
    local_sqnr_db: float
    alone_sqnr_db: float | None = None
    alone_top1_agreement: float | None = None
    alone_pooled_cosine: float | None = None

    @property
    def measured(self) -> bool:
        return self.alone_sqnr_db is not None

    def to_dict(self) -> dict[str, Any]:
        return {"node": self.node, "op_type": self.op_type, "local_sqnr_db": json_float(self.local_sqnr_db),
                "alone_sqnr_db": json_float(self.alone_sqnr_db), "alone_top1_agreement": self.alone_top1_agreement,
                "alone_pooled_cosine": json_float(self.alone_pooled_cosine)}


def local_sqnr(qdq_model: onnx.ModelProto, batches: Batches, weights_dir: Path | None = None) -> dict[str, float]:
    """node name -> local SQNR (dB) of every quantized layer, from one pass (see the module docstring).

    `weights_dir`: where the model's weights left in files are (trtq.accuracy.evaluation.run_batches).

    Raises:
        DataError: no data, or a batch does not fit the model.
        ModelError: ONNX Runtime cannot load the probe model.
    """
    probe, pairs = probe_model(qdq_model)
    if not pairs:
        return {}
    outputs = [t for pair in pairs.values() for t in pair]
    sums = {node: SqnrSums() for node in pairs}
    for _, values in run_batches(probe, batches, list(dict.fromkeys(outputs)), weights_dir):
        for node, (ref, cand) in pairs.items():
            sums[node].update(values[ref], values[cand])
    return {node: s.sqnr_db for node, s in sums.items()}


def layer_sensitivity(model: onnx.ModelProto, amax: Mapping[str, float], batches: Batches,
                      quantize_config: QuantizeConfig | None = None, *, measure_top: int | None = DEFAULT_MEASURE_TOP,
                      reference: Reference | None = None, show_progress: bool = False,
                      rank_by: str = "sqnr", tasks: TaskMap | None = None,
                      weights_dir: Path | None = None) -> list[LayerSensitivity]:
    """Rank the quantized layers of `model`, most sensitive first (see the module docstring).

    Args:
        model: the FP32 model.
        amax: activation ranges, as for trtq.qdq.quantize_model.
        batches: evaluation feed dicts (see trtq.accuracy.evaluation.Batches); ignored when `reference` is given.
        quantize_config: quantizer settings (weights are kept as float + Q/DQ here, which computes
            the same values as pre-quantized INT8 weights).
        measure_top: how many layers, worst local SQNR first, to measure alone; None measures all.
        reference: FP32 outputs already computed on the evaluation batches (e.g. by the fallback).
        show_progress: a progress bar over the layers measured alone.
        rank_by: "sqnr" (worst output SQNR) or "pooled_cosine" (worst mean pooled-embedding cosine of
            token-embedding outputs; SQNR where a model has none) for the layers measured alone.
        tasks: runs the measurements alone (default: one after the other; trtq.cluster.tasks.RayMap in
            parallel); the ranking is the same either way.
        weights_dir: the folder of the weights `model` left in files (loaded by reference): the quantizer
            and every session read them there.

    Returns:
        One entry per quantized layer: measured ones first (worst by `rank_by` first), then the
        others by local SQNR (worst first).
    """
    start = time.perf_counter()
    options = dataclasses.replace(quantize_config or QuantizeConfig(), weights="qdq")
    qdq = quantize_model(model, amax, options, weights_dir).model
    reference = reference or Reference(model, batches, weights_dir=weights_dir)
    local = local_sqnr(qdq, reference.batches, weights_dir)
    layers = [LayerSensitivity(name, op, local.get(name, math.inf)) for name, op in quantized_layers(qdq)]
    by_local = sorted(layers, key=lambda s: s.local_sqnr_db)
    count = len(by_local) if measure_top is None else max(0, min(measure_top, len(by_local)))
    measured = (tasks or serial_map)(measure_alone, (qdq, reference), by_local[:count], desc="sensitivity",
                                     unit="layer", show_progress=show_progress)
    if rank_by not in ("sqnr", "pooled_cosine"):
        raise ValueError(f"rank_by must be 'sqnr' or 'pooled_cosine', got {rank_by!r}")
    if rank_by == "pooled_cosine" and all(s.alone_pooled_cosine is not None for s in measured):
        measured.sort(key=lambda s: (s.alone_pooled_cosine, s.alone_sqnr_db, s.local_sqnr_db))
    else:
        measured.sort(key=lambda s: (s.alone_sqnr_db, s.local_sqnr_db))
    log.info("sensitivity of %d layers (%d measured alone) in %.1f s", len(layers), count,
             time.perf_counter() - start)
    return measured + by_local[count:]


def measure_alone(shared: tuple[onnx.ModelProto, Reference], layer: LayerSensitivity) -> LayerSensitivity:
    """`layer` with its end metrics when it alone is quantized; `shared` is (the Q/DQ model, the reference)."""
    qdq, reference = shared
    result = reference.measure(only_layers(qdq, [layer.node]), label=f"only {layer.node} quantized")
    return dataclasses.replace(layer, alone_sqnr_db=worst_sqnr(result), alone_top1_agreement=worst_top1(result),
                               alone_pooled_cosine=worst_pooled_cosine(result))


def ranking_table(layers: Sequence[LayerSensitivity]) -> list[dict[str, Any]]:
    """The ranking as plain rows (rank from 1) for the report."""
    return [{"rank": i + 1, **s.to_dict()} for i, s in enumerate(layers)]
