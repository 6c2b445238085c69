"""`trtq calibrate` end to end on the real PP-OCR classifier and real photos."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import numpy_helper

from tests import assets
from trtq.cache import read_cache
from trtq.calibrators import load_observers
from trtq.cli import main
from trtq.errors import EXIT_BAD_INPUT, EXIT_USAGE
from trtq.onnx_model.model import save_model


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
    # A missing --calib is a usage error (exit 2) since issue 15 (it was exit 4, bad data).
    result = CliRunner().invoke(main, ["calibrate", str(ocr_classifier), "--cache", str(tmp_path / "c.cache")])
    assert result.exit_code == EXIT_USAGE
    assert result.output.startswith("error:") and "--calib" in result.output
    assert not (tmp_path / "c.cache").exists()


# The merge tests use percentile: it reads every histogram bin, and is quick to evaluate.
PERCENTILE = ("--method", "percentile")


@dataclass(frozen=True)
class SavedRun:
    """One calibration of the classifier on all photos (batch 4, percentile) with --save-stats."""

    photos: Path
    cache: Path
    stats: Path


@pytest.fixture(scope="module")
def saved_run(ocr_classifier, tmp_path_factory) -> SavedRun:
    folder = tmp_path_factory.mktemp("saved")
    photos = folder / "photos"
    photos.mkdir()
    for src in assets.color_photos():
        shutil.copy(src, photos / src.name)
    run = SavedRun(photos, folder / "all.cache", folder / "all.npz")
    result = CliRunner().invoke(main, _args(ocr_classifier, photos, run.cache, *PERCENTILE,
                                            "--save-stats", str(run.stats)))
    assert result.exit_code == 0, result.output
    assert f"saved statistics to {run.stats}" in result.output
    return run


def _halves(photos, tmp_path):
    """Two folders with alternate photos (the same file names, so the same sample keys)."""
    halves = [tmp_path / "half0", tmp_path / "half1"]
    for folder in halves:
        folder.mkdir()
    for i, photo in enumerate(sorted(photos.iterdir())):
        shutil.copy(photo, halves[i % 2] / photo.name)
    return halves


def _load_args(model, files, cache, *extra):
    return ["-q", "calibrate", str(model), "--load-stats", ",".join(map(str, files)), "--cache", str(cache),
            "-c", "ppocr", "--height", "48", "--width", "192", *extra]


def _assert_same_observers(a, b):
    assert list(a) == list(b)
    for name, observer in a.items():
        mine, theirs = observer.to_dict(), b[name].to_dict()
        assert mine.keys() == theirs.keys()
        for key, value in mine.items():
            assert np.array_equal(value, theirs[key]), (name, key)


def test_merged_stats_of_two_halves_give_the_cache_of_one_run(ocr_classifier, saved_run, tmp_path, monkeypatch):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    runner = CliRunner()
    stats = []
    for i, half in enumerate(_halves(saved_run.photos, tmp_path)):  # batch 4, as saved_run
        stats.append(tmp_path / "stats" / f"half{i}.npz")
        result = runner.invoke(main, _args(ocr_classifier, half, tmp_path / f"half{i}.cache", *PERCENTILE,
                                           "--save-stats", str(stats[-1])))
        assert result.exit_code == 0, result.output
    batch3 = tmp_path / "batch3.cache"
    result = runner.invoke(main, _args(ocr_classifier, saved_run.photos, batch3, *PERCENTILE, "--batch-size", "3"))
    assert result.exit_code == 0, result.output
    whole = saved_run.cache.read_bytes()
    assert batch3.read_bytes() == whole
    for order in (stats, stats[::-1]):  # merging is order-independent
        merged = tmp_path / "merged.cache"
        merged.unlink(missing_ok=True)
        result = runner.invoke(main, _load_args(ocr_classifier, order, merged, *PERCENTILE,  # no --calib: no model run
                                                "--save-stats", str(tmp_path / "merged.npz")))
        assert result.exit_code == 0, result.output
        assert "from 2 statistics file(s)" in result.output
        assert merged.read_bytes() == whole
        provenance = read_cache(merged).provenance
        assert provenance.num_samples == len(list(saved_run.photos.iterdir()))
        assert provenance.algorithm == "percentile" and provenance.num_bins == 2048
        # Not only the ranges: every histogram equals the single run's, bin for bin.
        _assert_same_observers(load_observers(tmp_path / "merged.npz")[0], load_observers(saved_run.stats)[0])
    # The halves' caches differ from the whole one: the test compares different statistics.
    assert (tmp_path / "half0.cache").read_bytes() != whole
    assert list(cwd.iterdir()) == []


def test_stats_round_trip_keeps_cache_and_provenance(ocr_classifier, saved_run, tmp_path):
    again = tmp_path / "again.cache"
    result = CliRunner().invoke(main, _load_args(ocr_classifier, [saved_run.stats], again, *PERCENTILE))
    assert result.exit_code == 0, result.output
    assert again.read_bytes() == saved_run.cache.read_bytes()
    assert Path(f"{again}.json").read_bytes() == Path(f"{saved_run.cache}.json").read_bytes()  # same provenance


def test_save_stats_runs_the_model_even_if_the_cache_matches(ocr_classifier, saved_run, tmp_path):
    cache, stats = tmp_path / "cls.cache", tmp_path / "cls.npz"
    shutil.copy(saved_run.cache, cache)
    shutil.copy(f"{saved_run.cache}.json", f"{cache}.json")
    reused = CliRunner().invoke(main, _args(ocr_classifier, saved_run.photos, cache, *PERCENTILE))
    assert reused.exit_code == 0 and "reused" in reused.output
    result = CliRunner().invoke(main, _args(ocr_classifier, saved_run.photos, cache, *PERCENTILE,
                                            "--save-stats", str(stats)))
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output
    _assert_same_observers(load_observers(stats)[0], load_observers(saved_run.stats)[0])


def test_corrupt_stats_file_is_one_clear_error(ocr_classifier, tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    cache = tmp_path / "c.cache"
    result = CliRunner().invoke(main, _load_args(ocr_classifier, [bad], cache))
    assert result.exit_code == EXIT_BAD_INPUT
    assert result.output.startswith(f"error: statistics file {bad} is not a readable .npz")
    assert len(result.output.strip().splitlines()) == 1
    missing = CliRunner().invoke(main, _load_args(ocr_classifier, [tmp_path / "nope.npz"], cache))
    assert missing.exit_code == EXIT_BAD_INPUT and "nope.npz does not exist" in missing.output
    assert not cache.exists()


def test_stats_of_other_tensors_are_refused_naming_them(ocr_classifier, saved_run, tmp_path):
    # The saved run covers every activation; the 'quantizable' scope calibrates fewer tensors.
    cache = tmp_path / "c.cache"
    result = CliRunner().invoke(main, _load_args(ocr_classifier, [saved_run.stats], cache, "--tensors", "quantizable"))
    assert result.exit_code == EXIT_BAD_INPUT
    assert f"statistics file {saved_run.stats} does not match the model:" in result.output
    assert "tensors are not calibrated in the model: '" in result.output and "--tensors scope" in result.output
    assert "it lacks" not in result.output
    assert not cache.exists()


def test_stats_of_another_model_are_refused(ocr_classifier, saved_run, tmp_path):
    # Same graph, other weights: the tensor names match, the fingerprint does not.
    model = onnx.load(str(ocr_classifier))
    weights = model.graph.node[0].attribute[0].t  # the classifier keeps its weights in Constant nodes
    weights.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weights) * np.float32(1.5), weights.name))
    other = tmp_path / "other.onnx"
    save_model(model, other)
    cache = tmp_path / "c.cache"
    result = CliRunner().invoke(main, _load_args(other, [saved_run.stats], cache))
    assert result.exit_code == EXIT_BAD_INPUT
    assert "was collected on another model (its weights changed)" in result.output and "--force" in result.output
    assert not cache.exists()
    forced = CliRunner().invoke(main, _load_args(other, [saved_run.stats], cache, *PERCENTILE, "--force"))
    assert forced.exit_code == 0, forced.output
    assert "used anyway (--force)" in forced.output
    assert cache.read_bytes() == saved_run.cache.read_bytes()


def test_loaded_stats_without_ema_observer_refuse_method_ema(ocr_classifier, saved_run, tmp_path):
    result = CliRunner().invoke(main, _load_args(ocr_classifier, [saved_run.stats], tmp_path / "b.cache",
                                                 "--method", "ema"))
    assert result.exit_code == EXIT_USAGE
    assert "--method ema needs the moving-average observer" in result.output
    assert not (tmp_path / "b.cache").exists()
