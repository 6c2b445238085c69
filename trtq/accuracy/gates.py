"""Accuracy gates: thresholds on a ComparisonResult that decide the exit code.

    failures = check_gates(result, Gates.from_config(config.check))
    raise_on_failures(failures)   # GateFailed, exit 1, if any gate failed

A gate that is not set (None) is not checked. Every set gate is checked on every
output it applies to; a gate that applies to no output fails (a gate that cannot
be evaluated must not pass silently).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from trtq.accuracy.compare import ComparisonResult
from trtq.accuracy.metrics import OutputMetrics, json_float
from trtq.config import CheckConfig
from trtq.errors import ConfigError, GateFailed


@dataclass(frozen=True)
class Gates:
    """Thresholds; None means not checked.

    Attributes:
        min_top1_agreement: minimum fraction (0..1) of samples whose top-1 class matches FP32,
            on every classifier-like ([N, C]) output.
        min_sqnr: minimum SQNR in dB on every output.
        min_cosine: minimum cosine similarity on every output.
        atol, rtol: Polygraphy's elementwise tolerances; every batch of every output must pass.
            compare_models must have been run with the same atol/rtol.
    """

    min_top1_agreement: float | None = None
    min_sqnr: float | None = None
    min_cosine: float | None = None
    atol: float | None = None
    rtol: float | None = None

    @classmethod
    def from_config(cls, check: CheckConfig) -> Gates:
        return cls(check.min_top1_agreement, check.min_sqnr, check.min_cosine, check.atol, check.rtol)

    @property
    def any(self) -> bool:
        """True if at least one gate is set."""
        return any(v is not None for v in asdict(self).values())

    def to_dict(self) -> dict[str, float | None]:
        return asdict(self)


@dataclass(frozen=True)
class GateFailure:
    """One failed gate on one output (output is None when the gate applies to no output)."""

    output: str | None
    metric: str
    value: float | None
    threshold: float
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"output": self.output, "metric": self.metric, "value": json_float(self.value),
                "threshold": self.threshold, "message": self.message}


def _fmt(value: float) -> str:
    return f"{value:.4g}" if math.isfinite(value) else ("inf" if value > 0 else "-inf")


def _minimum(m: OutputMetrics, metric: str, label: str, value: float, threshold: float,
             unit: str = "") -> GateFailure | None:
    if value >= threshold:
        return None
    return GateFailure(m.name, metric, value, threshold,
                       f"output '{m.name}': {label} {_fmt(value)}{unit} < {threshold:g}{unit}")


def _tolerance(m: OutputMetrics, gates: Gates) -> GateFailure | None:
    check = m.tolerance
    atol, rtol = gates.atol or 0.0, gates.rtol or 0.0
    if check is None or check.atol != atol or check.rtol != rtol:
        raise ConfigError(f"the atol/rtol gate ({atol:g}/{rtol:g}) was not run on output '{m.name}'",
                          hint="pass the same atol= and rtol= to compare_models")
    if check.passed:
        return None
    limits = " / ".join(f"{name} {value:g}" for name, value in (("atol", gates.atol), ("rtol", gates.rtol))
                        if value is not None)
    return GateFailure(m.name, "tolerance", check.max_abs_error, atol,
                       f"output '{m.name}': {limits} exceeded in {check.failed_batches} of {check.batches} batches "
                       f"(max abs error {_fmt(check.max_abs_error)}, max rel error {_fmt(check.max_rel_error)})")


def _output_failures(m: OutputMetrics, gates: Gates) -> list[GateFailure | None]:
    found: list[GateFailure | None] = []
    if gates.min_sqnr is not None:
        found.append(_minimum(m, "sqnr_db", "SQNR", m.sqnr_db, gates.min_sqnr, " dB"))
    if gates.min_cosine is not None:
        found.append(_minimum(m, "cosine", "cosine similarity", m.cosine, gates.min_cosine))
    if gates.min_top1_agreement is not None and m.top1_agreement is not None:
        found.append(_minimum(m, "top1_agreement", "top-1 agreement", m.top1_agreement, gates.min_top1_agreement))
    if gates.atol is not None or gates.rtol is not None:
        found.append(_tolerance(m, gates))
    if m.nonfinite:
        found.append(GateFailure(m.name, "nonfinite_mismatches", float(m.nonfinite), 0.0,
                                 f"output '{m.name}': {m.nonfinite} NaN/inf values differ from the reference"))
    return found


def check_gates(result: ComparisonResult, gates: Gates) -> list[GateFailure]:
    """All gate failures of `result`, in output order (empty if every set gate passes or none is set).

    NaN/inf values where the reference has none fail whenever any gate is set.

    Raises:
        ConfigError: an atol/rtol gate is set but compare_models ran without the same tolerances.
    """
    if not gates.any:
        return []
    failures = [f for m in result.outputs.values() for f in _output_failures(m, gates) if f is not None]
    if gates.min_top1_agreement is not None and all(m.top1_agreement is None for m in result.outputs.values()):
        failures.append(GateFailure(None, "top1_agreement", None, gates.min_top1_agreement,
                                    "top-1 agreement gate cannot be checked: no output is classifier-like ([N, C])"))
    return failures


def raise_on_failures(failures: Sequence[GateFailure]) -> None:
    """Raise GateFailed (exit code 1) with the first failure and the count, if there is any."""
    if not failures:
        return
    count = f" (and {len(failures) - 1} more failed gate{'s' * (len(failures) > 2)})" if len(failures) > 1 else ""
    raise GateFailed(f"{failures[0].message}{count}",
                     hint="see the report for every metric; loosen the gate or leave sensitive layers in float")
