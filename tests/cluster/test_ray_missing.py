"""Without Ray installed, `--ray` is exit 3 with the install hint, before any work (Ray's import is blocked)."""

from __future__ import annotations

import sys

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
