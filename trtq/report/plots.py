"""PNG plots next to the report, drawn only when matplotlib (extra `plot`) is installed.

matplotlib is imported lazily and drawn through `matplotlib.figure.Figure`
(Agg canvas), never pyplot, so no GUI backend or global state is touched.
Without matplotlib the report gets one info line instead.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from trtq import _lazy
from trtq.atomic import atomic_path

MAX_BARS = 30  # layers shown in the per-layer plot (the worst ones)
LABELLED = 5  # most-clipped tensors named in the range plot


def _finite(value: Any) -> float | None:
    """A plottable float, or None for "inf"/"nan"/None (as stored in the report's JSON data)."""
    if isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    return None


def _save(figure: Any, path: Path) -> Path:
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    return path


def plot_ranges(ranges: Mapping[str, tuple[float, float]], path: Path) -> Path | None:
    """Chosen amax against observed max |x| per tensor (log-log; points below the diagonal clip),
    naming the LABELLED tensors clipped the most."""
    from matplotlib.figure import Figure

    named = [(name, o, a) for name, (a, o) in ranges.items() if a > 0 and o > 0]
    if not named:
        return None
    fig = Figure(figsize=(6, 6))
    ax = fig.add_subplot()
    _, observed, amax = zip(*named, strict=True)
    ax.scatter(observed, amax, s=12)
    for name, o, a in sorted(named, key=lambda t: t[2] / t[1])[:LABELLED]:
        if a < o:
            ax.annotate(name, (o, a), fontsize=7, xytext=(3, -3), textcoords="offset points")
    low, high = min(*observed, *amax), max(*observed, *amax)
    ax.plot([low, high], [low, high], color="grey", linewidth=1, label="amax = observed max")
    ax.set(xscale="log", yscale="log", xlabel="observed max |x|", ylabel="chosen amax",
           title=f"Calibrated ranges ({len(named)} tensors)")
    ax.legend(loc="upper left")  # "best" searches every point: seconds, and a warning, with many tensors
    return _save(fig, path)


def plot_output_errors(outputs: Mapping[str, Mapping[str, Any]], path: Path) -> Path | None:
    """SQNR (bars) per model output; infinite SQNR (identical outputs) is left out."""
    from matplotlib.figure import Figure

    values: dict[str, float] = {}
    for name, m in outputs.items():
        sqnr = _finite(m.get("sqnr_db"))
        if sqnr is not None:
            values[name] = sqnr
    if not values:
        return None
    fig = Figure(figsize=(max(4, len(values) * 0.8), 4))
    ax = fig.add_subplot()
    ax.bar(list(values), list(values.values()))
    ax.set(ylabel="SQNR (dB)", title="Output SQNR vs FP32")
    ax.tick_params(axis="x", labelrotation=45)
    return _save(fig, path)


def plot_layer_errors(layers: Sequence[Mapping[str, Any]], path: Path) -> Path | None:
    """SQNR of the worst MAX_BARS layers (horizontal bars, worst on top)."""
    from matplotlib.figure import Figure

    shown = [(la["tensor"], _finite(la["sqnr_db"])) for la in layers[:MAX_BARS]]
    shown = [(t, v) for t, v in shown if v is not None]
    if not shown:
        return None
    fig = Figure(figsize=(7, max(3, 0.3 * len(shown))))
    ax = fig.add_subplot()
    ax.barh([t for t, _ in reversed(shown)], [v for _, v in reversed(shown)])
    ax.set(xlabel="SQNR (dB)", title=f"Per-layer SQNR, worst {len(shown)}")
    return _save(fig, path)


def plots_available() -> bool:
    """True when matplotlib (extra `plot`) is installed."""
    return _lazy.is_available("matplotlib")


def write_plots(ranges: Mapping[str, tuple[float, float]], outputs: Mapping[str, Mapping[str, Any]],
                layers: Sequence[Mapping[str, Any]], out_dir: Path) -> list[tuple[str, Path]]:
    """Draw the plots there is data for into `out_dir` (needs matplotlib, see plots_available).

    Args:
        ranges: tensor -> (chosen amax, observed max |x|).
        outputs: output name -> its metrics as JSON data (`sqnr_db` read).
        layers: per-layer metrics as JSON data, worst first (`tensor`, `sqnr_db` read).
        out_dir: folder for the PNG files.

    Returns:
        (artifact kind, path) of every plot written.
    """
    jobs = [
        ("plot_ranges", "ranges.png", plot_ranges, ranges),
        ("plot_output_sqnr", "output_sqnr.png", plot_output_errors, outputs),
        ("plot_layer_sqnr", "layer_sqnr.png", plot_layer_errors, layers),
    ]
    written = []
    for kind, name, draw, data in jobs:
        if not data:
            continue
        path = draw(data, out_dir / name)  # type: ignore[operator]
        if path is not None:
            written.append((kind, path))
    return written
