"""Checking a calibration table against a model, and comparing two tables.

A cache is reused only if it matches the model (docs/design.md, rules): same tensor
names, and -- when it has provenance -- the same graph and weights. TensorRT
itself would accept a stale cache silently (it only checks the header), so
trtq checks before handing one over.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from trtq.cache.table import CalibrationTable, Provenance
from trtq.errors import CacheError
from trtq.onnx_model.model import ModelFingerprint

# Tensor names quoted in a message before "... (N more)".
_SHOWN = 5
# Hash prefix length shown in messages (as ModelFingerprint.short).
_SHORT = 12
_FORCE_HINT = ("recalibrate: delete the cache or give another --cache path, and trtq calibrates anew; or pass --force "
               "to use it anyway")
# A cache without provenance (TensorRT wrote it) is taken for this model only when it names at least this
# share of the model's quantizable tensors: one shared name such as 'x' is no evidence (issue 13.2).
MIN_COVERAGE = 0.5


def check_coverage(table: CalibrationTable, quantizable: Sequence[str], *, force: bool = False,
                   source: str = "the calibration cache") -> list[str]:
    """Refuse a cache without provenance that names too few of the model's quantizable tensors.

    Returns:
        A warning when `force` overrides the refusal, else nothing.

    Raises:
        CacheError: (unless `force`) the cache has no provenance and covers < MIN_COVERAGE of `quantizable`.
    """
    if table.provenance is not None or not quantizable:
        return []
    named = sum(1 for name in quantizable if name in table.amax)
    share = named / len(quantizable)
    if share >= MIN_COVERAGE:
        return []
    text = (f"{source} has no provenance and names only {named} of the model's {len(quantizable)} quantizable "
            f"tensors ({share:.0%} < {MIN_COVERAGE:.0%}): it was probably made for another model")
    if not force:
        raise CacheError(text, hint="give the cache made for this model, calibrate it ('trtq calibrate'), "
                                    "or pass --force to use it anyway")
    return [f"{text}; used anyway (--force)"]


def _quote(names: Sequence[str]) -> str:
    shown = ", ".join(repr(n) for n in names[:_SHOWN])
    return shown + (f", ... ({len(names) - _SHOWN} more)" if len(names) > _SHOWN else "")


def _name_errors(table: CalibrationTable, tensor_names: Sequence[str]) -> list[str]:
    model_names, table_names = set(tensor_names), set(table.amax)
    extra = [n for n in table.amax if n not in model_names]
    missing = [n for n in tensor_names if n not in table_names]
    errors = []
    if extra:
        errors.append(f"{len(extra)} of its {len(table)} tensors are not in the model: {_quote(extra)}")
    if missing:
        errors.append(f"it lacks {len(missing)} of the model's {len(tensor_names)} calibrated tensors: "
                      f"{_quote(missing)}")
    return errors


def _fingerprint_errors(provenance: Provenance, fingerprint: ModelFingerprint) -> list[str]:
    errors = []
    if provenance.model_graph_sha256 != fingerprint.graph:
        errors.append(f"the graph changed since the cache was written (cache for graph "
                      f"{provenance.model_graph_sha256[:_SHORT]}, model has {fingerprint.graph[:_SHORT]})")
    if provenance.model_weights_sha256 != fingerprint.weights:
        errors.append(f"the weights changed since the cache was written (cache for weights "
                      f"{provenance.model_weights_sha256[:_SHORT]}, model has {fingerprint.weights[:_SHORT]})")
    return errors


def _value_problems(table: CalibrationTable) -> tuple[list[str], list[str]]:
    """(errors, warnings) about amax values: non-finite, zero or negative is unusable (a zero scale
    can never be applied: TensorRT rejects it, and implicit INT8 would divide by it)."""
    bad = [n for n, a in table.amax.items() if not math.isfinite(a) or a <= 0]
    errors = [f"amax must be finite and positive, but {len(bad)} tensors have other values: "
              + ", ".join(f"{n!r} ({table.amax[n]})" for n in bad[:_SHOWN])] if bad else []
    return errors, []


def validate_table(table: CalibrationTable, *, fingerprint: ModelFingerprint, tensor_names: list[str],
                   force: bool = False, source: str = "the calibration cache") -> list[str]:
    """Check that `table` fits a model.

    Args:
        table: the cache read back (with provenance from its sidecar, if any).
        fingerprint: trtq.onnx_model.model.fingerprint() of the model.
        tensor_names: the model's calibrated tensors (trtq.onnx_model.tensors.activation_tensors).
        force: report mismatches as warnings instead of raising.
        source: how to name the table in messages (e.g. its path).

    Returns:
        Warnings: no provenance (only names could be checked), and with `force` the mismatches
        that were overridden.

    Raises:
        CacheError: an amax that is NaN, infinite, zero or negative (even with force: no runtime
            can use it); unless `force`, tensors only in the cache or only in the model, or a
            graph or weights fingerprint that differs from the provenance's.
    """
    value_errors, warnings = _value_problems(table)
    if value_errors:
        raise CacheError(f"{source} is unusable: {value_errors[0]}", hint="recalibrate")
    if table.provenance is not None and table.provenance.left_out:  # mask tensors calibration left out
        tensor_names = [n for n in tensor_names if n not in table.provenance.left_out]
    errors = _name_errors(table, tensor_names)
    if table.provenance is None:
        warnings.insert(0, f"{source} has no provenance (no trtq sidecar); only its tensor names were checked "
                           "against the model")
    else:
        errors += _fingerprint_errors(table.provenance, fingerprint)
    if errors and not force:
        raise CacheError(f"{source} does not fit the model: {'; '.join(errors)}", hint=_FORCE_HINT)
    return warnings + [f"{source} does not fit the model, used anyway (--force): {e}" for e in errors]


@dataclass(frozen=True)
class TensorChange:
    """One tensor whose amax differs between two tables; ratio = amax_b / amax_a."""

    name: str
    amax_a: float
    amax_b: float
    ratio: float


@dataclass(frozen=True)
class TableDiff:
    """Differences between tables a and b.

    Attributes:
        only_in_a: names in a but not b (a's order).
        only_in_b: names in b but not a (b's order).
        changed: tensors in both with different amax, largest |log ratio| first.
        unchanged: number of tensors in both with equal amax (within the diff's rtol).
    """

    only_in_a: list[str]
    only_in_b: list[str]
    changed: list[TensorChange]
    unchanged: int

    @property
    def identical(self) -> bool:
        return not (self.only_in_a or self.only_in_b or self.changed)


def _ratio(a: float, b: float) -> float:
    if a == 0:
        return math.inf if b != 0 else 1.0
    return b / a


def _distance(change: TensorChange) -> float:
    """|log ratio|; infinite for ratios that are zero, negative, infinite or NaN."""
    r = change.ratio
    return abs(math.log(r)) if r > 0 and math.isfinite(r) else math.inf


def _same(a: float, b: float, rtol: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=rtol, abs_tol=0.0)


def diff_tables(a: CalibrationTable, b: CalibrationTable, *, rtol: float = 0.0) -> TableDiff:
    """Compare the amax values of two tables.

    Args:
        a, b: the tables.
        rtol: relative difference up to which amax values count as equal; 0 = exact.
            (A TensorRT cache stores float32 scales: ~6e-8 relative rounding.)
    """
    changed = [TensorChange(n, a.amax[n], b.amax[n], _ratio(a.amax[n], b.amax[n]))
               for n in a.amax if n in b.amax and not _same(a.amax[n], b.amax[n], rtol)]
    changed.sort(key=lambda c: (-_distance(c), c.name))
    common = sum(1 for n in a.amax if n in b.amax)
    return TableDiff(
        only_in_a=[n for n in a.amax if n not in b.amax],
        only_in_b=[n for n in b.amax if n not in a.amax],
        changed=changed,
        unchanged=common - len(changed),
    )
