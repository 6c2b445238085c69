"""`trtq doctor` (and `--json` for CI gates)."""

from __future__ import annotations

import json

import click

from trtq.cli import main
from trtq.errors import MissingDependencyError

# trtq.engine.gpu_facts.FEATURES, spelled out so that `trtq --help` need not import the engine package
# (onnx); tests/cli/test_doctor_cmd.py checks that the two agree.
FEATURES = ("engine", "implicit_int8", "int8", "fp8", "pycuda")


@main.command("doctor", examples="trtq doctor\ntrtq doctor --json --require engine,int8   # a CI gate: exit 3 "
                                 "unless both are there")
@click.option("--json", "as_json", is_flag=True, help="Print the facts as JSON (TensorRT, CUDA, device, extras).")
@click.option("--require", default="", metavar="FEATURES", show_default=False,
              help=f"Exit 3 unless this machine offers all of these (comma-separated: {', '.join(FEATURES)}).")
def doctor_command(as_json: bool, require: str) -> None:
    """Check Python, ONNX Runtime, TensorRT, CUDA and optional extras."""
    from trtq.pipeline.doctor import doctor_json, render_checks, run_checks

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
