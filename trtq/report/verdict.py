"""The verdict that opens report.md, and the legend of its metrics.

The verdict answers, in this order: what was built; how close it is to FP32, in words and numbers;
whether that is good enough (by the gates when there are some, else by the rules of thumb below);
and, when it is not, the one command that would most likely improve it. It reads only the report's
JSON data (trtq.report.report.Report.to_dict), so a report.json from disk renders the same way.

Rules of thumb (not laws: the task's own metric decides). SQNR is 10 log10(signal power / error
power), so the error's RMS is 10^(-SQNR/20) of the output's: 10 % at 20 dB, 3 % at 30 dB, 32 % at
10 dB. INT8 post-training quantization of a CNN usually lands at 20-30 dB on its outputs; below
20 dB a detector's boxes or a classifier's ranking start to move. Top-1 agreement and pooled
cosine use the bands sentence encoders and classifiers are usually judged by (a 1 % change of
answers, a 0.98 mean cosine).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

VERY_CLOSE, CLOSE, OFF, FAR = "very close to FP32", "close to FP32", "noticeably different from FP32", "far from FP32"
GOOD_ENOUGH = (VERY_CLOSE, CLOSE)
# metric -> (lower bound, rating), best first.
BANDS: dict[str, tuple[tuple[float, str], ...]] = {
    "sqnr_db": ((30.0, VERY_CLOSE), (20.0, CLOSE), (10.0, OFF), (-math.inf, FAR)),
    "top1_agreement": ((0.99, VERY_CLOSE), (0.97, CLOSE), (0.90, OFF), (-math.inf, FAR)),
    "pooled_cosine_mean": ((0.99, VERY_CLOSE), (0.98, CLOSE), (0.95, OFF), (-math.inf, FAR)),
}
# The gate the improvement command asks for, per metric: the lower bound of "close".
SUGGESTED_GATES = {"sqnr_db": ("--min-sqnr", 20.0), "top1_agreement": ("--min-top1-agreement", 0.97),
                   "pooled_cosine_mean": ("--min-cosine", 0.98)}
GATE_FLAGS = {"min_sqnr": "--min-sqnr", "min_top1_agreement": "--min-top1-agreement", "min_cosine": "--min-cosine",
              "atol": "--atol", "rtol": "--rtol"}
# Fewer held-out samples than this make the numbers noisy (one odd sample moves them).
FEW_SAMPLES = 32
# Relative errors above this come from FP32 values at or near zero (see the legend): not shown as numbers.
MAX_SHOWN_REL = 1000.0

STATUS_MEANING = {
    "passed": "every accuracy gate holds (exit code 0)",
    "failed": "an accuracy gate failed (exit code 1)",
    "unchecked": "no accuracy gate was set (--min-sqnr, --min-top1-agreement, --min-cosine, --atol/--rtol), so trtq "
                 "passed or failed nothing (exit code 0) and the rules of thumb of the legend judge instead",
}


@dataclass(frozen=True)
class Judgement:
    """One metric of one output, rated against its band."""

    output: str
    metric: str
    value: float
    rating: str

    @property
    def rank(self) -> int:
        """0 for the best rating, 3 for the worst."""
        return [r for _, r in BANDS[self.metric]].index(self.rating)


def rate(metric: str, value: float) -> str:
    """The rating of `value` by the bands of `metric`."""
    return next(rating for bound, rating in BANDS[metric] if value >= bound)


def judgements(outputs: Mapping[str, Mapping[str, Any]]) -> list[Judgement]:
    """Every rated metric of every output, worst first (SQNR, top-1 agreement, pooled cosine where present).
    Token embeddings are rated by their pooled cosine alone: the sentence embedding is what such a
    model is used for (and what --min-cosine checks), and a per-token SQNR of 15 dB already gives a
    pooled cosine of 0.99 on all-mpnet-base-v2."""
    found = []
    for name, m in outputs.items():
        for metric in ("pooled_cosine_mean",) if m.get("pooled_cosine_mean") is not None else BANDS:
            value = m.get(metric)
            if isinstance(value, str):  # "inf" in report.json: identical outputs
                value = math.inf if value == "inf" else None
            if value is not None and not math.isnan(value):
                found.append(Judgement(name, metric, float(value), rate(metric, float(value))))
    return sorted(found, key=lambda j: (-j.rank, j.metric != "sqnr_db"))


def format_db(value: Any) -> str:
    """An SQNR as report.md and the console show it: two decimals."""
    if value is None:
        return "–"
    if isinstance(value, str) or math.isinf(value) or math.isnan(value):
        return str(value)
    return f"{value:.2f}"


def _number(j: Judgement) -> str:
    if j.metric == "sqnr_db":
        error = "" if math.isinf(j.value) else f", error RMS {100 * 10 ** (-j.value / 20):.2g} % of the output's"
        return f"SQNR {format_db(j.value)} dB{error}"
    label = "top-1 agreement" if j.metric == "top1_agreement" else "mean pooled cosine"
    return f"{label} {j.value:.4g}"


def _built(data: Mapping[str, Any]) -> str:
    artifacts, config = data["artifacts"], data.get("config") or {}
    if data["command"] != "build":
        comparison = data.get("comparison") or {}
        return f"compared `{comparison.get('candidate')}` with the FP32 model `{comparison.get('reference')}`"
    precision = str((config.get("quantize") or {}).get("precision", "int8")).upper()
    parts = [f"{precision} Q/DQ model `{artifacts['qdq_model']}`"] if "qdq_model" in artifacts else []
    if "calibration_cache" in artifacts:
        parts.append(f"TensorRT calibration cache `{artifacts['calibration_cache']}`")
    if "engine" in artifacts:
        parts.append(f"TensorRT engine `{artifacts['engine']}`")
    text = " and ".join([", ".join(parts[:-1]), parts[-1]] if len(parts) > 1 else parts) or "nothing"
    fallback = (data.get("accuracy") or {}).get("fallback")
    if fallback and fallback["excluded"]:
        text += f", {len(fallback['excluded'])} layer(s) left in float by the fallback"
    engine_skip = next((s["reason"] for s in data["skipped"] if s["step"] == "engine"), None)
    if engine_skip:
        text += f"; no engine ({engine_skip.split(';')[0]})"
    return text


def _closeness(comparison: Mapping[str, Any], found: Sequence[Judgement]) -> str:
    worst = found[0]
    where = f"output `{worst.output}`" if len(comparison["outputs"]) == 1 else f"worst output `{worst.output}`"
    others = [j for j in found[1:] if j.output == worst.output]
    numbers = "; ".join(_number(j) for j in [worst, *others])
    cosine = comparison["outputs"][worst.output].get("cosine")
    if isinstance(cosine, float):
        numbers += f"; cosine {cosine:.5f}"
    samples = comparison["samples"]
    noisy = f" (only {samples} held-out samples: the numbers are noisy)" if samples < FEW_SAMPLES else ""
    return f"{worst.rating}: {where}, {numbers}, on {samples} held-out samples{noisy}."


def _gate_flags(thresholds: Mapping[str, Any]) -> list[str]:
    return [f"{GATE_FLAGS[k]} {v:g}" for k, v in thresholds.items() if v is not None and k in GATE_FLAGS]


def improve_command(data: Mapping[str, Any], worst: Judgement | None) -> str:
    """The one command most likely to improve a poor result (activation ranges by layer output error, and the
    fallback with a gate, or more room for it); `...` stands for the run's other options."""
    config = data.get("config") or {}
    check, quantize = config.get("check") or {}, config.get("quantize") or {}
    gates = data.get("gates")
    flags = _gate_flags(gates["thresholds"]) if gates else []
    if not flags and worst is not None:
        flag, bound = SUGGESTED_GATES[worst.metric]
        flags = [f"{flag} {bound:g}"]
    if quantize.get("activation_ranges", "histogram") == "histogram" and quantize.get("precision", "int8") == "int8" \
            and not quantize.get("fast"):
        flags.append("--activation-ranges layer-output")  # every layer stays INT8: the fallback then needs fewer
    fallback = (data.get("accuracy") or {}).get("fallback")
    if fallback:  # the fallback ran and spent its budget: give it more room
        flags.append(f"--fallback --max-excluded {2 * int(check.get('max_excluded') or 10)}")
    else:
        flags.append("--fallback")
    if quantize.get("bias_correction", "none") == "none":
        flags.append("--bias-correction auto")
    model = data.get("provenance", {}).get("model") or (data.get("comparison") or {}).get("reference") or "MODEL"
    calib = (config.get("data") or {}).get("calib") or "DATA"
    return f"trtq build {model} --calib {calib} ... {' '.join(flags)}"


def verdict_lines(data: Mapping[str, Any]) -> list[str]:
    """The `## Verdict` section of report.md."""
    status, comparison, gates = data["status"], data.get("comparison"), data.get("gates")
    lines = ["## Verdict", "", f"- **Built:** {_built(data)}."]
    found = judgements(comparison["outputs"]) if comparison else []
    if not comparison or not found:
        lines.append("- **Accuracy vs FP32:** not measured (no held-out samples); measure it with "
                     "`trtq compare FP32_MODEL QDQ_MODEL --data HELD_OUT`.")
        lines.append(f"- **Status: {status}**: {STATUS_MEANING[status]}.")
        return lines
    worst = found[0]
    lines.append(f"- **Accuracy vs FP32:** {_closeness(comparison, found)}")
    if gates is not None:
        held = "; ".join(f"`{flag}`" for flag in _gate_flags(gates["thresholds"]))
        answer = f"yes, by the gates ({held})" if gates["passed"] else \
            f"no, a gate failed: {gates['failures'][0]['message']}"
        lines.append(f"- **Good enough?** {answer}. status: **{status}**: {STATUS_MEANING[status]}.")
        poor = not gates["passed"]
    else:
        poor = worst.rating not in GOOD_ENOUGH
        answer = "probably not" if poor else "probably yes"
        lines.append(f"- **Good enough?** {answer}: {worst.rating} by the rules of thumb (legend); confirm on your "
                     f"task's own metric. status: **{status}**: {STATUS_MEANING[status]}.")
    if poor:
        lines.append(f"- **To improve it:** `{improve_command(data, worst)}` (your other options where the `...` "
                     "is): re-chooses activation ranges by layer output error where not done yet, then leaves the most "
                     "sensitive layers in float, one at a time, until the gate holds.")
    elif gates is None:
        flag, bound = SUGGESTED_GATES[worst.metric]
        lines.append(f"- **To keep it so:** add a gate (e.g. `{flag} {bound:g}`) and every build checks it "
                     "(exit code 1 when it fails).")
    return lines


def shown_rel(value: Any) -> str:
    """A max relative error for the table: the number, or `huge*` where it comes from near-zero FP32 values."""
    if isinstance(value, (int, float)) and math.isfinite(value) and value > MAX_SHOWN_REL:
        return "huge*"
    if value is None:
        return "–"
    return value if isinstance(value, str) else f"{value:.4g}"


LEGEND = [
    "## Legend",
    "",
    "Each metric compares the quantized model's outputs with ONNX Runtime FP32 on the same held-out samples, "
    "over every element of every sample.",
    "",
    "- **SQNR** (dB): 10 log10(sum FP32² / sum (quantized - FP32)²). 20 dB means the error's RMS is 10 % of the "
    "output's, 30 dB 3 %; +6 dB halves it. Rule of thumb: >= 30 very close, 20-30 close, 10-20 noticeably "
    "different, below 10 far from FP32.",
    "- **cosine**: cosine similarity of all FP32 and all quantized output values as two vectors (1: same direction).",
    "- **max / p99 / mean abs**: the largest, the 99th-percentile and the mean |quantized - FP32|, in the output's "
    "units.",
    "- **max / p99 rel**: the same for |quantized - FP32| / |FP32|. Where an FP32 value is zero or nearly so this "
    f"ratio explodes, so a max rel above {MAX_SHOWN_REL:g} is shown as `huge*` (report.json keeps the number); "
    "p99 rel is the one to read.",
    "- **top-1 agreement**: fraction of samples whose best-scoring class is FP32's (outputs shaped [N, classes]); "
    "top-5: FP32's class is among the quantized model's five best. Rule of thumb: >= 0.99 very close, 0.97-0.99 "
    "close, 0.90-0.97 noticeably different, below far.",
    "- **pooled cosine** (token embeddings [N, L, H]): per sample, the cosine of the mean over the real tokens; "
    "mean and worst sample. Rule of thumb for the mean: >= 0.99 very close, 0.98-0.99 close, 0.95-0.98 noticeably "
    "different, below far. Token embeddings are judged by it alone; their other metrics (SQNR, max abs, ...) are "
    "taken over the real tokens.",
    "- **status**: `passed` / `failed` when gates were set (exit code 0 / 1), `unchecked` when none was.",
    "- **layer**: a node of the FP32 model, by the name `--exclude-nodes` takes (per-layer comparison, fallback "
    "and sensitivity all name layers so); its **output** is the tensor the per-layer comparison measures. "
    "**layer SQNR**: SQNR of that output with every layer quantized (errors accumulated up to it); "
    "**alone SQNR**: of the model outputs with only that layer quantized; **local SQNR**: of the layer's own "
    "output with only that layer quantized; **worst output SQNR**: the lowest over the model outputs.",
]


def console_verdict(data: Mapping[str, Any]) -> str:
    """The verdict in one or two lines for the end of the console output (report.md has the full one)."""
    comparison, gates = data.get("comparison"), data.get("gates")
    found = judgements(comparison["outputs"]) if comparison else []
    if not found:
        return f"verdict: accuracy not measured (status {data['status']}); see report.md"
    worst = found[0]
    closeness = f"{worst.rating} ({_number(worst).split(',')[0]})"
    if gates is not None:
        poor = not gates["passed"]
        judged = "gates passed" if gates["passed"] else "a gate failed"
    else:
        poor = worst.rating not in GOOD_ENOUGH
        judged = f"no gate set, probably {'not ' if poor else ''}good enough"
    line = f"verdict: {closeness}; {judged}"
    return line + (f"\n  to improve it: {improve_command(data, worst)}" if poor else "")
