"""`trtq compare REFERENCE CANDIDATE --data DATA`: accuracy of a quantized model vs ONNX Runtime FP32."""

from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING, Any

import click

from trtq.cli import main
from trtq.cli.command import section_option
from trtq.cli.options import BUILD_ONLY, OUTPUT_SECTION, config_options, print_config_and_exit, resolve_config
from trtq.cli.paths import OutputPath, data_path, model_file
from trtq.config import Config

if TYPE_CHECKING:
    from trtq.accuracy import ComparisonResult
    from trtq.data.reader import FeedDicts

EXAMPLES = """
trtq compare model.onnx model_trtq/model.qdq.onnx --data held_out/ -c imagenet --min-sqnr 25
trtq compare model.onnx model.engine --data held_out/ --per-layer -o compare_report/
"""


def _open_data(data: str, reference: str, config: Config) -> tuple[FeedDicts, list[str]]:
    """(batches, sample keys) for `data`, read by trtq's data readers with the config's preprocessing."""
    from trtq.data import make_readers
    from trtq.onnx_model.model import graph_inputs, load_model

    inputs = graph_inputs(load_model(reference, load_weights=False))
    config = dataclasses.replace(config, data=dataclasses.replace(config.data, calib=data, eval=None, eval_fraction=0.0,
                                                                  max_samples=None))
    plan = make_readers(config, inputs)
    for warning in plan.warnings:
        click.secho(f"warning: {warning}", fg="yellow", err=True)
    return plan.calib.feed_dicts(), plan.calib.keys


# Data settings that mean nothing here: DATA is read whole, never split, never replaced by random inputs.
_NOT_FOR_COMPARE = ("calib", "eval", "eval_fraction", "max_samples", "allow_random_data", "random_samples", "seed")


@main.command("compare", examples=EXAMPLES)
@click.argument("reference", type=model_file())
@click.argument("candidate", type=model_file("check the path to the Q/DQ .onnx model or the engine"))
@section_option("--data", "data", required=True, type=data_path(), section="Data",
                help="Evaluation data: an image folder/file, a .npz/.npy file or folder (arrays named after the "
                     "model inputs, samples along axis 0), or a video; preprocessed as --config/flags say.")
@config_options("data", "preprocess", "check", skip=(*_NOT_FOR_COMPARE, *BUILD_ONLY), help_texts={
    "per_layer": "Report SQNR per quantized layer of CANDIDATE (a Q/DQ model), worst first."})
@section_option("-o", "--out-dir", "out_dir", type=OutputPath(file_okay=False), default=None,
                section=OUTPUT_SECTION,
                help="Also write report.json, report.md (and plots) into this folder.")
@section_option("--json", "as_json", is_flag=True, section=OUTPUT_SECTION,
                help="Print the result as JSON instead of a table.")
@click.pass_context
def compare_command(ctx: click.Context, reference: str, candidate: str, data: str,
                    as_json: bool, **params: Any) -> None:
    """Compare CANDIDATE (Q/DQ ONNX model, or TensorRT engine .engine/.plan) with the FP32 REFERENCE
    on ONNX Runtime, with Polygraphy: SQNR, cosine, abs/rel errors, top-1/top-5 agreement per output.

    \b
    Exit codes: 0 all gates pass (or none set), 1 a gate failed, 3 TensorRT/GPU missing for an
    engine, 4 missing or unreadable model, or bad data.
    """
    print_config = params.get("print_config")
    config = resolve_config(params)
    if print_config:
        print_config_and_exit(ctx, config)
    from trtq.accuracy import Gates, check_gates, compare_models, raise_on_failures
    from trtq.accuracy.labels import resolve_labels
    from trtq.report import Report, write_report
    from trtq.report.report import render_summary

    batches, keys = _open_data(data, reference, config)
    labels = resolve_labels(config.check.labels, data)
    result = compare_models(reference, candidate, batches, per_layer=config.check.per_layer, labels=labels,
                            keys=keys if labels else None, atol=config.check.atol, rtol=config.check.rtol,
                            progress=not ctx.obj.get("quiet", False))
    gates = Gates.from_config(config.check)
    failures = check_gates(result, gates)
    nodes = _layer_nodes(reference, candidate, result)
    if as_json:
        payload = {**result.to_dict(), "gates": {"thresholds": gates.to_dict(), "passed": not failures,
                                                 "failures": [f.to_dict() for f in failures]}}
        for layer in payload["per_layer"]:  # named as in report.json
            layer["node"] = nodes.get(layer["tensor"])
        click.echo(json.dumps(payload, indent=2, allow_nan=False))
    else:
        click.echo(render_summary(result, failures, layer_nodes=nodes))
    if config.out_dir:
        report = Report(command="compare")
        report.set_config(config)
        report.set_comparison(result, nodes)
        if gates.any:
            report.set_gates(gates, failures)
        write_report(report, config.out_dir)
    raise_on_failures(failures)


def _layer_nodes(reference: str, candidate: str, result: ComparisonResult) -> dict[str, str]:
    """tensor -> the node producing it, for the per-layer entries: in CANDIDATE when it is a Q/DQ model (its
    nodes carry the names the quantizer and fallback gave them), else in REFERENCE named the same way."""
    if not result.per_layer:
        return {}
    from trtq.onnx_model.model import load_model
    from trtq.onnx_model.tensors import producer_names
    from trtq.qdq.graph import name_nodes

    graph = load_model(candidate if candidate.lower().endswith(".onnx") else reference, load_weights=False)
    name_nodes(graph)  # unnamed nodes get the names the quantizer, fallback and sensitivity give them
    return producer_names(graph, (layer.tensor for layer in result.per_layer))
