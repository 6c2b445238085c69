"""A range algorithm from a third-party package (examples/trtq-aciq), installed for real with pip and
found through the `trtq.algorithms` entry-point group: listed, used by --method, compared by
--compare-methods and weighed by auto."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from tests.qdq.test_int4_weights import three_layers

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "trtq-aciq"

# Runs in a fresh interpreter with the plugin on sys.path, as a user's `trtq` would (the entry points
# and the CLI's --method choices are read once per process).
SCRIPT = r"""
import json, sys
import numpy as np
from click.testing import CliRunner
from trtq.calibrators import TensorStats
from trtq.calibrators.auto import choose_method
from trtq.calibrators.registry import algorithm, auto_candidates
from trtq.cli import main

model, calib, out = sys.argv[1:4]
run = lambda *args: CliRunner().invoke(main, ["-q", "calibrate", model, "--calib", calib, *args])
stats = TensorStats()
stats.update(np.random.default_rng(0).laplace(size=20000).astype(np.float32))
used = run("--method", "aciq", "--cache", out + "/aciq.cache")
compared = run("--compare-methods", "--cache", out + "/auto.cache")
print(json.dumps({
    "module": algorithm("aciq").function.__module__,
    "help": CliRunner().invoke(main, ["calibrate", "--help"]).output,
    "auto_candidates": list(auto_candidates()),
    "auto_errors": sorted(choose_method(stats).errors),
    "aciq_amax": algorithm("aciq").function(stats),
    "mean_abs": float(np.abs(np.random.default_rng(0).laplace(size=20000).astype(np.float32)).mean()),
    "used": [used.exit_code, used.output],
    "compared": [compared.exit_code, compared.output],
}))
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """`pip install --target` of a copy of the example package (no network, no build isolation)."""
    root = tmp_path_factory.mktemp("plugin")
    source = shutil.copytree(EXAMPLE, root / "src")
    target = root / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                    "--target", str(target), str(source)], check=True, capture_output=True)
    return target


def test_installed_plugin_is_listed_used_compared_and_weighed_by_auto(installed, tmp_path):
    entry_points = next(installed.glob("trtq_aciq-*.dist-info")) / "entry_points.txt"
    assert "[trtq.algorithms]" in entry_points.read_text()
    onnx.save(three_layers(k=32), tmp_path / "m.onnx")
    np.save(tmp_path / "calib.npy", np.random.default_rng(0).laplace(size=(20, 32)).astype(np.float32))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(installed), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "m.onnx"), str(tmp_path / "calib.npy"),
                           str(tmp_path)], env=env, capture_output=True, text=True, check=True)
    data = json.loads(done.stdout.splitlines()[-1])
    assert data["module"] == "trtq_aciq"  # the installed package, not something in the repo
    assert "aciq" in data["help"]  # among --method's choices
    assert "aciq" in data["auto_candidates"] and "aciq" in data["auto_errors"]
    assert data["aciq_amax"] == pytest.approx(9.89 * data["mean_abs"], rel=0.01)  # ACIQ: 9.89 E|x|
    code, output = data["used"]
    assert code == 0 and "aciq" in output, output
    header = (tmp_path / "aciq.cache").read_text().splitlines()[0]
    assert header.startswith("TRT-")
    code, output = data["compared"]
    assert code == 0, output
    rows = [line.split()[0] for line in output.splitlines() if line.split()[:1] and line.split()[0] in
            ("minmax", "entropy", "percentile", "mse", "aciq")]
    assert rows == ["minmax", "entropy", "percentile", "mse", "aciq"]
