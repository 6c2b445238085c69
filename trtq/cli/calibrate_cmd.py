"""`trtq calibrate --calib DATA MODEL`."""

from __future__ import annotations

import click

from trtq.cli import main
from trtq.cli.command import section_option
from trtq.cli.options import (
    BUILD_ONLY,
    OUTPUT_SECTION,
    SECTION_TITLES,
    config_options,
    print_config_and_exit,
    resolve_config,
)
from trtq.cli.paths import OutputPath, model_file

EXAMPLES = """
trtq calibrate model.onnx --calib photos/ -c imagenet
trtq calibrate model.onnx --calib photos/ --compare-methods
# statistics from two machines, merged exactly, then another method without running the model:
trtq calibrate model.onnx --calib part1/ --save-stats a.npz
trtq calibrate model.onnx --load-stats a.npz,b.npz --method percentile
"""


@main.command("calibrate", examples=EXAMPLES)
@click.argument("model", type=model_file())
@config_options("data", "preprocess", "calibration", "cluster", skip=BUILD_ONLY)
@section_option("-o", "--out-dir", type=OutputPath(file_okay=False), default=None, section=OUTPUT_SECTION,
                shown_default="next to the model",
                help="Folder for the cache.")
@section_option("--pow2/--no-pow2", "pow2", default=None, section=SECTION_TITLES["quantize"], shown_default="no-pow2",
                help="Power-of-two INT8 scales: every amax becomes 127 * 2^k (scale 2^k); recorded in the sidecar.")
@click.pass_context
def calibrate_command(ctx: click.Context, model: str, **params) -> None:
    """Calibrate MODEL on real data and write a TensorRT calibration cache (+ JSON sidecar).

    A cache that already matches the model is reused without running the model (unless
    statistics are saved, loaded or compared). A cache of this model made with another
    --method, --percentile, --num-bins or --tensors, or from other data (other samples, file
    contents or preprocessing), is made again (from the statistics its run saved with
    --save-stats, if they are still there); a line says why before the work starts.

    \b
    --save-stats FILE            also save the raw statistics (mergeable .npz)
    --load-stats FILE[,FILE...]  merge saved statistics instead of running the model
                                 (no --calib needed); shards merge exactly
    --compare-methods            compare minmax, entropy, percentile and mse on held-out
                                 data (--eval, or 20% of --calib by default)
    """
    print_config = params.get("print_config")
    config = resolve_config(params)
    if print_config:
        print_config_and_exit(ctx, config)
    progress = not ctx.obj.get("quiet")
    comparison = None
    if config.calibration.compare_methods:
        from trtq.pipeline.method_compare import compare_methods

        comparison = compare_methods(model, config, show_progress=progress)
        outcome = comparison.calibration
    else:
        from trtq.pipeline.calibrate import calibrate

        outcome = calibrate(model, config, show_progress=progress)
    for warning in outcome.warnings:
        click.secho(f"warning: {warning}", fg="yellow", err=True)
    if comparison is not None:
        from trtq.pipeline.method_compare import format_comparison

        click.echo(format_comparison(comparison))
    if outcome.not_reused and not progress:  # else its INFO line came before the work; -q hides that line
        click.echo(outcome.not_reused)
    for note in outcome.notes:
        click.echo(note)
    if outcome.saved_stats is not None:
        click.echo(f"saved statistics to {outcome.saved_stats}")
    verb = "reused" if outcome.reused else "wrote"
    origin = f", from {len(outcome.stats_files)} statistics file(s)" if outcome.stats_files else ""
    algorithm = outcome.table.algorithm
    counts = outcome.table.provenance.method_counts if outcome.table.provenance else {}
    if counts:  # auto: what won per tensor
        algorithm += " (" + ", ".join(f"{method} {n}" for method, n in counts.items()) + ")"
    click.echo(f"{verb} {outcome.cache_path} ({len(outcome.table.amax)} tensors, {algorithm}{origin})")
