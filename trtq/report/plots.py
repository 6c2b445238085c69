"""PNG plots next to the report, drawn only when matplotlib (extra `plot`) is installed.

They answer "where is the error": which layers hurt the outputs most (sensitivity, worst first, or the
per-layer SQNR), which tensors' chosen ranges clip their observed values (coloured by the method that
chose them), and, when the model has several outputs or a gate is set, the SQNR of each output. The
`--min-sqnr` gate is drawn as a line wherever SQNR is. Names are tick labels of bar charts, never
annotations on a scatter, so they cannot overlap.

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
from trtq.report.tables import layer_name

MAX_BARS = 30  # layers shown in the per-layer and sensitivity plots (the worst ones)
LABELLED = 12  # tensors named in the range plot (the ones clipped the most)
NAME_CHARS = 48  # longer tensor or layer names are shortened in the middle on the plots
# Every plot file trtq writes, and what it shows (a stale one of an earlier run is removed, report.add_plots).
PLOT_FILES = {
    "layer_sensitivity.png": "layer sensitivity",
    "layer_sqnr.png": "per-layer SQNR",
    "ranges.png": "chosen ranges vs observed max",
    "output_sqnr.png": "SQNR per output",
}
_GATE_COLOUR = "tab:red"  # the --min-sqnr line, dashed
_COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan")


def _finite(value: Any) -> float | None:
    """A plottable float, or None for "inf"/"nan"/None (as stored in the report's JSON data)."""
    if isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    return None


def short(name: str, limit: int = NAME_CHARS) -> str:
    """`name`, its middle replaced by '…' when longer than `limit` (both ends tell layers apart)."""
    if len(name) <= limit:
        return name
    head = (limit - 1) // 2
    return f"{name[:head]}…{name[len(name) - (limit - 1 - head):]}"


def _save(figure: Any, path: Path) -> Path:
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    return path


def _colours(methods: Sequence[str]) -> dict[str, str]:
    """method -> colour, in the order the methods first appear."""
    return {m: _COLOURS[i % len(_COLOURS)] for i, m in enumerate(dict.fromkeys(methods))}


def plot_ranges(ranges: Mapping[str, tuple[float, float]], path: Path,
                methods: Mapping[str, str] | None = None) -> Path | None:
    """Left: chosen amax against observed max |x| per tensor (log-log; points below the diagonal clip),
    coloured by the method that chose the range. Right: the LABELLED tensors with the lowest chosen /
    observed ratio (the most clipped), named, same colours."""
    from matplotlib.figure import Figure

    named = [(name, o, a, (methods or {}).get(name, "range")) for name, (a, o) in ranges.items() if a > 0 and o > 0]
    if not named:
        return None
    colour = _colours([m for *_, m in named])
    worst = sorted(named, key=lambda t: t[2] / t[1])[:LABELLED]
    fig = Figure(figsize=(13, max(5.0, 0.32 * len(worst) + 1.5)), layout="constrained")  # long names need room
    scatter, bars = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.2]})
    for method, c in colour.items():
        points = [(o, a) for _, o, a, m in named if m == method]
        scatter.scatter(*zip(*points, strict=True), s=12, color=c, label=f"{method} ({len(points)})")
    low = min(min(o, a) for _, o, a, _ in named)
    high = max(max(o, a) for _, o, a, _ in named)
    scatter.plot([low, high], [low, high], color="grey", linewidth=1, label="amax = observed max")
    scatter.set(xscale="log", yscale="log", xlabel="observed max |x|", ylabel="chosen amax",
                title=f"Calibrated ranges ({len(named)} tensors; below the line: clipped)")
    scatter.legend(loc="upper left")  # "best" searches every point: seconds, and a warning, with many tensors
    shown = list(reversed(worst))  # the most clipped on top
    bars.barh([short(n) for n, *_ in shown], [a / o for _, o, a, _ in shown], color=[colour[m] for *_, m in shown])
    bars.axvline(1.0, color="grey", linewidth=1)
    bars.set(xlabel="chosen amax / observed max (< 1: values above amax are clipped)",
             title=f"Most clipped {len(worst)} of {len(named)} tensors")
    bars.tick_params(axis="y", labelsize=8)
    return _save(fig, path)


def plot_output_errors(outputs: Mapping[str, Mapping[str, Any]], path: Path,
                       min_sqnr: float | None = None) -> Path | None:
    """SQNR (bars) per model output with the gate line; infinite SQNR (identical outputs) is left out.

    Drawn only for two outputs or more, or when a --min-sqnr gate gives the bar something to be read
    against: one bar alone says no more than the report's table.
    """
    from matplotlib.figure import Figure

    values = {short(name): v for name, m in outputs.items() if (v := _finite(m.get("sqnr_db"))) is not None}
    if not values or (len(values) < 2 and min_sqnr is None):
        return None
    fig = Figure(figsize=(max(4, len(values) * 0.8), 4))
    ax = fig.add_subplot()
    ax.bar(list(values), list(values.values()))
    if min_sqnr is not None:
        ax.axhline(min_sqnr, color=_GATE_COLOUR, linestyle="--", label=f"gate --min-sqnr {min_sqnr:g} dB")
        ax.legend(loc="lower right")
    ax.set(ylabel="SQNR (dB)", title="Output SQNR vs FP32")
    ax.tick_params(axis="x", labelrotation=45)
    return _save(fig, path)


def _bars(rows: Sequence[tuple[str, float]], path: Path, xlabel: str, title: str,
          gate: float | None, marked: Sequence[bool] = (), marked_label: str = "") -> Path | None:
    """Horizontal bars, the first row (the worst) on top, with the gate line when there is one; the rows
    `marked` says (e.g. the layers the fallback left in float) in another colour."""
    from matplotlib.figure import Figure

    if not rows:
        return None
    fig = Figure(figsize=(8, max(3, 0.3 * len(rows) + 1)))
    ax = fig.add_subplot()
    shown, flags = list(reversed(rows)), list(reversed(list(marked) or [False] * len(rows)))
    bars = ax.barh([short(n) for n, _ in shown], [v for _, v in shown],
                   color=[_COLOURS[1] if flag else _COLOURS[0] for flag in flags])
    if any(flags):
        bars[flags.index(True)].set_label(marked_label)
    if gate is not None:
        ax.axvline(gate, color=_GATE_COLOUR, linestyle="--", label=f"gate --min-sqnr {gate:g} dB")
    if gate is not None or any(flags):
        ax.legend(loc="lower right")
    ax.set(xlabel=xlabel, title=title)
    ax.tick_params(axis="y", labelsize=8)
    return _save(fig, path)


def plot_layer_errors(layers: Sequence[Mapping[str, Any]], path: Path, min_sqnr: float | None = None) -> Path | None:
    """Layer SQNR of the worst MAX_BARS layers (per-layer comparison, worst on top), named by layer and op."""
    rows = [(f"{layer_name(la)} ({la['op_type']})", v) for la in layers[:MAX_BARS]
            if (v := _finite(la["sqnr_db"])) is not None]
    return _bars(rows, path, "layer SQNR (dB): the layer's output, every layer quantized",
                 f"Per-layer SQNR, worst {len(rows)} of {len(layers)}", min_sqnr)


def plot_layer_sensitivity(ranking: Sequence[Mapping[str, Any]], path: Path, min_sqnr: float | None = None,
                           excluded: Sequence[str] = ()) -> Path | None:
    """The most sensitive MAX_BARS layers, worst first: the model outputs' SQNR with only that layer
    quantized (alone SQNR, against which the gate line reads), or, for a ranking without it, the
    layer's own output SQNR (local); the layers in `excluded` (left in float by the fallback) stand out."""
    key = "alone_sqnr_db" if any(_finite(r.get("alone_sqnr_db")) is not None for r in ranking) else "local_sqnr_db"
    kept = sorted(((r, v) for r in ranking if (v := _finite(r.get(key))) is not None),
                  key=lambda row: row[1])[:MAX_BARS]
    rows = [(f"{r['node']} ({r['op_type']})", v) for r, v in kept]
    alone = key == "alone_sqnr_db"
    xlabel = ("alone SQNR (dB): the model outputs with only this layer quantized" if alone
              else "local SQNR (dB): the layer's own output with only it quantized")
    return _bars(rows, path, xlabel, f"Layer sensitivity, most sensitive {len(rows)} of {len(ranking)}",
                 min_sqnr if alone else None, [r["node"] in set(excluded) for r, _ in kept],
                 "left in float (--fallback)")


def plots_available() -> bool:
    """True when matplotlib (extra `plot`) is installed."""
    return _lazy.is_available("matplotlib")


def write_plots(ranges: Mapping[str, tuple[float, float]], outputs: Mapping[str, Mapping[str, Any]],
                layers: Sequence[Mapping[str, Any]], out_dir: Path, *, methods: Mapping[str, str] | None = None,
                sensitivity: Sequence[Mapping[str, Any]] = (), min_sqnr: float | None = None,
                excluded: Sequence[str] = ()) -> list[tuple[str, Path]]:
    """Draw the plots there is data for into `out_dir` (needs matplotlib, see plots_available).

    Args:
        ranges: tensor -> (chosen amax, observed max |x|).
        outputs: output name -> its metrics as JSON data (`sqnr_db` read).
        layers: per-layer metrics as JSON data, worst first (`tensor`, `node`, `op_type`, `sqnr_db` read).
        out_dir: folder for the PNG files.
        methods: tensor -> the method that chose its range (colours of the range plot).
        sensitivity: the layer ranking as JSON data (`node`, `op_type`, `alone_sqnr_db`, `local_sqnr_db`).
        min_sqnr: the --min-sqnr gate, drawn as a line, or None.
        excluded: the layers the fallback left in float (marked in the sensitivity plot).

    Returns:
        (artifact kind, path) of every plot written, the one answering "where is the error" first.
    """
    jobs: list[tuple[str, str, Any]] = [
        ("plot_layer_sensitivity", "layer_sensitivity.png", lambda p: plot_layer_sensitivity(sensitivity, p, min_sqnr,
                                                                                   excluded)),
        ("plot_layer_sqnr", "layer_sqnr.png", lambda p: plot_layer_errors(layers, p, min_sqnr)),
        ("plot_ranges", "ranges.png", lambda p: plot_ranges(ranges, p, methods)),
        ("plot_output_sqnr", "output_sqnr.png", lambda p: plot_output_errors(outputs, p, min_sqnr)),
    ]
    written = []
    for kind, name, draw in jobs:
        path = draw(out_dir / name)
        if path is not None:
            written.append((kind, path))
    return written
