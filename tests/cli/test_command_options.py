"""Each command offers the options it acts on, and only those."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from trtq.cli import main
from trtq.cli.options import BUILD_ONLY

BUILD_ONLY_FLAGS = ["--" + name.replace("_", "-") for name in BUILD_ONLY]


def _help(command: str) -> str:
    result = CliRunner().invoke(main, [command, "--help"])
    assert result.exit_code == 0, result.output
    return result.output


def test_build_offers_the_build_only_flags():
    text = _help("build")
    for flag in [*BUILD_ONLY_FLAGS, "--weight-clipping", "--method"]:
        assert flag in text


@pytest.mark.parametrize("command", ["calibrate", "quantize", "compare"])
def test_other_commands_do_not_offer_build_only_flags(command):
    text = _help(command)
    for flag in BUILD_ONLY_FLAGS:
        assert flag not in text
    result = CliRunner().invoke(main, [command, "model.onnx", "--bias-correction", "auto"])
    assert result.exit_code == 2 and "No such option '--bias-correction'" in result.output


def test_quantize_keeps_weight_clipping_and_calibrate_its_own_flags():
    assert "--weight-clipping [none|mse]" in _help("quantize")
    calibrate = _help("calibrate")
    for flag in ("--method", "--percentile", "--num-bins", "--tensors", "--save-stats"):
        assert flag in calibrate
