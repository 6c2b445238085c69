"""--help of every command: defaults shown, options in titled sections, examples; global flags anywhere."""

from __future__ import annotations

import dataclasses
import logging

import click
import pytest
from click.testing import CliRunner

from trtq import config as cfg
from trtq.cli import main
from trtq.cli.command import SectionOption, TrtqCommand, section_option
from trtq.cli.options import shown_default
from trtq.errors import EXIT_USAGE

COMMANDS = ["build", "calibrate", "quantize", "compare"]
FIELDS = {f.name: f for cls in cfg.SECTIONS.values() for f in dataclasses.fields(cls)}


def _help(*command: str) -> str:
    result = CliRunner().invoke(main, [*command, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("name", COMMANDS)
def test_every_config_flag_shows_the_config_default(name):
    command = main.commands[name]
    ctx = click.Context(command, info_name=name, parent=click.Context(main, info_name="trtq"))
    checked = 0
    for param in command.params:
        if not isinstance(param, SectionOption) or param.name not in FIELDS:
            continue
        field = FIELDS[param.name]
        default = field.default_factory() if field.default_factory is not dataclasses.MISSING else field.default
        text = param.get_help_record(ctx)[1]
        if default is None:
            assert "[default:" not in text  # "not given": the help says what happens then
        else:
            assert f"[default: {shown_default(field, param.is_flag)}]" in text
            checked += 1
    assert checked >= 3


def test_build_defaults_read_as_the_config_gives_them():
    text = _help("build")
    defaults = cfg.Config()
    assert f"Samples per batch fed to the model.  [default: {defaults.data.batch_size}]" in text
    assert f"[default: {defaults.calibration.method}]" in text
    assert "--fallback / --no-fallback" in text and "[default: no-fallback]" in text
    assert "[default: 0.5,0.5,0.5]" not in text and "[default: 0,0,0]" in text  # --mean of the defaults


def test_build_groups_its_options_into_titled_sections_then_examples():
    text = _help("build")
    titles = ["Config:", "Data:", "Preprocessing:", "Calibration:", "Quantization:", "Engine:", "Accuracy check:",
              "Output:", "Global options:", "Examples:"]
    positions = [text.index(f"\n{title}\n") for title in titles]
    assert positions == sorted(positions)
    data = text[text.index("\nData:\n"):text.index("\nPreprocessing:\n")]
    assert "--calib" in data and "--eval-fraction" in data and "--height" not in data
    calib = data[data.index("--calib"):data.index("--eval ")]
    assert "[required]" in calib and "--allow-random-data" in calib
    examples = text[text.index("\nExamples:\n"):]
    assert "trtq build example/ch_PP-OCRv4_det_infer.onnx --calib example/photos -c ppocr-det" in examples


@pytest.mark.parametrize("name", COMMANDS)
def test_each_command_has_sections_and_examples(name):
    text = _help(name)
    assert "\nConfig:\n" in text and "\nGlobal options:\n" in text and "\nExamples:\n" in text
    assert f"  trtq {name} " in text[text.index("\nExamples:\n"):]


def test_compare_offers_no_flag_it_ignores_and_its_own_per_layer_text():
    text = _help("compare")
    for flag in ("--allow-random-data", "--random-samples", "--seed", "--calib", "--eval-fraction"):
        assert flag not in text
    per_layer = text[text.index("--per-layer"):text.index("--fallback") if "--fallback" in text else None]
    assert "trtq build" not in per_layer and "CANDIDATE" in per_layer


def test_force_is_one_style_everywhere():
    assert "--force / --no-force" in _help("quantize")
    assert "--force / --no-force" in _help("calibrate")


@main.command("_sections_for_test", hidden=True)  # as another module would add a command
@section_option("--out", section="Output", default="x.txt", help="Where.")
@click.option("--plain", default=3, help="No section.")
@click.pass_context
def _tool(ctx: click.Context, out: str, plain: int) -> None:
    click.echo(f"quiet={ctx.find_root().obj['quiet']} level={logging.getLogger().level}")


def test_a_command_added_anywhere_gets_sections_and_the_global_flags():
    assert isinstance(main.commands["_sections_for_test"], TrtqCommand)
    text = _help("_sections_for_test")
    assert "\nOutput:\n  --out TEXT" in text and "[default: x.txt]" in text
    assert "\nOptions:\n  --plain INTEGER" in text and "[default: 3]" in text
    assert "\nGlobal options:\n  -q, --quiet" in text
    root = logging.getLogger()
    before = root.level
    try:
        result = CliRunner().invoke(main, ["_sections_for_test", "-q"])
        assert result.exit_code == 0, result.output
        assert result.output.strip() == f"quiet=True level={logging.WARNING}"
    finally:
        root.setLevel(before)


def test_quiet_after_the_subcommand_works_on_trtq_itself():
    root = logging.getLogger()
    before = root.level
    try:
        result = CliRunner().invoke(main, ["build", "missing.onnx", "--print-config", "-q"])
        assert result.exit_code == 0 and "calib: null" in result.output and root.level == logging.WARNING
    finally:
        root.setLevel(before)


def test_missing_calib_is_a_usage_error(ocr_classifier, tmp_path):
    result = CliRunner().invoke(main, ["build", str(ocr_classifier), "-o", str(tmp_path / "out")])
    assert result.exit_code == EXIT_USAGE
    assert result.stderr.startswith("error: no calibration data given; give --calib")
    assert not (tmp_path / "out" / "report.json").exists()
