"""Refusals of `--ray` before any work: exit 3 without Ray (its import blocked), exit 2 for what cannot be sharded."""

from __future__ import annotations

import sys

import pytest
from click.testing import CliRunner

from tests.image_models import conv_classifier, image_args, save
from trtq.cli import main


def test_ray_flag_without_ray_installed_exits_3_with_the_extra_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    model = save(conv_classifier(), tmp_path / "conv.onnx")
    for command in ("calibrate", "build"):
        result = CliRunner().invoke(main, [command, str(model), "--allow-random-data", *image_args(), "-o",
                                           str(tmp_path / command), "--ray"])
        assert result.exit_code == 3, result.output
        assert "pip install 'trtq[ray]'" in result.output
        assert result.output.count("\n") == 1 and result.output.startswith("error: ")
        assert not (tmp_path / command).exists() or not any((tmp_path / command).iterdir())


def test_ray_refuses_the_moving_average_whose_shards_do_not_merge_exactly(tmp_path):
    pytest.importorskip("ray")
    model = save(conv_classifier(), tmp_path / "conv.onnx")
    result = CliRunner().invoke(main, ["calibrate", str(model), "--allow-random-data", *image_args(), "--method",
                                       "ema", "--cache", str(tmp_path / "m.cache"), "--ray"])
    assert result.exit_code == 2, result.output
    assert "--method ema cannot run on Ray" in result.output
    assert not list(tmp_path.glob("m.cache*"))
