"""`trtq cache show|diff|convert`: inspect, compare and convert calibration caches."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

from trtq.cli import main
from trtq.cli.command import LazyChoice
from trtq.cli.paths import OutputPath, cache_file

if TYPE_CHECKING:
    from trtq.cache.table import CalibrationTable


def _read_formats() -> tuple[str, ...]:
    from trtq.cache.files import READ_FORMATS  # the cache package imports onnx: not for `trtq --help`

    return READ_FORMATS


def _write_formats() -> tuple[str, ...]:
    from trtq.cache.files import WRITE_FORMATS

    return WRITE_FORMATS


_FROM = click.option("--from", "from_format", type=LazyChoice(_read_formats), default="auto", show_default=True,
                     help="Input format; ort-text (ONNX Runtime's 'name amax' calibration.cache) is never guessed.")
# Float32 rounding of a TensorRT cache's scales is ~6e-8 relative: below this, values count as equal.
_DIFF_RTOL = 1e-6


def _read(path: str, fmt: str) -> tuple[CalibrationTable, str]:
    """The table (with sidecar provenance) and the format it was read as."""
    from trtq.cache.files import detect_format
    from trtq.cache.sidecar import read_cache

    table = read_cache(path, fmt)
    return table, fmt if fmt != "auto" else detect_format(path)


@main.group("cache")
def cache_group() -> None:
    """Show, compare and convert calibration caches (TensorRT, trtq JSON, ONNX Runtime)."""


@cache_group.command("show")
@click.argument("cache", type=cache_file())
@_FROM
@click.option("--limit", type=click.IntRange(min=0), default=20, show_default=True,
              help="Tensors listed; 0 lists all (--json always lists all).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def show_command(cache: str, from_format: str, limit: int, as_json: bool) -> None:
    """Header, algorithm, provenance and tensor ranges of CACHE."""
    from trtq.cache.render import render_table, table_summary

    table, fmt = _read(cache, from_format)
    if as_json:
        click.echo(json.dumps(table_summary(table, fmt, cache), indent=2, allow_nan=False))
    else:
        click.echo(render_table(table, fmt, cache, limit=limit))


@cache_group.command("diff")
@click.argument("a", type=cache_file())
@click.argument("b", type=cache_file())
@click.option("--top", type=click.IntRange(min=0), default=20, show_default=True,
              help="Changed tensors listed, largest |log(b/a)| first; 0 lists all.")
@click.option("--rtol", type=click.FloatRange(min=0), default=_DIFF_RTOL, show_default=True,
              help="Relative amax difference below which values count as equal.")
def diff_command(a: str, b: str, top: int, rtol: float) -> None:
    """Tensors only in A or B, and amax values that changed (ratio b/a). Exits 0 either way."""
    from trtq.cache.render import render_diff
    from trtq.cache.sidecar import read_cache
    from trtq.cache.validate import diff_tables

    table_a, table_b = read_cache(a), read_cache(b)
    diff = diff_tables(table_a, table_b, rtol=rtol)
    click.echo(render_diff(diff, (a, len(table_a)), (b, len(table_b)), top=top))


@cache_group.command("convert")
@click.argument("source", metavar="IN", type=cache_file())
@click.argument("target", metavar="OUT", type=OutputPath(dir_okay=False))
@click.option("--to", "to_format", type=LazyChoice(_write_formats),
              help="Output format; default from OUT's extension (.cache trt, .json json, .flatbuffers ort).")
@_FROM
@click.option("--trt-version", help="TensorRT version the output header targets, e.g. 8.6.1 "
              "(default: the input's, else the installed TensorRT's, else 10.16.1).")
@click.option("--calibrator", help="TensorRT calibrator that will read a trt output: entropy, minmax, "
              "EntropyCalibration2, MinMaxCalibration, ... (default: from the input).")
def convert_command(source: str, target: str, to_format: str | None, from_format: str,
                    trt_version: str | None, calibrator: str | None) -> None:
    """Convert IN to OUT; a trt or ort OUT gets a provenance sidecar OUT.json.

    \b
    Re-heading a TensorRT cache for another TensorRT version:
      trtq cache convert in.cache out.cache --to trt --trt-version 8.6.1
    """
    from trtq.cache.files import format_for_path, write_table
    from trtq.cache.sidecar import read_cache, write_cache

    fmt = to_format or format_for_path(target)
    table = read_cache(source, from_format)
    if fmt == "json":
        write_table(table, target, "json", trt_version)
    else:
        write_cache(table, target, trt_version, format=fmt, calibrator=calibrator)
    click.echo(f"wrote {target} ({fmt}, {len(table)} tensors)")
