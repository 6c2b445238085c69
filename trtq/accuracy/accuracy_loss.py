"""`--max-accuracy-loss`: how much accuracy the precision choice may give up, as the existing gates.

The loss is measured against ONNX Runtime FP32 on the held-out samples, with the metrics of
trtq.accuracy.gates, so a loss is a gate:

    top1:0.01     top-1 agreement with FP32 >= 0.99 (classifier-like [N, C] outputs)
    sqnr:25       output SQNR >= 25 dB (noise energy at most 10^-2.5 of the signal's), every output
    cosine:0.001  cosine similarity (pooled-embedding cosine for token outputs) >= 0.999

Several are joined with commas and must all hold; the gates set by --min-sqnr/--min-top1-agreement/
--min-cosine also apply, the stricter of the two winning.
"""

from __future__ import annotations

import dataclasses
import math

from trtq.accuracy.gates import Gates
from trtq.errors import ConfigError

FORMS = {"top1": "min_top1_agreement", "sqnr": "min_sqnr", "cosine": "min_cosine"}
_HINT = "write e.g. --max-accuracy-loss top1:0.01 (at most 1 % top-1 drop) or sqnr:25 (at least 25 dB SQNR)"


def _number(text: str, entry: str) -> float:
    try:
        value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise ConfigError(f"--max-accuracy-loss: {entry!r} does not end in a number", hint=_HINT) from None
    if not math.isfinite(value):
        raise ConfigError(f"--max-accuracy-loss: {entry!r} is not finite", hint=_HINT)
    return value


def parse_accuracy_loss(text: str | None) -> Gates:
    """The gates `text` stands for (Gates() for None or "").

    Raises:
        ConfigError: an unknown metric, a bad or repeated entry, or a loss outside its range
            (top1 and cosine in [0, 1]).
    """
    found: dict[str, float] = {}
    for entry in (text or "").split(","):
        entry = entry.strip()
        if not entry:
            continue
        metric, sep, value = entry.partition(":")
        if not sep or metric.strip() not in FORMS:
            raise ConfigError(f"--max-accuracy-loss: {entry!r} is not METRIC:VALUE with METRIC one of "
                              f"{', '.join(FORMS)}", hint=_HINT)
        metric = metric.strip()
        if metric in found:
            raise ConfigError(f"--max-accuracy-loss: {metric} is given twice")
        loss = _number(value.strip(), entry)
        if metric != "sqnr" and not 0.0 <= loss <= 1.0:
            raise ConfigError(f"--max-accuracy-loss: {metric} loss {loss:g} is outside 0..1", hint=_HINT)
        found[metric] = loss if metric == "sqnr" else 1.0 - loss
    return Gates(**{FORMS[m]: v for m, v in found.items()})


def stricter(a: Gates, b: Gates) -> Gates:
    """Gates holding both `a` and `b`: the higher minimum, the smaller tolerance."""
    merged = {}
    for field in dataclasses.fields(Gates):
        x, y = getattr(a, field.name), getattr(b, field.name)
        if x is None or y is None:
            merged[field.name] = x if y is None else y
        else:
            merged[field.name] = min(x, y) if field.name in ("atol", "rtol") else max(x, y)
    return Gates(**merged)
