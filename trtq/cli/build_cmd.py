"""`trtq build --calib DATA MODEL`: the whole pipeline, one command."""

from __future__ import annotations

import click

from trtq.cli import main
from trtq.cli.command import section_option
from trtq.cli.options import OUTPUT_SECTION, config_options, print_config_and_exit, resolve_config
from trtq.cli.paths import OutputPath, model_file

EXAMPLES = """
trtq build model.onnx --calib photos/
trtq build model.onnx --calib photos/ -c imagenet --min-sqnr 25 --fallback
# the quick-start example (README), then the same with an accuracy gate and the fallback:
trtq build example/ch_PP-OCRv4_det_infer.onnx --calib example/photos -c ppocr-det --height 320 --width 320
trtq build example/ch_PP-OCRv4_det_infer.onnx --calib example/photos -c ppocr-det --height 320 --width 320 \\
    --min-sqnr 20 --fallback --bias-correction auto
trtq build encoder.onnx --calib sentences.npz --eval held_out.npz --min-cosine 0.99
"""


@main.command("build", examples=EXAMPLES)
@click.argument("model", type=model_file())
@config_options("data", "preprocess", "calibration", "quantize", "build", "check", "prepare", "cluster",
                skip=("compare_methods",),
                required=("calib",),
                help_texts={"calib": "Calibration data: image folder/file, .npy/.npz file or folder, video, or a "
                                     "data-loader script (.py with a load_data() generator of feed dicts). Needed "
                                     "unless a --config file gives data.calib or --allow-random-data is set.",
                            "per_layer": "Report SQNR per quantized layer, worst first, and rank the layers by "
                                         "their effect on the outputs when quantized alone."})
@section_option("-o", "--out-dir", type=OutputPath(file_okay=False), default=None, section=OUTPUT_SECTION,
                shown_default="<model stem>_trtq/ next to the model",
                help="Output folder: cache, Q/DQ model, engine, report.")
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

        click.echo(render_summary(outcome.comparison, outcome.failures, layer_nodes=outcome.layer_nodes))
    width = max(map(len, report.artifacts), default=0)
    for kind, path in report.artifacts.items():
        click.echo(f"{kind:<{width}} {path}")
    from trtq.report.verdict import console_verdict

    click.echo(console_verdict(report.to_dict()))
    raise_on_failures(outcome.failures)
