"""`trtq prune MODEL`: pruned FP32 model on disk, its sparsity per layer, and what it costs in accuracy.

The cost is measured as `trtq compare` measures a quantized model: the pruned FP32 model against the
unpruned FP32 model on real inputs (output SQNR in dB, trtq.accuracy.compare). Pruning without
fine-tuning always costs something; the number says how much, so it can be weighed against the speed-up
(2:4 sparse kernels on Ampere and newer GPUs).

    outcome = prune_file("model.onnx", None, PruneSettings(pattern="2:4"), batches)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from trtq.accuracy import ComparisonResult, compare_models
from trtq.atomic import check_writable
from trtq.onnx_model import model as model_io
from trtq.onnx_model.pruning import PruneResult, PruneSettings, prune_model


@dataclass(frozen=True)
class PruneOutcome:
    """The pruning, where the model went, and (with data) the pruned model's accuracy against the original."""

    result: PruneResult
    path: Path | None
    comparison: ComparisonResult | None = None

    def accuracy_line(self) -> str:
        return accuracy_line(self.comparison)

    def to_dict(self) -> dict[str, Any]:
        data = self.result.to_dict()
        if self.comparison is not None:
            data["sqnr_db_vs_unpruned"] = {n: m.sqnr_db for n, m in self.comparison.outputs.items()}
            data["samples"] = self.comparison.samples
        return data


def default_pruned_path(model_path: Path, folder: Path | None = None) -> Path:
    return (folder or model_path.parent) / f"{model_path.stem}.pruned.onnx"


def accuracy_line(comparison: ComparisonResult | None) -> str:
    """"pruned FP32 vs unpruned FP32 on N samples: output SQNR X dB (name)", or why it was not measured."""
    if comparison is None:
        return "accuracy cost not measured (no data: give --data, or held-out samples to trtq build)"
    parts = ", ".join(f"{m.sqnr_db:.1f} dB ({name})" for name, m in comparison.outputs.items())
    return f"pruned FP32 vs unpruned FP32 on {comparison.samples} samples: output SQNR {parts}"


def pruning_cost(original: onnx.ModelProto | str | Path, pruned: onnx.ModelProto,
                 batches: Iterable[Mapping[str, np.ndarray]], progress: bool = False) -> ComparisonResult:
    """The pruned model against the original on `batches` (SQNR, cosine, errors per output)."""
    return compare_models(original, pruned, batches, progress=progress)


def prune_file(model_path: str | Path, output: str | Path | None, settings: PruneSettings,
               batches: Iterable[Mapping[str, np.ndarray]] | None = None, progress: bool = False) -> PruneOutcome:
    """Prune `model_path` into `output` (default <stem>.pruned.onnx next to it), atomically; with `batches`,
    measure the accuracy cost.

    Raises:
        ConfigError: bad settings; ModelError: unreadable model; DataError: bad data.
    """
    model_path = Path(model_path)
    out = Path(output) if output else default_pruned_path(model_path)
    check_writable(out.parent, out)
    model = model_io.load_model(model_path)
    result = prune_model(model, settings)
    comparison = pruning_cost(model, result.model, batches, progress) if batches is not None else None
    model_io.save_model(result.model, out)
    return PruneOutcome(result, out, comparison)
