"""The build/compare report: report.json (schema: report.schema.json next to this file) and report.md.

    report = Report(command="build")
    report.set_config(config)
    with report.stage("calibrate"):
        ...
    report.set_comparison(result)
    report.set_gates(gates, check_gates(result, gates))
    write_report(report, out_dir)
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import importlib.metadata
import json
import logging
import math
import platform
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trtq import _lazy
from trtq._version import __version__
from trtq.accuracy.compare import ComparisonResult
from trtq.accuracy.gates import GateFailure, Gates
from trtq.accuracy.metrics import json_float
from trtq.atomic import write_text
from trtq.config import Config, to_dict
from trtq.progress import timed_step
from trtq.report import plots
from trtq.report.tables import bench_lines, layer_name, selection_lines
from trtq.report.verdict import LEGEND, format_db, shown_rel, verdict_lines

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2
SCHEMA_PATH = Path(__file__).with_name("report.schema.json")


def _package_version(module: str) -> str | None:
    """Version of an importable package (from its metadata when the import would be heavy)."""
    if module == "tensorrt":
        if not _lazy.is_available("tensorrt"):
            return None
        try:  # TensorRT has several distribution names (tensorrt, tensorrt-cu12, ...); ask the module
            import tensorrt

            return str(tensorrt.__version__)
        except Exception:
            return None
    try:
        return str(__import__(module).__version__)
    except Exception:
        try:
            return importlib.metadata.version(module)
        except importlib.metadata.PackageNotFoundError:
            return None


def collect_versions() -> dict[str, str | None]:
    """trtq, Python and the packages that produced the results (None when not installed)."""
    versions: dict[str, str | None] = {"trtq": __version__, "python": platform.python_version()}
    for module in ("numpy", "onnx", "onnxruntime", "polygraphy", "tensorrt"):
        versions[module] = _package_version(module)
    return versions


@dataclass
class StageTiming:
    name: str
    seconds: float
    status: str  # "ok" or "failed"


@dataclass
class Report:
    """Everything one run produced and measured; fill it step by step, then write_report().

    Attributes:
        command: the trtq command that ran (build, compare, ...).
        config: the resolved config (trtq.config.to_dict), or None.
        provenance: where the inputs came from (model fingerprint, data fingerprint, sample counts ...).
        versions: package versions, collected when the report is created.
        stages: wall-clock seconds per named stage, in order.
        comparison: ComparisonResult.to_dict() of the accuracy check, or None if it did not run.
        gates: thresholds and failures, or None if no gate was evaluated.
        ranges: tensor -> (chosen amax, observed max |x|), for the range plot.
        range_methods: tensor -> the range method that made its amax (auto's per-tensor choice).
        skipped: steps that did not run, with the reason.
        warnings: things the user should look at.
        info: notes that need no action (e.g. plots not written without matplotlib).
        artifacts: kind -> path of every file produced.
        accuracy: what the accuracy mechanisms did (trtq.pipeline.quantize_stage.QdqOutcome.to_dict: fallback,
            bias_correction, sensitivity), or None when the command does not quantize.
        bench: latencies of the build's models (`--bench`), or None.
        selection: the precision choice (--target-latency / --max-accuracy-loss): candidates, choice, reason.
    """

    command: str = "build"
    config: dict[str, Any] | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str | None] = field(default_factory=collect_versions)
    stages: list[StageTiming] = field(default_factory=list)
    comparison: dict[str, Any] | None = None
    gates: dict[str, Any] | None = None
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)
    range_methods: dict[str, str] = field(default_factory=dict)
    skipped: list[dict[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    info: list[str] = field(default_factory=list)
    artifacts: dict[str, str] = field(default_factory=dict)
    accuracy: dict[str, Any] | None = None
    bench: dict[str, Any] | None = None  # trtq.pipeline.bench.BenchResult.to_dict(), with --bench
    selection: dict[str, Any] | None = None  # trtq.pipeline.precision_select.Selection.to_dict()
    created: str = field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time the enclosed block as stage `name` (recorded as failed if it raises)."""
        start = time.perf_counter()
        try:
            yield
        except BaseException:
            self.stages.append(StageTiming(name, time.perf_counter() - start, "failed"))
            raise
        self.stages.append(StageTiming(name, time.perf_counter() - start, "ok"))

    def set_config(self, config: Config) -> None:
        self.config = to_dict(config)

    def set_comparison(self, result: ComparisonResult, layer_nodes: Mapping[str, str] | None = None) -> None:
        """Record the comparison; `layer_nodes` (tensor -> the FP32 node producing it, see
        trtq.onnx_model.tensors.producer_names) names each per-layer entry's layer as fallback and
        sensitivity do (`node`), beside the tensor measured."""
        self.comparison = result.to_dict()
        for layer in self.comparison["per_layer"]:
            layer["node"] = (layer_nodes or {}).get(layer["tensor"])
        self.warnings.extend(w for w in result.warnings if w not in self.warnings)

    def set_gates(self, gates: Gates, failures: Sequence[GateFailure]) -> None:
        self.gates = {"thresholds": gates.to_dict(), "passed": not failures,
                      "failures": [f.to_dict() for f in failures]}

    def skip(self, step: str, reason: str) -> None:
        self.skipped.append({"step": step, "reason": reason})

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    def add_artifact(self, kind: str, path: str | Path) -> None:
        self.artifacts[kind] = str(path)

    @property
    def status(self) -> str:
        """"passed" or "failed" when gates were evaluated, else "unchecked"."""
        if self.gates is None:
            return "unchecked"
        return "passed" if self.gates["passed"] else "failed"

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION, "created": self.created, "command": self.command,
            "status": self.status, "versions": self.versions, "config": self.config,
            "provenance": _plain(self.provenance),
            "stages": [{"name": s.name, "seconds": round(s.seconds, 3), "status": s.status} for s in self.stages],
            "comparison": self.comparison, "gates": self.gates,
            "ranges": {k: {"amax": json_float(a), "observed_max": json_float(o),
                           **({"method": self.range_methods[k]} if k in self.range_methods else {})}
                       for k, (a, o) in self.ranges.items()},
            "skipped": list(self.skipped), "warnings": list(self.warnings), "info": list(self.info),
            "artifacts": dict(self.artifacts), "accuracy": _plain(self.accuracy),
            "bench": _plain(self.bench), "selection": _plain(self.selection),
        }


def _plain(value: Any) -> Any:
    """`value` as JSON data: floats made safe, paths and other objects as strings."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float):
        return json_float(value)
    if value is None or isinstance(value, (bool, int, str)):
        return value
    return str(value)


def add_plots(report: Report, out_dir: Path) -> list[Path]:
    """Draw the plots the report has data for, recording them as artifacts; without matplotlib one info line.

    A plot an earlier run left in `out_dir` that this run has no data for (the range plot after a
    reused cache: no statistics were collected) is removed, so no stale picture sits beside the report.
    """
    if not plots.plots_available():
        report.info.append("plots not written: matplotlib is not installed (pip install 'trtq[plot]')")
        drawn: list[tuple[str, Path]] = []
    else:
        comparison = report.comparison or {}
        accuracy = report.accuracy or {}
        min_sqnr = (report.gates or {}).get("thresholds", {}).get("min_sqnr")
        with timed_step(log, "drawing the report's plots"):
            drawn = plots.write_plots(report.ranges, comparison.get("outputs") or {},
                                      comparison.get("per_layer") or [], out_dir, methods=report.range_methods,
                                      sensitivity=accuracy.get("sensitivity") or [], min_sqnr=min_sqnr,
                                      excluded=(accuracy.get("fallback") or {}).get("excluded") or [])
    for kind, path in drawn:
        report.add_artifact(kind, path)
    _remove_stale_plots(report, out_dir, {path.name for _, path in drawn})
    return [path for _, path in drawn]


def _remove_stale_plots(report: Report, out_dir: Path, drawn: set[str]) -> None:
    for name, about in plots.PLOT_FILES.items():
        stale = out_dir / name
        if name not in drawn and stale.is_file():
            stale.unlink()
            why = ("no calibration statistics in this run (the cache was reused)" if name == "ranges.png"
                   else "this run has no data for it")
            report.info.append(f"removed {stale} ({about}) of an earlier run: {why}")


def write_report(report: Report, out_dir: str | Path) -> list[Path]:
    """Write plots (when matplotlib is installed), report.json and report.md into `out_dir`, atomically.

    Returns:
        The paths written, report.json and report.md last.
    """
    out_dir = Path(out_dir)
    written = add_plots(report, out_dir)
    json_path, md_path = out_dir / "report.json", out_dir / "report.md"
    report.add_artifact("report_json", json_path)
    report.add_artifact("report_md", md_path)
    data = report.to_dict()
    write_text(json_path, json.dumps(data, indent=2, allow_nan=False) + "\n")
    write_text(md_path, render_markdown(data))
    return [*written, json_path, md_path]


def plural(count: int, noun: str) -> str:
    """`1 batch`, `2 batches`."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}{'es' if noun.endswith(('s', 'ch')) else 's'}"


def _num(value: Any, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, str):
        return value
    if isinstance(value, float) and (math.isinf(value) or math.isnan(value)):
        return str(value)
    return f"{value:.{digits}g}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines.extend("| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows)
    return lines


def _comparison_md(comparison: Mapping[str, Any]) -> list[str]:
    lines = ["## Accuracy vs ONNX Runtime FP32", "",
             f"Reference `{comparison['reference']}`, candidate `{comparison['candidate']}` "
             f"({comparison['candidate_kind']}), {comparison['samples']} samples in "
             f"{plural(comparison['batches'], 'batch')}, {comparison['seconds']} s.", ""]
    header = ["output", "SQNR dB", "cosine", "max abs", "p99 abs", "mean abs", "max rel", "p99 rel",
              "top-1 agr.", "top-5 agr.", "top-1 acc. FP32 / cand."]
    rows = []
    for name, m in comparison["outputs"].items():
        accuracy = "–" if m["reference_top1_accuracy"] is None else \
            f"{_num(m['reference_top1_accuracy'])} / {_num(m['candidate_top1_accuracy'])} ({m['labeled_samples']})"
        rows.append([f"`{name}`", format_db(m["sqnr_db"]), _num(m["cosine"], 5), _num(m["max_abs_error"]),
                     _num(m["p99_abs_error"]), _num(m["mean_abs_error"]), shown_rel(m["max_rel_error"]),
                     _num(m["p99_rel_error"]), _num(m["top1_agreement"]), _num(m["top5_agreement"]), accuracy])
    lines += _table(header, rows)
    pooled = [(name, m) for name, m in comparison["outputs"].items() if m.get("pooled_cosine_mean") is not None]
    if pooled:
        lines += ["", "Mean-pooled embedding cosine over the real tokens (attention mask), per sample:", ""]
        lines += _table(["output", "mean", "worst sample", "token-level SQNR dB"],
                        [[f"`{name}`", _num(m["pooled_cosine_mean"], 5), _num(m["pooled_cosine_min"], 5),
                          format_db(m["sqnr_db"])] for name, m in pooled])
    layers = comparison["per_layer"]
    if layers:
        lines += ["", f"### Per-layer SQNR, worst {min(10, len(layers))} of {len(layers)}", "",
                  "SQNR of each quantized layer's output with every layer quantized (errors accumulated up to it).",
                  ""]
        lines += _table(["layer", "op", "output", "layer SQNR dB", "cosine"],
                        [[f"`{layer_name(la)}`", la["op_type"], f"`{la['tensor']}`", format_db(la["sqnr_db"]),
                          _num(la["cosine"], 5)] for la in layers[:10]])
    return lines


def _gates_md(gates: Mapping[str, Any] | None) -> list[str]:
    if gates is None:
        return ["## Gates", "", "No accuracy gate was set."]
    lines = ["## Gates", "", f"**{'PASSED' if gates['passed'] else 'FAILED'}**", ""]
    lines += [f"- `{name}` = {value:g}" for name, value in gates["thresholds"].items() if value is not None]
    lines += [f"- FAILED: {f['message']}" for f in gates["failures"]]
    return lines


def _accuracy_md(accuracy: Mapping[str, Any]) -> list[str]:
    lines: list[str] = []
    fallback, bias, ranking = accuracy.get("fallback"), accuracy.get("bias_correction"), accuracy.get("sensitivity")
    if fallback:
        verdict = "the gates pass" if fallback["passed"] else "the gates still fail"
        lines += ["## Fallback", "", f"{len(fallback['excluded'])} layers left in float; {verdict}.", ""]
        lines += _table(["step", "excluded layer", "op", "worst output SQNR dB", "top-1 agr.", "gates"],
                        [[str(i), f"`{s['node']}`" if s["node"] else "(none)", s["op_type"] or "–",
                          format_db(s["sqnr_db"]), _num(s["top1_agreement"]), "pass" if s["passed"] else "fail"]
                         for i, s in enumerate(fallback["steps"])])
        lines.append("")
    if bias:
        verdict = "kept" if bias["applied"] else "discarded (it did not raise the held-out SQNR)"
        lines += ["## Bias correction", "", f"{len(bias['layers'])} layers corrected ({bias['method']}, "
                  f"{bias['samples']} samples, {bias['passes']} passes); {verdict}."]
        if bias["sqnr_before"] is not None:
            lines.append(f"Held-out worst SQNR {format_db(bias['sqnr_before'])} -> "
                         f"{format_db(bias['sqnr_after'])} dB.")
        lines.append("")
    lines += _rounding_md(accuracy.get("equalization"), accuracy.get("weight_rounding"))
    lines += _int4_md(accuracy.get("int4_weights"))
    if ranking:
        lines += [f"## Layer sensitivity, most sensitive {min(10, len(ranking))} of {len(ranking)}", "",
                  "SQNR of the layer's own output (local) and of the model outputs with only that layer "
                  "quantized (alone).", ""]
        lines += _table(["rank", "layer", "op", "alone SQNR dB", "local SQNR dB"],
                        [[str(r["rank"]), f"`{r['node']}`", r["op_type"], format_db(r.get("alone_sqnr_db")),
                          format_db(r.get("local_sqnr_db"))] for r in ranking[:10]])
    return lines


def _rounding_md(equalization: Mapping[str, Any] | None, rounding: Mapping[str, Any] | None) -> list[str]:
    lines: list[str] = []
    if equalization and equalization.get("method") == "activations":
        chains = equalization["chains"]
        spread = max((c["spread_before"] for c in chains), default=1.0)
        lines += ["## Activation equalization", "", f"{len(chains)} conv -> depthwise conv chains rescaled from "
                  f"{equalization['samples']} calibration samples: every channel of an activation a depthwise "
                  "conv reads is widened to at least half of its widest channel's range (widest / narrowest "
                  f"channel up to {spread:.0f}x before); the equalized FP32 model is in the output folder.", ""]
    elif equalization:
        lines += ["## Cross-layer equalization", "", f"{len(equalization['pairs'])} conv pairs equalized "
                  f"({equalization['rounds']} rounds); the equalized FP32 model is in the output folder.", ""]
    if rounding and rounding["layers"]:
        layers = rounding["layers"]
        lines += ["## Learned weight rounding", "", f"{len(layers)} layers re-rounded ({rounding['method']}, target "
                  f"{rounding['target']}, {rounding['samples']} samples, {rounding['passes']} passes, "
                  f"{rounding['seconds']:.1f} s). Layer output SQNR on the calibration rows:", ""]
        lines += _table(["layer", "op", "nearest dB", "learned dB", "weights changed"],
                        [[f"`{r['node']}`", r["op_type"], format_db(r["sqnr_nearest"]), format_db(r["sqnr_learned"]),
                          f"{r['changed']} / {r['weights']}"] for r in layers[:20]])
        lines.append("")
    ranges = rounding.get("ranges") if rounding else None
    if rounding and ranges:
        changed = [r for r in ranges if r["amax_after"] != r["amax_before"]]
        lines += ["## Activation ranges by layer output error", "",
                  f"{len(changed)} of {len(ranges)} activation ranges re-chosen ({rounding['samples']} calibration "
                  f"samples, {rounding['passes']} passes, {rounding['seconds']:.1f} s); the Q/DQ model has "
                  "them, the calibration cache keeps the histogram ranges. Largest error reductions (error of "
                  "the reading layers' outputs, after / before):", ""]
        best = sorted(changed, key=lambda r: r["error_ratio"])[:20]
        lines += _table(["tensor", "read by", "amax before", "amax after", "error after / before"],
                        [[f"`{r['tensor']}`", ", ".join(f"`{n}`" for n in r["layers"]), _num(r["amax_before"], 4),
                          _num(r["amax_after"], 4), _num(r["error_ratio"], 3)] for r in best])
        lines.append("")
    return lines


def _int4_md(int4: Mapping[str, Any] | None) -> list[str]:
    """The INT4 weight-only section: sizes, and per weight its own SQNR (and GPTQ's output SQNR gain)."""
    if not int4:
        return []
    (before, after), (wb, wa) = int4["model_bytes"], int4["weight_bytes"]
    lines = ["## INT4 weights", "", f"{len(int4['layers'])} MatMul/Gemm weights INT4 ({int4['rounding']}, block "
             f"{int4['block_size']}), {len(int4['skipped'])} left in float. Model {before / 2**20:.2f} -> "
             f"{after / 2**20:.2f} MiB (**{int4['size_reduction']:.2f}x smaller**); the quantized weights "
             f"{wb / 2**20:.2f} -> {wa / 2**20:.2f} MiB.", ""]
    gptq = {r["node"]: r for r in (int4.get("gptq") or {}).get("layers", [])}
    rows = [[f"`{r['node']}`", r["op_type"], "x".join(map(str, r["weight_shape"])), _num(r["sqnr_db"], 3),
             _num(gptq[r["node"]]["output_sqnr_nearest"], 3) if r["node"] in gptq else "–",
             _num(gptq[r["node"]]["output_sqnr_gptq"], 3) if r["node"] in gptq else "–"] for r in int4["layers"][:20]]
    lines += _table(["layer", "op", "weight", "weight SQNR dB", "output dB nearest", "output dB gptq"], rows)
    return [*lines, ""]


def render_markdown(data: Mapping[str, Any]) -> str:
    """report.md from the report's JSON data."""
    lines = ["# trtq report", "",
             f"`trtq {data['command']}` on {data['created']}, trtq {data['versions']['trtq']}; "
             f"status: **{data['status']}**.", "", *verdict_lines(data), ""]
    if data["artifacts"]:
        rows = [[kind, f"`{path}`"] for kind, path in data["artifacts"].items()]
        lines += ["## Produced", "", *_table(["artifact", "path"], rows), ""]
    if data["comparison"]:
        lines += [*_comparison_md(data["comparison"]), "", *LEGEND, ""]
    lines += [*_gates_md(data["gates"]), ""]
    if data["accuracy"]:
        lines += [*_accuracy_md(data["accuracy"]), ""]
    if data.get("selection"):
        lines += ["## Precision choice", "", *selection_lines(data["selection"]), ""]
    if data.get("bench"):
        lines += ["## Latency (--bench)", "", *bench_lines(data["bench"]), ""]
    if data["stages"]:
        rows = [[s["name"], f"{s['seconds']:.2f}", s["status"]] for s in data["stages"]]
        lines += ["## Stages", "", *_table(["stage", "seconds", "status"], rows), ""]
    for title, items in (("Skipped steps", [f"{s['step']}: {s['reason']}" for s in data["skipped"]]),
                         ("Warnings", data["warnings"]), ("Notes", data["info"])):
        if items:
            lines += [f"## {title}", "", *(f"- {item}" for item in items), ""]
    lines += ["## Versions", "", ", ".join(f"{k} {v}" for k, v in data["versions"].items() if v), ""]
    return "\n".join(lines)


def render_summary(result: ComparisonResult, failures: Sequence[GateFailure] = (), layers: int = 10,
                   layer_nodes: Mapping[str, str] | None = None) -> str:
    """A terminal summary: one table row per output, the worst layers, gate failures and warnings.

    `layer_nodes` (tensor -> FP32 node) names the worst layers as fallback and sensitivity do, with
    the output tensor measured after the name when it differs.
    """
    width = max([len("output"), *map(len, result.outputs)])  # whole names: they are what users grep for
    header = f"{'output':<{width}} {'SQNR dB':>8} {'cosine':>9} {'max abs':>10} {'p99 abs':>10} {'top-1 agr':>9}"
    lines = [f"{result.candidate} vs {result.reference}: {result.samples} samples, "
             f"{plural(result.batches, 'batch')}", header]
    for name, m in result.outputs.items():
        lines.append(f"{name:<{width}} {format_db(m.sqnr_db):>8} {_num(m.cosine, 6):>9} {_num(m.max_abs_error):>10} "
                     f"{_num(m.p99_abs_error):>10} {_num(m.top1_agreement):>9}")
        if m.pooled_cosine_mean is not None:
            lines.append(f"  mean-pooled embedding cosine: mean {m.pooled_cosine_mean:.5f}, worst sample "
                         f"{m.pooled_cosine_min:.5f} (token-level SQNR {format_db(m.sqnr_db)} dB)")
        if m.reference_top1_accuracy is not None:
            lines.append(f"  top-1 accuracy on {m.labeled_samples} labeled samples: FP32 "
                         f"{m.reference_top1_accuracy:.4f}, candidate {m.candidate_top1_accuracy:.4f}")
        if m.tolerance is not None:
            t = m.tolerance
            lines.append(f"  atol {t.atol:g} / rtol {t.rtol:g}: {t.batches - t.failed_batches} of "
                         f"{plural(t.batches, 'batch')} pass")
    if result.per_layer:
        lines.append(f"worst layers (layer SQNR dB), {min(layers, len(result.per_layer))} of "
                     f"{len(result.per_layer)}: SQNR, op, layer, output")
        lines += [_layer_line(la.sqnr_db, la.op_type, (layer_nodes or {}).get(la.tensor), la.tensor)
                  for la in result.worst_layers(layers)]
    lines += [f"gate failed: {f.message}" for f in failures]
    lines += [f"warning: {w}" for w in result.warnings]
    return "\n".join(lines)


def _layer_line(sqnr_db: float, op_type: str, node: str | None, tensor: str) -> str:
    """`  12.34  Conv   conv_3 -> conv_3.out` (the output only when it is not the layer's own name)."""
    name = node or tensor
    return f"  {format_db(sqnr_db):>8}  {op_type:<18} {name}" + (f" -> {tensor}" if tensor != name else "")
