"""`trtq bench MODEL [MODEL ...]`: latency (median/p90/p99) and throughput per batch size."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import click

from trtq.cli import main
from trtq.cli.options import config_options, print_config_and_exit, resolve_config
from trtq.cli.paths import OutputPath, data_path, model_file


def _batches(ctx: click.Context, param: click.Parameter, value: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of integers, e.g. 1,8") from None
    if not sizes or any(b < 1 for b in sizes):
        raise click.BadParameter(f"{value!r}: batch sizes must be integers >= 1, e.g. 1,8")
    return sizes


@main.command("bench")
@click.argument("models", nargs=-1, required=True,
                type=model_file("check the path to the .onnx model or engine"))
@click.option("--batch", "batches", default="1", show_default=True, callback=_batches,
              help="Batch sizes, comma-separated, e.g. 1,8.")
@click.option("--warmup", default=10, show_default=True, type=click.IntRange(min=0), help="Untimed runs first.")
@click.option("--runs", default=None, type=click.IntRange(min=1), help="Timed runs per row (default 100).")
@click.option("--seconds", default=None, type=click.FloatRange(min=0, min_open=True),
              help="Time budget per row instead of --runs.")
@click.option("--shape", "shapes", default=None, metavar="NAME:DIMS[,...]",
              help="Dims of dynamic inputs, e.g. x:1x3x224x224 (the batch dim follows --batch).")
@click.option("--data", default=None, type=data_path(),
              help="Time on real samples from this data (preprocessed as -c/flags say) instead of random inputs.")
@click.option("--provider", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="ONNX Runtime providers: auto adds CUDA where it has a device.")
@click.option("--threads", default=0, show_default=True, type=click.IntRange(min=0),
              help="ONNX Runtime intra-op threads (0: one per core).")
@click.option("--json", "json_path", default=None, type=OutputPath(dir_okay=False), help="Write the result as JSON.")
@click.option("--markdown", "markdown_path", default=None, type=OutputPath(dir_okay=False),
              help="Write the result as a Markdown table.")
@config_options("preprocess")
@click.pass_context
def bench_command(ctx: click.Context, /, models: tuple[str, ...], batches: tuple[int, ...], warmup: int,
                  runs: int | None, seconds: float | None, shapes: str | None, data: str | None, provider: str,
                  threads: int, json_path: str | None, markdown_path: str | None, **params: Any) -> None:
    """Time MODELs (FP32 and Q/DQ ONNX on ONNX Runtime CPU/CUDA, TensorRT engines where TensorRT
    and a GPU exist): median, p90 and p99 latency and throughput per batch size, and each model's
    median relative to the FP32 one on the same backend.

    \b
    trtq bench model.onnx model_trtq/model.qdq.onnx --batch 1,8 --runs 50 --json bench.json
    Exit codes: 0 done, 2 bad option or shape, 3 CUDA asked for without a device, 4 bad model or
    data, 5 an output cannot be written.
    """
    print_config = params.get("print_config")
    config = resolve_config(params)
    if print_config:
        print_config_and_exit(ctx, config)
    from trtq.atomic import check_writable
    from trtq.pipeline.api import bench

    for path in (json_path, markdown_path):
        if path:
            check_writable(Path(path).parent, path)
    config = dataclasses.replace(config, data=dataclasses.replace(config.data, calib=data)) if data else config
    quiet = ctx.obj.get("quiet")
    result = bench(list(models), batches=batches, warmup=warmup, runs=runs, seconds=seconds, shapes=shapes,
                   providers=provider, threads=threads, data=data, config=config, json_path=json_path,
                   markdown_path=markdown_path,
                   progress=None if quiet else (lambda text: click.echo(f"timing {text}", err=True)))
    from trtq.pipeline.bench import render_table

    click.echo(render_table(result))
    for path in (json_path, markdown_path):
        if path:
            click.echo(f"wrote {path}")
