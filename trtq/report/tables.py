"""Markdown of the bench and precision-choice results (report.md and `trtq bench --markdown`).

They take the results' JSON forms (to_dict), so report.md is rendered from report.json alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

BENCH_HEADER = ["model", "kind", "backend", "batch", "median ms", "p90 ms", "p99 ms", "samples/s", "vs FP32", "runs"]


def bench_lines(data: Mapping[str, Any]) -> list[str]:
    """Markdown of trtq.pipeline.bench.BenchResult.to_dict(): the settings, then one table row per timed row."""
    budget = f"{data['runs']} runs" if data["runs"] is not None else f"{data['seconds']} s"
    lines = [f"{data['warmup']} warm-up runs, then {budget} per row; inputs: {data['inputs']}; "
             f"CPU {data['machine']['cpu']}.", "",
             "| " + " | ".join(BENCH_HEADER) + " |", "|" + "---|" * len(BENCH_HEADER)]
    for r in data["rows"]:
        ratio = "–" if r["vs_fp32"] is None else f"{r['vs_fp32']:.2f}x"
        lines.append(f"| `{Path(r['model']).name}` | {r['kind']} | {r['backend']} | {r['batch']} | "
                     f"{r['median_ms']:.3f} | {r['p90_ms']:.3f} | {r['p99_ms']:.3f} | {r['throughput']:.1f} | "
                     f"{ratio} | {r['runs']} |")
    lines += [f"- skipped: {s}" for s in data["skipped"]]
    return lines


def selection_lines(data: Mapping[str, Any]) -> list[str]:
    """Markdown of trtq.pipeline.precision_select.Selection.to_dict(): the constraints, the choice, every candidate."""
    target = f"{data['target_latency_ms']:g} ms" if data["target_latency_ms"] is not None else "none"
    gates = ", ".join(f"{k} {v:g}" for k, v in data["gates"].items() if v is not None) or "none"
    lines = [f"Target latency {target}; accuracy gate {gates}; batch {data['batch']}. "
             f"Chosen: **{data['chosen']}** ({data['reason']}){'' if data['met'] else ' - constraints NOT met'}.", "",
             "| candidate | latency ms | latency from | worst SQNR dB | top-1 agr. | accuracy | chosen |",
             "|---|---|---|---|---|---|---|"]
    for c in data["candidates"]:
        sqnr = c["sqnr_db"]
        sqnr_text = sqnr if isinstance(sqnr, str) else "–" if sqnr is None else f"{sqnr:.2f}"
        top1 = "–" if c["top1_agreement"] is None else f"{c['top1_agreement']:.4f}"
        verdict = "pass" if c["passes_accuracy"] else "fail"
        mark = "**yes**" if c["name"] == data["chosen"] else ""
        lines.append(f"| {c['name']} | {c['latency_ms']:.4g} | {c['latency_source']} | {sqnr_text} | {top1} | "
                     f"{verdict} | {mark} |")
    lines += [f"- {note}" for note in data["notes"]]
    return lines


def layer_name(layer: Mapping[str, Any]) -> str:
    """The layer (FP32 node) of a per-layer entry, as fallback and sensitivity name it; its tensor when unknown."""
    node = layer.get("node")
    return str(node) if node else str(layer["tensor"])
