"""Choosing a precision under constraints: the cheapest candidate that meets the accuracy gate and the latency.

    index, reason, met = choose(candidates, target_latency_ms=5.0, has_gate=True)

Rules, in order:
- with an accuracy gate: among the candidates that pass it and fit the latency target (if any), the
  fastest; ties go to the more accurate one. FP32 passes every gate (it is the reference), so some
  candidate always passes; if none of the passing ones fits the target, the fastest passing one is
  chosen and the target is reported as missed (`met` False, exit 1 in `trtq build`).
- with a latency target only: the most accurate candidate (worst output SQNR) that fits it; if none
  does, the fastest, and the target is missed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from trtq.accuracy.gates import Gates
from trtq.accuracy.metrics import json_float


@dataclass(frozen=True)
class Candidate:
    """One configuration considered.

    Attributes:
        name: e.g. "fp32", "fp16", "int8", "int8 + 2 layers in float".
        precision: the main precision (fp32, fp16, int8).
        excluded: layers the fallback left in float (INT8 candidates).
        latency_ms: measured or estimated latency at `batch`.
        latency_source: "measured: ..." (a TensorRT engine) or "estimated: ..." (the cost model).
        sqnr_db: worst output SQNR against FP32 on the held-out samples (inf for FP32 itself).
        top1_agreement: worst top-1 agreement, None without classifier-like outputs.
        failures: messages of the accuracy gates it fails (empty: passes, or no gate).
        accuracy_source: how the accuracy was obtained.
        float_precision: INT8 candidates: the precision of the layers not in INT8 (fp32, or fp16 for
            TensorRT 11's FP16 twin, trtq.qdq.to_fp16_twin).
    """

    name: str
    precision: str
    excluded: tuple[str, ...]
    latency_ms: float
    latency_source: str
    sqnr_db: float
    top1_agreement: float | None
    failures: tuple[str, ...]
    accuracy_source: str
    float_precision: str = "fp32"

    @property
    def accurate_enough(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "precision": self.precision, "excluded": list(self.excluded),
                "latency_ms": json_float(self.latency_ms), "latency_source": self.latency_source,
                "sqnr_db": json_float(self.sqnr_db), "top1_agreement": json_float(self.top1_agreement),
                "passes_accuracy": self.accurate_enough, "failures": list(self.failures),
                "accuracy_source": self.accuracy_source, "float_precision": self.float_precision}


def _fits(c: Candidate, target: float | None) -> bool:
    return target is None or c.latency_ms <= target


def _accuracy_key(c: Candidate) -> tuple[float, float]:
    return (c.top1_agreement if c.top1_agreement is not None else 1.0, c.sqnr_db)


def choose(candidates: Sequence[Candidate], target_latency_ms: float | None,
           has_gate: bool) -> tuple[int, str, bool]:
    """(index of the chosen candidate, why, whether every constraint is met); see the module docstring."""
    if not candidates:
        raise ValueError("no candidates to choose from")
    indices = range(len(candidates))
    if has_gate:
        passing = [i for i in indices if candidates[i].accurate_enough]
        fitting = [i for i in passing if _fits(candidates[i], target_latency_ms)]
        pool = fitting or passing or list(indices)
        best = min(pool, key=lambda i: (candidates[i].latency_ms, tuple(-v for v in _accuracy_key(candidates[i]))))
        c = candidates[best]
        if fitting:
            within = f" and fits {target_latency_ms:g} ms" if target_latency_ms is not None else ""
            return best, f"{c.name} is the fastest candidate that passes the accuracy gate{within}", True
        if passing:
            return best, (f"no candidate that passes the accuracy gate fits {target_latency_ms:g} ms; {c.name} is "
                          f"the fastest that passes ({c.latency_ms:.3g} ms)"), False
        return best, f"no candidate passes the accuracy gate; {c.name} is the fastest", False
    fitting = [i for i in indices if _fits(candidates[i], target_latency_ms)]
    if fitting:
        best = max(fitting, key=lambda i: (*_accuracy_key(candidates[i]), -candidates[i].latency_ms))
        return best, f"{candidates[best].name} is the most accurate candidate within {target_latency_ms:g} ms", True
    best = min(indices, key=lambda i: candidates[i].latency_ms)
    return best, (f"no candidate fits {target_latency_ms:g} ms; {candidates[best].name} is the fastest "
                  f"({candidates[best].latency_ms:.3g} ms)"), False


@dataclass
class Selection:
    """The candidates considered, the one chosen and why."""

    candidates: list[Candidate]
    chosen: int
    reason: str
    met: bool
    gates: Gates
    target_latency_ms: float | None
    batch: int
    notes: list[str] = field(default_factory=list)

    @property
    def choice(self) -> Candidate:
        return self.candidates[self.chosen]

    def summary(self) -> str:
        c = self.choice
        return (f"precision: chose {c.name} ({c.latency_ms:.3g} ms {c.latency_source.split(':')[0]}, worst SQNR "
                f"{c.sqnr_db:.2f} dB) of {len(self.candidates)} candidates: {self.reason}")

    def to_dict(self) -> dict[str, Any]:
        return {"chosen": self.choice.name, "reason": self.reason, "met": self.met,
                "target_latency_ms": self.target_latency_ms, "gates": self.gates.to_dict(), "batch": self.batch,
                "candidates": [c.to_dict() for c in self.candidates], "notes": list(self.notes)}
