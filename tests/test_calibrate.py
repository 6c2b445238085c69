"""`trtq calibrate` end to end on the real PP-OCR classifier and real photos."""

from __future__ import annotations

from click.testing import CliRunner

from trtq.cache import read_cache
from trtq.cli import main
from trtq.errors import EXIT_BAD_INPUT


def _args(model, photos, cache, *extra):
    return ["-q", "calibrate", str(model), "--calib", str(photos), "--cache", str(cache),
            "-c", "ppocr", "--height", "48", "--width", "192", "--batch-size", "4", *extra]


def test_calibrate_writes_and_then_reuses_cache(ocr_classifier, photo_dir, tmp_path):
    cache = tmp_path / "cls.cache"
    result = CliRunner().invoke(main, _args(ocr_classifier, photo_dir, cache, "--method", "minmax"))
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output
    assert cache.read_text().startswith("TRT-101601-MinMaxCalibration\n")
    table = read_cache(cache)
    assert table.provenance is not None and table.provenance.num_samples == len(list(photo_dir.iterdir()))
    assert all(v > 0 for v in table.amax.values())
    # The input range is bounded by the preset's normalisation: the largest possible |x| is
    # (1 - 0.406) / 0.225 = 2.64 (a pure 255 in the third channel); real photos come close.
    assert 2.0 < table.amax["x"] <= (1 - 0.406) / 0.225 + 1e-5
    again = CliRunner().invoke(main, _args(ocr_classifier, photo_dir, cache, "--method", "minmax"))
    assert again.exit_code == 0 and "reused" in again.output


def test_calibrate_without_data_fails_cleanly(ocr_classifier, tmp_path):
    result = CliRunner().invoke(main, ["calibrate", str(ocr_classifier), "--cache", str(tmp_path / "c.cache")])
    assert result.exit_code == EXIT_BAD_INPUT
    assert result.output.startswith("error:") and "--calib" in result.output
    assert not (tmp_path / "c.cache").exists()
