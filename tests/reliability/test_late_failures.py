"""Issue 13.11 and 13.13 (external data hint): empty models, late failures that say what they kept,
and Ctrl-C while the command starts."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import onnx
from click.testing import CliRunner
from PIL import Image

from tests.image_models import conv_classifier, image_args, save
from tests.reliability.models import matmul_model
from trtq.cli import main
from trtq.errors import EXIT_BAD_INPUT, EXIT_INTERRUPTED


def test_an_empty_model_file_is_a_model_error(tmp_path):
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    for command in (["inspect", str(empty)], ["calibrate", str(empty), "--allow-random-data"]):
        result = CliRunner().invoke(main, command)
        assert result.exit_code == EXIT_BAD_INPUT and "is empty (0 bytes)" in result.output, result.output


def test_missing_external_data_names_the_file_not_truncation(tmp_path):
    model = matmul_model(width=64)
    model.ir_version = 10
    onnx.save_model(model, str(tmp_path / "m.onnx"), save_as_external_data=True, location="m.data",
                    size_threshold=0)
    (tmp_path / "m.data").unlink()
    result = CliRunner().invoke(main, ["calibrate", str(tmp_path / "m.onnx"), "--allow-random-data"])
    assert result.exit_code == EXIT_BAD_INPUT
    assert "external data file that is missing" in result.output and "m.data" in result.output
    assert "truncated" not in result.output


def test_a_late_build_failure_says_which_files_it_kept(tmp_path):
    model = save(conv_classifier(), tmp_path / "conv.onnx")
    calib, held = tmp_path / "calib", tmp_path / "eval"
    calib.mkdir(), held.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(calib / f"{i}.png")
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(held / f"{i}.png")
    (held / "3.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")  # read only in the compare stage
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["-q", "build", str(model), "--calib", str(calib), "--eval", str(held),
                                       "-o", str(out), *image_args(), "--method", "minmax"])
    assert result.exit_code == EXIT_BAD_INPUT, result.output
    line = result.output.strip()
    assert line.startswith("error: ") and "3.png" in line and len(line.splitlines()) == 1
    assert "kept the 3 file(s) completed before" in line and str(out / "conv.cache") in line
    assert str(out / "conv.qdq.onnx") in line and "no partial output" not in line
    assert sorted(p.name for p in out.iterdir()) == ["conv.cache", "conv.cache.json", "conv.qdq.onnx"]


def test_ctrl_c_while_the_command_starts_is_one_line(tmp_path):
    # A KeyboardInterrupt raised while trtq.cli imports (where a real Ctrl-C at start-up lands).
    code = ("import sys\n"
            "class Interrupt:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name == 'trtq.cli':\n"
            "            raise KeyboardInterrupt\n"
            "sys.meta_path.insert(0, Interrupt())\n"
            "sys.argv = ['trtq', '--help']\n"
            "from trtq._entry import run\n"
            "run()\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == EXIT_INTERRUPTED, result
    assert result.stderr.startswith("error: interrupted") and "Traceback" not in result.stderr
