"""Text and JSON summaries of calibration tables for `trtq cache show|diff`."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from trtq.cache.table import INT8_MAX, CalibrationTable, Provenance
from trtq.cache.trt_format import trt_version_header
from trtq.cache.validate import TableDiff

FORMAT_TITLES = {
    "trt": "TensorRT calibration cache",
    "json": "trtq JSON table",
    "ort": "ONNX Runtime calibration.flatbuffers",
    "ort-text": "ONNX Runtime calibration.cache",
}
_NAME_WIDTH = 60


def table_summary(table: CalibrationTable, fmt: str, path: str) -> dict[str, Any]:
    """JSON-friendly description of a table: format, header, algorithm, provenance, all tensors."""
    return {
        "path": path,
        "format": fmt,
        "trt_version": table.trt_version,
        "trt_header": _header(table, fmt),
        "algorithm": table.algorithm,
        "num_tensors": len(table),
        "provenance": table.provenance.to_dict() if table.provenance else None,
        "tensors": [{"name": n, "amax": _number(a), "scale": _number(a / INT8_MAX)} for n, a in table.amax.items()],
    }


def _number(value: float) -> float | str:
    """A float as standard JSON: a NaN or infinite scale read from a cache becomes "nan"/"inf"/"-inf"."""
    if math.isfinite(value):
        return value
    return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")


def _header(table: CalibrationTable, fmt: str) -> str | None:
    if fmt != "trt" or not table.trt_version or not table.trt_algorithm:
        return None
    return trt_version_header(table.trt_version, table.trt_algorithm)


def _provenance_lines(provenance: Provenance | None, fmt: str) -> list[str]:
    if provenance is None:
        why = "no trtq sidecar" if fmt != "json" else "none recorded"
        return [f"provenance: none ({why}); it can be checked against a model by tensor names only"]
    p = provenance
    params = ", ".join(f"{k}={v}" for k, v in p.algorithm_params.items()) or "none"
    lines = [
        f"provenance: {p.num_samples} samples{' (RANDOM data)' if p.random_data else ''}, "
        f"algorithm {p.algorithm} ({params}), num_bins {p.num_bins}",
        f"            model graph {p.model_graph_sha256[:12]}, weights {p.model_weights_sha256[:12]}, "
        f"data {(p.data_sha256 or 'unknown')[:12]}",
        f"            trtq {p.trtq_version}, onnxruntime {p.onnxruntime_version or 'unknown'}",
    ]
    if p.method_counts:
        lines.append("            auto chose " + ", ".join(f"{m} for {n}" for m, n in p.method_counts.items()))
    if p.stats_file:
        lines.append(f"            statistics saved in {p.stats_file}")
    return lines


def _rows(rows: Sequence[tuple[str, ...]], header: tuple[str, ...]) -> list[str]:
    width = min(max((len(r[0]) for r in [header, *rows]), default=4), _NAME_WIDTH)
    return ["  ".join([r[0].ljust(width), *(c.rjust(12) for c in r[1:])]).rstrip() for r in [header, *rows]]


def render_table(table: CalibrationTable, fmt: str, path: str, limit: int = 20) -> str:
    """Human summary: format, header, algorithm, provenance, count, then `limit` tensors (0 = all)."""
    lines = [f"cache:      {path}", f"format:     {fmt} ({FORMAT_TITLES.get(fmt, fmt)})"]
    header = _header(table, fmt)
    if header:
        lines.append(f"header:     {header} (TensorRT {table.trt_version})")
    elif table.trt_version:
        lines.append(f"target:     TensorRT {table.trt_version}")
    lines.append(f"algorithm:  {table.algorithm}")
    lines += _provenance_lines(table.provenance, fmt)
    lines.append(f"tensors:    {len(table)}")
    shown = list(table.amax.items()) if limit <= 0 else list(table.amax.items())[:limit]
    if shown:
        lines.append("")
        lines += _rows([(n, f"{a:.6g}", f"{a / INT8_MAX:.6g}") for n, a in shown], ("name", "amax", "scale"))
    if len(shown) < len(table):
        lines.append(f"... {len(table) - len(shown)} more (--limit 0 shows all)")
    return "\n".join(lines)


def render_diff(diff: TableDiff, a: tuple[str, int], b: tuple[str, int], top: int = 20) -> str:
    """Human summary of a diff; `a`/`b` are (path, number of tensors); `top` changes shown (0 = all)."""
    lines = [f"a: {a[0]} ({a[1]} tensors)", f"b: {b[0]} ({b[1]} tensors)"]
    if diff.identical:
        lines.append(f"identical: {diff.unchanged} tensors with equal amax")
        return "\n".join(lines)
    for label, names in (("only in a", diff.only_in_a), ("only in b", diff.only_in_b)):
        if names:
            more = f", ... ({len(names) - 10} more)" if len(names) > 10 else ""
            lines.append(f"{label}: {len(names)}: {', '.join(names[:10])}{more}")
    common = diff.unchanged + len(diff.changed)
    lines.append(f"changed: {len(diff.changed)} of {common} common tensors (largest change first)")
    shown = diff.changed if top <= 0 else diff.changed[:top]
    if shown:
        rows = [(c.name, f"{c.amax_a:.6g}", f"{c.amax_b:.6g}", f"{c.ratio:.4g}") for c in shown]
        lines += _rows(rows, ("name", "amax a", "amax b", "b/a"))
    if len(shown) < len(diff.changed):
        lines.append(f"... {len(diff.changed) - len(shown)} more (--top 0 shows all)")
    return "\n".join(lines)
