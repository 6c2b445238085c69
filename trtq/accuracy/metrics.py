"""Streaming accuracy metrics of a candidate's outputs against a reference's.

Every accumulator takes one batch at a time and keeps only sums, counts and
fixed-size histograms, so memory does not grow with the number of samples, and
feeding the data in any chunking gives the same result as one big array (sums
up to float64 rounding, histograms and counts exactly). `merge` combines two
accumulators of disjoint data.

Definitions (r = reference, c = candidate, over all elements of all samples):
    abs error     |c - r|
    rel error     |c - r| / |r|, where r == 0 is replaced by 2.22e-16 -- the
                  same rule Polygraphy's SimpleCompareFunc uses, so rtol
                  gates and these numbers agree (a zero reference against a
                  non-zero candidate therefore gives a huge relative error)
    cosine        sum(r c) / sqrt(sum(r^2) sum(c^2))            (global)
    SQNR          10 log10(sum(r^2) / sum((r - c)^2)) in dB; inf when identical
    p99           99th percentile (inverted CDF, i.e. the ceil(0.99 n)-th
                  smallest value) read from a log-spaced histogram with 200
                  bins per decade from 1e-15 to 1e15: the reported value is the
                  geometric bin centre, within ~1.2 % of the exact value; errors
                  below 1e-15 count as 0 and above 1e15 as the maximum.
    top-1 agreement  fraction of samples whose argmax is the same
    top-5 agreement  fraction of samples whose reference argmax is among the
                  candidate's 5 largest scores (only for more than 5 classes)
    pooled cosine for an [N, L, H] output of a model with an attention mask [N, L]
                  (token embeddings): per sample, the cosine of the mean over the
                  real tokens (mask != 0) of r and of c -- the sentence embedding
                  of mean-pooling encoders (sentence-transformers) -- reported as
                  its mean and its worst (minimum) over the samples; the other
                  metrics of such an output are taken over the real tokens only

Elements where r or c is NaN/inf are left out of every sum; those where the two
differ are counted as `nonfinite` mismatches.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# Polygraphy's epsilon for zero reference values in relative errors (comparator/compare.py).
REL_EPSILON = 2.220446049250313e-16


def json_float(value: float | None) -> float | str | None:
    """A float as JSON data: infinities and NaN become the strings "inf", "-inf" and "nan"."""
    if value is None:
        return None
    value = float(value)
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value


def sqnr_from_sums(signal: float, noise: float) -> float:
    """10 log10(signal / noise) in dB: inf for zero noise, -inf for zero signal with noise."""
    if noise == 0.0:
        return math.inf
    if signal == 0.0:
        return -math.inf
    return 10.0 * math.log10(signal / noise)


def cosine_from_sums(cross: float, ref2: float, cand2: float) -> float:
    """sum(r c) / sqrt(sum r^2 * sum c^2); 1 when both are all zero, 0 when only one is."""
    if ref2 == 0.0 or cand2 == 0.0:
        return 1.0 if ref2 == cand2 else 0.0
    return cross / (math.sqrt(ref2) * math.sqrt(cand2))


def pooled_cosines(ref: np.ndarray, cand: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per sample: cosine of the masked mean over axis 1 of `ref` and of `cand` ([N, L, H], mask [N, L]).

    A sample without real tokens pools to zeros (cosine 1 if both are zero, as cosine_from_sums).
    """
    weights = (np.asarray(mask) != 0).astype(np.float64)[:, :, None]
    counts = np.maximum(weights.sum(axis=1), 1.0)
    r = (np.asarray(ref, np.float64) * weights).sum(axis=1) / counts
    c = (np.asarray(cand, np.float64) * weights).sum(axis=1) / counts
    return np.array([cosine_from_sums(float(a @ b), float(a @ a), float(b @ b)) for a, b in zip(r, c, strict=True)])


def token_mask_for(output: np.ndarray, mask: np.ndarray | None) -> np.ndarray | None:
    """`mask` if `output` is token embeddings it applies to ([N, L, H] with mask [N, L]), else None."""
    if mask is None or output.ndim != 3 or mask.ndim != 2 or tuple(output.shape[:2]) != tuple(mask.shape):
        return None
    return mask


@dataclass
class PooledCosine:
    """Streaming mean and minimum of the per-sample pooled cosine (see pooled_cosines)."""

    samples: int = 0
    total: float = 0.0
    worst: float = math.inf

    def update(self, ref: np.ndarray, cand: np.ndarray, mask: np.ndarray) -> None:
        values = pooled_cosines(ref, cand, mask)
        finite = values[np.isfinite(values)]
        self.samples += int(finite.size)
        self.total += float(finite.sum())
        if finite.size:
            self.worst = min(self.worst, float(finite.min()))

    def merge(self, other: PooledCosine) -> None:
        self.samples += other.samples
        self.total += other.total
        self.worst = min(self.worst, other.worst)

    @property
    def mean(self) -> float | None:
        return self.total / self.samples if self.samples else None

    @property
    def minimum(self) -> float | None:
        return self.worst if self.samples else None


@dataclass
class ErrorSums:
    """Sums behind SQNR, cosine and the absolute error: enough for a per-layer summary."""

    elements: int = 0
    nonfinite: int = 0
    sum_ref2: float = 0.0
    sum_cand2: float = 0.0
    sum_cross: float = 0.0
    sum_err2: float = 0.0
    sum_abs: float = 0.0
    max_abs: float = 0.0

    def update(self, ref: np.ndarray, cand: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Add one batch (same number of elements in both); returns the finite (ref, abs error) as float64."""
        r = np.asarray(ref, dtype=np.float64).ravel()
        c = np.asarray(cand, dtype=np.float64).ravel()
        finite = np.isfinite(r) & np.isfinite(c)
        if not finite.all():
            bad_r, bad_c = r[~finite], c[~finite]
            same = (bad_r == bad_c) | (np.isnan(bad_r) & np.isnan(bad_c))
            self.nonfinite += int((~same).sum())
            r, c = r[finite], c[finite]
        err = c - r
        abs_err = np.abs(err)
        self.elements += r.size
        self.sum_ref2 += float(np.dot(r, r))
        self.sum_cand2 += float(np.dot(c, c))
        self.sum_cross += float(np.dot(r, c))
        self.sum_err2 += float(np.dot(err, err))
        self.sum_abs += float(abs_err.sum())
        if abs_err.size:
            self.max_abs = max(self.max_abs, float(abs_err.max()))
        return r, abs_err

    def merge(self, other: ErrorSums) -> None:
        """Add the sums of `other` (disjoint data) to these."""
        for name in ("elements", "nonfinite", "sum_ref2", "sum_cand2", "sum_cross", "sum_err2", "sum_abs"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.max_abs = max(self.max_abs, other.max_abs)

    @property
    def sqnr_db(self) -> float:
        """NaN when no finite element was compared (all NaN/Inf outputs are no perfect score)."""
        return sqnr_from_sums(self.sum_ref2, self.sum_err2) if self.elements else math.nan

    @property
    def cosine(self) -> float:
        """NaN when no finite element was compared."""
        return cosine_from_sums(self.sum_cross, self.sum_ref2, self.sum_cand2) if self.elements else math.nan

    @property
    def mean_abs(self) -> float | None:
        return self.sum_abs / self.elements if self.elements else None


@dataclass
class LogHistogram:
    """Counts of non-negative values in log-spaced bins (see the module docstring for the layout).

    counts[0] holds values below 1e-15 (including 0), counts[-1] values of 1e15 and more.
    """

    BINS_PER_DECADE = 200
    LOW_EXP = -15
    HIGH_EXP = 15
    counts: np.ndarray = field(default_factory=lambda: np.zeros(
        (LogHistogram.HIGH_EXP - LogHistogram.LOW_EXP) * LogHistogram.BINS_PER_DECADE + 2, np.int64))

    @property
    def _bins(self) -> int:
        return self.counts.size - 2

    def update(self, values: np.ndarray) -> None:
        """Count `values` (finite, >= 0)."""
        values = np.asarray(values, dtype=np.float64).ravel()
        if not values.size:
            return
        index = np.zeros(values.size, np.int64)
        positive = values >= 10.0**self.LOW_EXP
        with np.errstate(divide="ignore"):
            scaled = (np.log10(values[positive]) - self.LOW_EXP) * self.BINS_PER_DECADE
        index[positive] = np.minimum(np.floor(scaled).astype(np.int64) + 1, self._bins + 1)
        self.counts += np.bincount(index, minlength=self.counts.size)

    def merge(self, other: LogHistogram) -> None:
        self.counts += other.counts

    def quantile(self, q: float, max_value: float) -> float | None:
        """The q-quantile (inverted CDF) as the geometric centre of its bin, capped at `max_value`."""
        total = int(self.counts.sum())
        if total == 0:
            return None
        rank = max(1, math.ceil(q * total - 1e-9))  # tolerate q * total rounding up
        index = int(np.searchsorted(np.cumsum(self.counts), rank))
        if index == 0:
            return 0.0
        if index > self._bins:
            return max_value
        low_exp = self.LOW_EXP + (index - 1 + 0.5) / self.BINS_PER_DECADE
        return min(float(10.0**low_exp), max_value)


def class_scores(output: np.ndarray, samples: int) -> np.ndarray | None:
    """`output` as [samples, classes] if it is classifier-like ([N, C] after squeezing size-1 axes), else None."""
    if output.ndim < 2 or output.shape[0] != samples:
        return None
    kept = [output.shape[0], *[d for d in output.shape[1:] if d != 1]]
    if len(kept) != 2 or kept[1] < 2:
        return None
    return output.reshape(kept)


@dataclass
class ClassAgreement:
    """Top-1/top-5 agreement of per-sample class scores, and top-1 accuracy against labels."""

    samples: int = 0
    top1_agree: int = 0
    top5_agree: int = 0
    classes: int = 0
    labeled: int = 0
    ref_correct: int = 0
    cand_correct: int = 0

    def update(self, ref: np.ndarray, cand: np.ndarray, labels: np.ndarray | None = None) -> None:
        """Add a batch of [N, C] scores; `labels` holds a class index per sample, -1 for unlabeled."""
        ref_top1 = np.argmax(ref, axis=1)
        cand_top1 = np.argmax(cand, axis=1)
        self.samples += ref.shape[0]
        self.classes = ref.shape[1]
        self.top1_agree += int((ref_top1 == cand_top1).sum())
        if self.classes > 5:
            top5 = np.argpartition(-np.asarray(cand, np.float64), 4, axis=1)[:, :5]
            self.top5_agree += int((top5 == ref_top1[:, None]).any(axis=1).sum())
        if labels is not None:
            known = labels >= 0
            self.labeled += int(known.sum())
            self.ref_correct += int((ref_top1[known] == labels[known]).sum())
            self.cand_correct += int((cand_top1[known] == labels[known]).sum())

    def merge(self, other: ClassAgreement) -> None:
        for name in ("samples", "top1_agree", "top5_agree", "labeled", "ref_correct", "cand_correct"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.classes = self.classes or other.classes

    def rates(self) -> dict[str, float | None]:
        """Agreements and accuracies as fractions (None where undefined)."""
        def ratio(count: int, total: int) -> float | None:
            return count / total if total else None

        return {
            "top1_agreement": ratio(self.top1_agree, self.samples),
            "top5_agreement": ratio(self.top5_agree, self.samples) if self.classes > 5 else None,
            "reference_top1_accuracy": ratio(self.ref_correct, self.labeled),
            "candidate_top1_accuracy": ratio(self.cand_correct, self.labeled),
        }


@dataclass(frozen=True)
class ToleranceCheck:
    """Polygraphy's elementwise atol/rtol verdict for one output (SimpleCompareFunc, stat "elemwise").

    An element fails when its absolute error > atol *and* its relative error > rtol; a batch fails
    when any element does.
    """

    atol: float
    rtol: float
    batches: int
    failed_batches: int
    max_abs_error: float
    max_rel_error: float

    @property
    def passed(self) -> bool:
        return self.failed_batches == 0

    def to_dict(self) -> dict[str, Any]:
        return {"atol": self.atol, "rtol": self.rtol, "batches": self.batches,
                "failed_batches": self.failed_batches, "passed": self.passed,
                "max_abs_error": json_float(self.max_abs_error), "max_rel_error": json_float(self.max_rel_error)}


@dataclass(frozen=True)
class OutputMetrics:
    """Accuracy of one output over all compared samples (see the module docstring for definitions)."""

    name: str
    shape: tuple[int, ...]
    samples: int
    elements: int
    nonfinite: int
    max_abs_error: float
    mean_abs_error: float | None
    p99_abs_error: float | None
    max_rel_error: float
    mean_rel_error: float | None
    p99_rel_error: float | None
    cosine: float
    sqnr_db: float
    top1_agreement: float | None = None
    top5_agreement: float | None = None
    reference_top1_accuracy: float | None = None
    candidate_top1_accuracy: float | None = None
    labeled_samples: int = 0
    tolerance: ToleranceCheck | None = None
    pooled_cosine_mean: float | None = None
    pooled_cosine_min: float | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"shape": list(self.shape), "samples": self.samples, "elements": self.elements,
                                "nonfinite_mismatches": self.nonfinite, "labeled_samples": self.labeled_samples}
        for name in ("max_abs_error", "mean_abs_error", "p99_abs_error", "max_rel_error", "mean_rel_error",
                     "p99_rel_error", "cosine", "sqnr_db", "top1_agreement", "top5_agreement",
                     "reference_top1_accuracy", "candidate_top1_accuracy", "pooled_cosine_mean",
                     "pooled_cosine_min"):
            data[name] = json_float(getattr(self, name))
        data["tolerance"] = self.tolerance.to_dict() if self.tolerance else None
        return data


class OutputAccumulator:
    """All metrics of one model output, updated batch by batch."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.shape: tuple[int, ...] = ()
        self.samples = 0
        self.sums = ErrorSums()
        self.abs_hist = LogHistogram()
        self.rel_hist = LogHistogram()
        self.sum_rel = 0.0
        self.max_rel = 0.0
        # None until the first batch decides whether the output is classifier-like.
        self.classes: ClassAgreement | None = None
        self._classifier: bool | None = None
        self.pooled: PooledCosine | None = None

    def update(self, ref: np.ndarray, cand: np.ndarray, samples: int, labels: np.ndarray | None = None,
               mask: np.ndarray | None = None) -> None:
        """Add one batch: `ref` and `cand` of equal size, `samples` samples along axis 0; `mask` is the
        model's attention mask [N, L] for the pooled cosine of token embeddings, if it has one."""
        self.shape = tuple(ref.shape)
        token_mask = token_mask_for(ref, mask)
        if token_mask is not None:
            cand = cand.reshape(ref.shape)
            self.pooled = self.pooled or PooledCosine()
            self.pooled.update(ref, cand, token_mask)
        self.samples += samples
        # Token embeddings: the element metrics over the real tokens only. A padded position's output
        # is read by nothing, and the Q/DQ model's differs from FP32's there far more (MPNet's
        # token SQNR: 6.3 dB with them, 14.9 dB without).
        real = token_mask.astype(bool) if token_mask is not None else slice(None)
        r, abs_err = self.sums.update(ref[real], cand[real])
        rel = abs_err / np.where(r == 0.0, REL_EPSILON, np.abs(r))
        self.abs_hist.update(abs_err)
        self.rel_hist.update(rel)
        self.sum_rel += float(rel.sum())
        if rel.size:
            self.max_rel = max(self.max_rel, float(rel.max()))
        self._update_classes(ref, cand.reshape(ref.shape), samples, labels)

    def _update_classes(self, ref: np.ndarray, cand: np.ndarray, samples: int, labels: np.ndarray | None) -> None:
        ref_scores = class_scores(ref, samples)
        if self._classifier is None:
            self._classifier = ref_scores is not None
            self.classes = ClassAgreement() if self._classifier else None
        if self.classes is None:
            return
        if ref_scores is None:  # a later batch is not [N, C] after all: drop the class metrics
            self._classifier, self.classes = False, None
            return
        self.classes.update(ref_scores, cand.reshape(ref_scores.shape), labels)

    def merge(self, other: OutputAccumulator) -> None:
        """Add `other` (same output, disjoint data)."""
        self.samples += other.samples
        self.shape = self.shape or other.shape
        self.sums.merge(other.sums)
        self.abs_hist.merge(other.abs_hist)
        self.rel_hist.merge(other.rel_hist)
        self.sum_rel += other.sum_rel
        self.max_rel = max(self.max_rel, other.max_rel)
        if other.pooled is not None:
            self.pooled = self.pooled or PooledCosine()
            self.pooled.merge(other.pooled)
        if self.classes is not None and other.classes is not None:
            self.classes.merge(other.classes)
        elif other._classifier is False or self._classifier is False:
            self._classifier, self.classes = False, None
        elif self._classifier is None:
            self._classifier, self.classes = other._classifier, other.classes

    def result(self) -> OutputMetrics:
        sums = self.sums
        rates = self.classes.rates() if self.classes else {}
        return OutputMetrics(
            name=self.name, shape=self.shape, samples=self.samples, elements=sums.elements,
            nonfinite=sums.nonfinite, max_abs_error=sums.max_abs, mean_abs_error=sums.mean_abs,
            p99_abs_error=self.abs_hist.quantile(0.99, sums.max_abs), max_rel_error=self.max_rel,
            mean_rel_error=self.sum_rel / sums.elements if sums.elements else None,
            p99_rel_error=self.rel_hist.quantile(0.99, self.max_rel), cosine=sums.cosine, sqnr_db=sums.sqnr_db,
            top1_agreement=rates.get("top1_agreement"), top5_agreement=rates.get("top5_agreement"),
            reference_top1_accuracy=rates.get("reference_top1_accuracy"),
            candidate_top1_accuracy=rates.get("candidate_top1_accuracy"),
            labeled_samples=self.classes.labeled if self.classes else 0,
            pooled_cosine_mean=self.pooled.mean if self.pooled else None,
            pooled_cosine_min=self.pooled.minimum if self.pooled else None,
        )


@dataclass(frozen=True)
class LayerMetrics:
    """SQNR of one intermediate tensor of the candidate against the reference (errors accumulated up to it)."""

    tensor: str
    op_type: str
    sqnr_db: float
    cosine: float
    max_abs_error: float

    def to_dict(self) -> dict[str, Any]:
        return {"tensor": self.tensor, "op_type": self.op_type, "sqnr_db": json_float(self.sqnr_db),
                "cosine": json_float(self.cosine), "max_abs_error": json_float(self.max_abs_error)}


def layer_metrics(tensor: str, op_type: str, sums: ErrorSums) -> LayerMetrics:
    """The per-layer summary of accumulated `sums`."""
    return LayerMetrics(tensor, op_type, sums.sqnr_db, sums.cosine, sums.max_abs)
