"""`trtq optimize MODEL`: the graph optimized by onnxslim (trtq.onnx_model.optimize), kept only when its
outputs equal the original's on real data.

"Equal" means, for every output and sample batch, max|optimized - original| <= 1e-5 * max|original|:
folding a BatchNorm into a Conv or folding constants reorders float32 arithmetic, which moves outputs
by a few units in the last place, never by 1e-5 of their range. A larger difference means the
optimizer changed what the model computes, and the model is refused (ModelError, exit 4).

    outcome = optimize_file("model.onnx", "model.optimized.onnx", batches)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from trtq.atomic import check_writable
from trtq.errors import ModelError
from trtq.onnx_model import model as model_io
from trtq.onnx_model.optimize import OptimizeResult, optimize_graph
from trtq.runtime.session import create_session

RTOL = 1e-5


@dataclass(frozen=True)
class OutputCheck:
    """The largest difference of each output, relative to the output's largest magnitude, over all samples."""

    relative: dict[str, float]
    samples: int
    rtol: float = RTOL

    @property
    def passed(self) -> bool:
        return self.samples > 0 and all(v <= self.rtol for v in self.relative.values())

    def summary(self) -> str:
        worst = max(self.relative.items(), key=lambda kv: kv[1]) if self.relative else ("-", 0.0)
        verdict = "equal" if self.passed else "DIFFERENT"
        return (f"outputs {verdict} to the original's on {self.samples} samples: largest relative difference "
                f"{worst[1]:.2e} ({worst[0]}), limit {self.rtol:g}")

    def to_dict(self) -> dict[str, Any]:
        return {"samples": self.samples, "rtol": self.rtol, "passed": self.passed,
                "relative_difference": {k: float(v) for k, v in self.relative.items()}}


@dataclass(frozen=True)
class OptimizeOutcome:
    result: OptimizeResult
    check: OutputCheck
    path: Path | None


def default_optimized_path(model_path: Path, folder: Path | None = None) -> Path:
    return (folder or model_path.parent) / f"{model_path.stem}.optimized.onnx"


def check_outputs(original: onnx.ModelProto, optimized: onnx.ModelProto,
                  batches: Iterable[Mapping[str, np.ndarray]], rtol: float = RTOL) -> OutputCheck:
    """Run both models on ONNX Runtime CPU on the same batches; the largest relative difference per output.

    Sessions come from trtq.runtime.session.create_session, which takes models over 2 GiB too.
    """
    with create_session(original, None, ["CPUExecutionProvider"]) as ref, \
            create_session(optimized, None, ["CPUExecutionProvider"]) as cand:
        return _differences(ref, cand, [o.name for o in original.graph.output], batches, rtol)


def _differences(ref: Any, cand: Any, names: list[str], batches: Iterable[Mapping[str, np.ndarray]],
                 rtol: float) -> OutputCheck:
    worst = dict.fromkeys(names, 0.0)
    scale = dict.fromkeys(names, 0.0)
    samples = 0
    for feed in batches:
        a = ref.run(names, dict(feed))
        b = cand.run(names, dict(feed))
        for name, x, y in zip(names, a, b, strict=True):
            x64, y64 = np.asarray(x, np.float64), np.asarray(y, np.float64)
            if x64.shape != y64.shape or not np.array_equal(np.isfinite(x64), np.isfinite(y64)):
                worst[name] = float("inf")
                continue
            finite = np.isfinite(x64)
            scale[name] = max(scale[name], float(np.abs(x64[finite]).max(initial=0.0)))
            worst[name] = max(worst[name], float(np.abs(x64[finite] - y64[finite]).max(initial=0.0)))
        samples += len(next(iter(feed.values()))) if feed else 0
    relative = {n: worst[n] / scale[n] if scale[n] > 0 else (0.0 if worst[n] == 0 else float("inf")) for n in names}
    return OutputCheck(relative, samples, rtol)


def optimize_checked(model: onnx.ModelProto, batches: Iterable[Mapping[str, np.ndarray]],
                     rtol: float = RTOL) -> tuple[OptimizeResult, OutputCheck]:
    """Optimize `model` and check its outputs.

    Raises:
        ModelError: the optimized model's outputs differ from the original's by more than `rtol`.
        MissingDependencyError: onnxslim is not installed.
    """
    result = optimize_graph(model)
    check = check_outputs(model, result.model, batches, rtol)
    if not check.passed:
        raise ModelError(f"the optimized model is refused: {check.summary()}",
                         hint="run without --optimize (TensorRT does these foldings itself), and report the model "
                              "to onnxslim")
    return result, check


def optimize_file(model_path: str | Path, output: str | Path | None,
                  batches: Iterable[Mapping[str, np.ndarray]]) -> OptimizeOutcome:
    """`trtq optimize`: optimize, check on `batches`, write `output` (default <stem>.optimized.onnx) atomically.

    Models over 2 GiB are written with their weights in an external data file (trtq.onnx_model.model.save_model).
    """
    model_path = Path(model_path)
    out = Path(output) if output else default_optimized_path(model_path)
    check_writable(out.parent, out)
    model = model_io.load_model(model_path)
    result, check = optimize_checked(model, batches)
    model_io.save_model(result.model, out)
    return OptimizeOutcome(result, check, out)
