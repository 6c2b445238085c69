"""`trtq lint QDQ_MODEL`: check a Q/DQ model against TensorRT's rules."""

from __future__ import annotations

import click

from trtq.cli import main
from trtq.cli.paths import model_file
from trtq.errors import EXIT_BAD_INPUT


@main.command("lint")
@click.argument("model", type=model_file())
@click.option("--strict", is_flag=True, help="Exit 4 on warnings too, not only on errors.")
@click.pass_context
def lint_command(ctx: click.Context, model: str, strict: bool) -> None:
    """Check a Q/DQ ONNX model against what TensorRT accepts and fuses well.

    Prints one line per finding (`error  <rule>  <node>: <message>`) and a summary.

    \b
    Exit codes: 0 no errors (warnings allowed unless --strict),
    4 bad model: errors found (or warnings with --strict), or the model cannot be read.
    """
    from trtq.onnx_model.model import load_model
    from trtq.qdq.linter import lint_model

    findings = lint_model(load_model(model))
    for finding in findings:
        click.echo(finding.line())
    errors = sum(f.severity == "error" for f in findings)
    warnings = sum(f.severity == "warning" for f in findings)
    click.echo(f"{model}: {errors} error{'s' * (errors != 1)}, {warnings} warning{'s' * (warnings != 1)}")
    if errors or (strict and warnings):
        ctx.exit(EXIT_BAD_INPUT)
