"""Issue 13.13: skipped files are reported and not counted; a NaN error counts the sample it names."""

from __future__ import annotations

import json

import numpy as np
from click.testing import CliRunner
from PIL import Image

from tests.image_models import conv_classifier, image_args, save
from tests.reliability.models import matmul_model, npy_folder
from tests.reliability.models import save as save_model
from trtq.cli import main
from trtq.errors import EXIT_BAD_INPUT


def test_skip_bad_files_is_reported_and_not_counted(tmp_path):
    model = save(conv_classifier(), tmp_path / "conv.onnx")
    calib = tmp_path / "calib"
    calib.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(calib / f"{i}.png")
    (calib / "2.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["-q", "build", str(model), "--calib", str(calib), "--eval-fraction", "0",
                                       "-o", str(out), *image_args(), "--method", "minmax", "--skip-bad-files"])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    sidecar = json.loads((out / "conv.cache.json").read_text())
    assert sidecar["provenance"]["num_samples"] == 5
    assert report["provenance"]["calibration_samples"] == 5
    assert any("skipped unreadable file 2.png" in w for w in report["warnings"]), report["warnings"]


def test_a_nan_error_counts_the_sample_it_names(tmp_path):
    model = save_model(matmul_model(), tmp_path / "m.onnx")
    arrays = [np.ones(4), np.array([np.nan, np.nan, np.nan, 1.0]), np.array([np.nan, 1, 1, 1]), np.ones(4)]
    data = npy_folder(tmp_path / "data", arrays)
    result = CliRunner().invoke(main, ["-q", "calibrate", str(model), "--calib", str(data), "--method", "minmax",
                                       "--batch-size", "4", "--workers", "0"])
    assert result.exit_code == EXIT_BAD_INPUT
    # The first batch runs as 1 + 3 samples (the memory budget measures one sample first): the count in
    # parentheses is over the samples run together with the one named, whatever the split.
    assert "activation 'x' has 3 NaN/Inf values in sample 001.npy (4 in the 3 samples run with it)" in result.output
