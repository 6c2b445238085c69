"""`trtq prune MODEL --pattern 2:4 | --sparsity S | --magnitude T`: pruned FP32 model + sparsity per layer."""

from __future__ import annotations

from typing import Any

import click

from trtq.cli import main
from trtq.cli.options import config_options, print_config_and_exit, resolve_config
from trtq.cli.paths import OutputPath, data_path, model_file

_DATA_SKIP = ("calib", "eval", "eval_fraction", "allow_random_data", "random_samples")


@main.command("prune")
@click.argument("model", type=model_file())
@click.option("-o", "--output", "output", type=OutputPath(dir_okay=False), default=None,
              help="Pruned model to write (default: <model>.pruned.onnx next to the model).")
@click.option("--pattern", "pattern", type=click.Choice(["2:4"]), default=None,
              help="Structured sparsity: keep the 2 largest |w| of every 4 consecutive input-channel weights "
                   "(TensorRT's sparse kernels, Ampere and newer).")
@click.option("--sparsity", "sparsity", type=float, default=None,
              help="Unstructured: zero this fraction (0..1) of the smallest |w|.")
@click.option("--magnitude", "magnitude", type=float, default=None, help="Unstructured: zero every |w| below this.")
@click.option("--scope", "scope", type=click.Choice(["layer", "global"]), default="layer", show_default=True,
              help="--sparsity per layer, or one threshold over all layers.")
@click.option("--exclude-nodes", "exclude", default="", help="Comma-separated node names left dense.")
@click.option("--data", "data", type=data_path(), default=None,
              help="Real inputs (as --calib of trtq build) to measure the accuracy cost: SQNR of the pruned model "
                   "against the unpruned one.")
@config_options("data", "preprocess", skip=_DATA_SKIP)
@click.pass_context
def prune_command(ctx: click.Context, model: str, output: str | None, data: str | None, **params: Any) -> None:
    """Prune the Conv/Gemm/MatMul weights of MODEL (magnitude pruning, no fine-tuning) and print the
    sparsity of every layer; with --data, also the accuracy it costs against the unpruned model.

    \b
    Exit codes: 0 written, 2 bad option (none or several of --pattern/--sparsity/--magnitude),
    4 missing/unreadable model or bad data, 5 output cannot be written.
    """
    from trtq.onnx_model.pruning import PruneSettings

    mode = {k: params.pop(k) for k in ("pattern", "sparsity", "magnitude")}
    scope, exclude = params.pop("scope"), params.pop("exclude")
    print_config = params.get("print_config")
    config = resolve_config(params)
    if print_config:
        print_config_and_exit(ctx, config)
    names = tuple(n.strip() for n in exclude.split(",") if n.strip())
    settings = PruneSettings(**mode, scope=scope, exclude_nodes=names)
    from trtq.pipeline.model_data import model_batches
    from trtq.pipeline.prune import prune_file

    batches = None
    if data is not None:
        batches, _, warnings = model_batches(model, data, config)
        for warning in warnings:
            click.secho(f"warning: {warning}", fg="yellow", err=True)
    outcome = prune_file(model, output, settings, batches, progress=not ctx.obj.get("quiet"))
    click.echo(outcome.result.table())
    click.echo(outcome.result.summary())
    click.echo(outcome.accuracy_line())
    click.echo(f"wrote {outcome.path}")
