"""`trtq doctor`."""

from __future__ import annotations

import click

from trtq.cli import main
from trtq.pipeline.doctor import render_checks, run_checks


@main.command("doctor")
def doctor_command() -> None:
    """Check Python, ONNX Runtime, TensorRT, CUDA and optional extras."""
    click.echo(render_checks(run_checks()))
