"""`trtq quantize MODEL --cache CACHE -o OUT`: apply a calibration cache as Q/DQ nodes."""

from __future__ import annotations

from pathlib import Path

import click

from trtq.cli import main
from trtq.cli.command import section_option
from trtq.cli.options import (
    BUILD_ONLY,
    OUTPUT_SECTION,
    config_options,
    field_options,
    print_config_and_exit,
    resolve_config,
)
from trtq.cli.paths import OutputPath, model_file

EXAMPLES = """
trtq quantize model.onnx --cache model.cache -o model.qdq.onnx
# a TensorRT 8/10 calibration cache carried to TensorRT 11 (Q/DQ), with FP16 for the rest:
trtq quantize model.onnx --cache trt10.cache --fp16
"""


@main.command("quantize", examples=EXAMPLES)
@click.argument("model", type=model_file())
@config_options("quantize", skip=BUILD_ONLY)  # bias correction needs calibration data: build only
@field_options("cache", "force", section="Cache", help_texts={
    "cache": "Calibration cache: trtq's, or one written by TensorRT 8.x/10.x (default: <model>.cache)."})
@section_option("-o", "--output", "output", type=OutputPath(dir_okay=False), default=None, section=OUTPUT_SECTION,
                shown_default="<model>.qdq.onnx next to the model", help="Q/DQ model to write.")
@click.pass_context
def quantize_command(ctx: click.Context, model: str, output: str | None, **params) -> None:
    """Turn MODEL into an explicitly quantized (Q/DQ) ONNX model using the ranges of a calibration cache.

    This is also how a TensorRT 8/10 calibration cache is carried to TensorRT 11, which accepts
    INT8 only through Q/DQ nodes. `--precision int4-weights` needs no cache: block-wise INT4
    MatMul/Gemm weights (--block-size), rounded to nearest, activations float.

    \b
    Exit codes: 0 written, 2 bad option, 4 missing/unreadable model or cache, or a cache that
    does not fit the model (use --force to apply it anyway).
    """
    print_config = params.get("print_config")
    config = resolve_config(params)
    if print_config:
        print_config_and_exit(ctx, config)
    if config.quantize.precision == "int4-weights":  # weight-only: no activation ranges, no cache
        from trtq.pipeline.weight_only import quantize_weight_only_file

        path, int4 = quantize_weight_only_file(model, output, config.quantize)
        click.echo(int4.report.summary())
        click.echo(f"wrote {path}")
        return
    from trtq.pipeline.quantize import quantize_file

    cache = config.calibration.cache or str(Path(model).with_suffix(".cache"))
    outcome = quantize_file(model, cache, output, config.quantize, force=config.calibration.force)
    for warning in outcome.warnings:
        click.secho(f"warning: {warning}", fg="yellow", err=True)
    click.echo(outcome.result.report.summary().splitlines()[0])
    click.echo(f"wrote {outcome.path}")
