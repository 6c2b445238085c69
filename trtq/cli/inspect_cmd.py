"""`trtq inspect MODEL`."""

from __future__ import annotations

import json

import click

from trtq.cli import main
from trtq.cli.paths import model_file


@main.command("inspect")
@click.argument("model", type=model_file())
@click.option("--tensors", is_flag=True, help="List every tensor that would be calibrated.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def inspect_command(model: str, tensors: bool, as_json: bool) -> None:
    """Show a model's inputs, outputs, opset, op counts and calibrated tensors."""
    from trtq.pipeline.inspect import inspect_model, render_summary

    summary = inspect_model(model)
    if as_json:
        click.echo(json.dumps(summary.to_dict(), indent=2))
    else:
        click.echo(render_summary(summary, list_tensors=tensors))
