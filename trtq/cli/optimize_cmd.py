"""`trtq optimize MODEL --data DATA`: the graph optimized by onnxslim, checked against the original."""

from __future__ import annotations

from typing import Any

import click

from trtq.cli import main
from trtq.cli.options import config_options, print_config_and_exit, resolve_config
from trtq.cli.paths import OutputPath, data_path, model_file
from trtq.errors import ConfigError

CHECK_SAMPLES = 8  # enough batches to catch a changed computation; the check is exact, not statistical


@main.command("optimize")
@click.argument("model", type=model_file())
@click.option("-o", "--output", "output", type=OutputPath(dir_okay=False), default=None,
              help="Optimized model to write (default: <model>.optimized.onnx next to the model).")
@click.option("--data", "data", type=data_path(), default=None,
              help="Real inputs (as --calib of trtq build) the outputs are checked on; the first "
                   f"{CHECK_SAMPLES} samples unless --max-samples.")
@config_options("data", "preprocess", skip=("calib", "eval", "eval_fraction"))
@click.pass_context
def optimize_command(ctx: click.Context, model: str, output: str | None, data: str | None, **params: Any) -> None:
    """Optimize the graph of MODEL with onnxslim (shape inference, constant folding, BatchNorm folding
    into Conv, Identity/Dropout removal) and keep it only if its outputs equal the original's to 1e-5
    relative on real data.

    \b
    Exit codes: 0 written, 2 bad option or no --data, 3 onnxslim missing (pip install 'trtq[optimize]'),
    4 missing/unreadable model, bad data, or outputs that differ (nothing written), 5 output cannot be written.
    """
    print_config = params.get("print_config")
    config = resolve_config(params)
    if print_config:
        print_config_and_exit(ctx, config)
    if data is None and not config.data.allow_random_data:
        raise ConfigError("trtq optimize checks the optimized model's outputs against the original's on real "
                          "inputs, and none were given", hint="give --data DATA (images, .npy/.npz, video or a "
                                                              "loader script), or --allow-random-data")
    from trtq.pipeline.model_data import model_batches
    from trtq.pipeline.optimize import optimize_file

    batches, _, warnings = model_batches(model, data, config, max_samples=CHECK_SAMPLES)
    for warning in warnings:
        click.secho(f"warning: {warning}", fg="yellow", err=True)
    outcome = optimize_file(model, output, batches)
    click.echo(outcome.result.summary())
    click.echo(outcome.check.summary())
    click.echo(f"wrote {outcome.path}")
