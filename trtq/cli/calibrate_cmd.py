"""`trtq calibrate --calib DATA MODEL`."""

from __future__ import annotations

import click

from trtq.cli import main
from trtq.cli.options import config_options, print_config_and_exit, resolve_config


@main.command("calibrate")
@click.argument("model", type=click.Path(dir_okay=False))
@config_options("data", "preprocess", "calibration")
@click.option("-o", "--out-dir", default=None, help="Folder for the cache (default: next to the model).")
@click.pass_context
def calibrate_command(ctx: click.Context, model: str, **params) -> None:
    """Calibrate MODEL on real data and write a TensorRT calibration cache (+ JSON sidecar).

    A cache that already matches the model is reused without running the model.
    """
    print_config = params.get("print_config")
    config = resolve_config(params)
    if print_config:
        print_config_and_exit(ctx, config)
    from trtq.calibrate import calibrate

    outcome = calibrate(model, config, show_progress=not ctx.obj.get("quiet"))
    for warning in outcome.warnings:
        click.secho(f"warning: {warning}", fg="yellow", err=True)
    verb = "reused" if outcome.reused else "wrote"
    click.echo(f"{verb} {outcome.cache_path} ({len(outcome.table.amax)} tensors, {outcome.table.algorithm})")
