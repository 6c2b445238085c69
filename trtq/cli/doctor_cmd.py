"""`trtq doctor` (and `--json` for CI gates)."""

from __future__ import annotations

import json

import click

from trtq.cli import main
from trtq.engine.gpu_facts import FEATURES
from trtq.errors import MissingDependencyError
from trtq.pipeline.doctor import doctor_json, render_checks, run_checks


@main.command("doctor")
@click.option("--json", "as_json", is_flag=True, help="Print the facts as JSON (TensorRT, CUDA, device, extras).")
@click.option("--require", default="", metavar="FEATURES",
              help=f"Exit 3 unless this machine offers all of these (comma-separated: {', '.join(FEATURES)}).")
def doctor_command(as_json: bool, require: str) -> None:
    """Check Python, ONNX Runtime, TensorRT, CUDA and optional extras."""
    wanted = [f.strip() for f in require.split(",") if f.strip()]
    if unknown := [f for f in wanted if f not in FEATURES]:
        raise click.BadParameter(f"unknown feature(s) {', '.join(unknown)}; valid: {', '.join(FEATURES)}",
                                 param_hint="--require")
    if as_json:
        data = doctor_json(wanted)
        click.echo(json.dumps(data, indent=2))
        missing = data["missing"]
    else:
        from trtq.engine.gpu_facts import gpu_facts, missing_features

        facts = gpu_facts()
        click.echo(render_checks(run_checks(facts)))
        missing = missing_features(facts, wanted)
    if missing:
        raise MissingDependencyError(f"this machine lacks: {', '.join(missing)}",
                                     hint="the lines above say what is missing and how to install it")
