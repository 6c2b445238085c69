"""Issue 13.8 and 13.12: outputs others can read (umask, kept mode), and a failed write is one
`error:` line with exit code 5, found before the long work where it can be."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from tests.image_models import conv_classifier, image_args, save
from trtq.atomic import write_text
from trtq.calibrators import HistogramObserver
from trtq.calibrators.storage import save_observers
from trtq.cli import main
from trtq.errors import EXIT_OUTPUT
from trtq.pipeline import calibrate as calibrate_module


@pytest.fixture()
def umask():
    """Set the process umask for one test and restore it."""
    old = os.umask(0o022)
    yield lambda mask: os.umask(mask)
    os.umask(old)


def _mode(path):
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_new_files_honour_the_umask(tmp_path, umask, mask):
    umask(mask)
    write_text(tmp_path / "a.txt", "x")
    observer = HistogramObserver(num_bins=8)
    observer.update(np.arange(5, dtype=np.float32))
    save_observers(tmp_path / "s.npz", {"t": observer})
    assert _mode(tmp_path / "a.txt") == _mode(tmp_path / "s.npz") == 0o666 & ~mask


def test_replacing_a_file_keeps_its_mode(tmp_path, umask):
    umask(0o077)
    target = tmp_path / "model.cache"
    target.write_text("old")
    target.chmod(0o644)
    write_text(target, "new")
    assert target.read_text() == "new" and _mode(target) == 0o644


@pytest.fixture()
def model(tmp_path):
    return save(conv_classifier(), tmp_path / "conv.onnx")


def _no_model_run(*args, **kwargs):
    raise AssertionError("the model ran although the output folder cannot be written")


@pytest.mark.parametrize("where", ["file_parent", "folder_target"])
def test_an_unwritable_output_fails_before_the_model_runs(model, photo_dir, tmp_path, monkeypatch, where):
    blocker = tmp_path / "blocker"
    if where == "file_parent":  # a file where the output folder should be
        blocker.write_text("x")
        cache = blocker / "sub" / "conv.cache"
    else:  # a folder where the cache file should be
        blocker.mkdir()
        cache = blocker
    monkeypatch.setattr(calibrate_module, "collect_statistics", _no_model_run)
    result = CliRunner().invoke(main, ["calibrate", str(model), "--calib", str(photo_dir), "--cache", str(cache),
                                       *image_args(), "--method", "minmax"])
    assert result.exit_code == EXIT_OUTPUT, result.output
    assert result.output.startswith("error: ") and len(result.output.strip().splitlines()) == 1
    assert "Traceback" not in result.output


def test_build_into_a_file_fails_at_once(model, photo_dir, tmp_path):
    out = tmp_path / "out"
    out.write_text("not a folder")
    result = CliRunner().invoke(main, ["build", str(model), "--calib", str(photo_dir), "-o", str(out), *image_args()])
    assert result.exit_code == EXIT_OUTPUT and "is a file" in result.output
    assert out.read_text() == "not a folder"


def test_a_write_that_fails_midway_is_one_line_and_leaves_nothing(tmp_path):
    # A real ENOSPC-like failure: the file size limit makes write() fail with EFBIG (Python ignores SIGXFSZ).
    code = ("import resource, sys\n"
            "from trtq.atomic import write_bytes\n"
            "resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))\n"
            "try:\n"
            "    write_bytes(sys.argv[1], b'x' * 100000)\n"
            "except Exception as exc:\n"
            "    print(type(exc).__name__, exc.exit_code, exc.one_line())\n")
    target = tmp_path / "big.bin"
    out = subprocess.run([sys.executable, "-c", code, str(target)], capture_output=True, text=True, check=True)
    assert out.stdout.startswith(f"OutputError {EXIT_OUTPUT} cannot write {target}: File too large"), out
    assert list(tmp_path.iterdir()) == []


