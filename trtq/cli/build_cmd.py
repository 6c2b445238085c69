"""`trtq build --calib DATA MODEL`: the whole pipeline, one command."""

from __future__ import annotations

import click

from trtq.cli import main
from trtq.cli.options import config_options, print_config_and_exit, resolve_config


@main.command("build")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("-o", "--out-dir", default=None, help="Output folder (default: <model stem>_trtq next to the model).")
@config_options("data", "preprocess", "calibration", "quantize", "build", "check", "cluster",
                skip=("compare_methods",))
@click.pass_context
def build_command(ctx: click.Context, model: str, **params) -> None:
    """Calibrate MODEL on real data and produce the deployment: calibration cache (+ JSON sidecar),
    Q/DQ ONNX model, TensorRT engine (where TensorRT and a GPU exist) and an accuracy report
    against ONNX Runtime FP32 on held-out samples (report.json, report.md).

    \b
    Exit codes: 0 done (the engine step may be skipped without TensorRT/GPU; the report says why),
    1 an accuracy gate failed, 2 usage or config error, 3 --require-engine without TensorRT/GPU,
    4 bad model, data or cache, 130 interrupted.
    """
    print_config = params.get("print_config")
    config = resolve_config(params)
    if print_config:
        print_config_and_exit(ctx, config)
    from trtq.accuracy import raise_on_failures
    from trtq.pipeline.build import build

    outcome = build(model, config, show_progress=not ctx.obj.get("quiet"))
    report = outcome.report
    for warning in report.warnings:
        click.secho(f"warning: {warning}", fg="yellow", err=True)
    for skipped in report.skipped:
        click.echo(f"skipped {skipped['step']}: {skipped['reason']}")
    if outcome.comparison is not None:
        from trtq.report.report import render_summary

        click.echo(render_summary(outcome.comparison, outcome.failures))
    for kind, path in report.artifacts.items():
        click.echo(f"{kind:<18} {path}")
    raise_on_failures(outcome.failures)
