"""`trtq calibrate` with an existing cache: reused only when it was made with the same settings."""

from __future__ import annotations

import shutil

import pytest
from click.testing import CliRunner

from trtq.cache import read_cache
from trtq.cli import main
from trtq.errors import EXIT_BAD_INPUT
from trtq.pipeline import calibrate as calibrate_module


def _args(model, photos, cache, *extra):
    return ["-q", "calibrate", str(model), "--calib", str(photos), "--cache", str(cache),
            "-c", "ppocr", "--height", "48", "--width", "192", "--batch-size", "4", *extra]


def _run(*args):
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture()
def percentile_cache(ocr_classifier, photo_dir, tmp_path):
    """A cache made with --method percentile (99.99, 2048 bins, all tensors), and its bytes."""
    cache = tmp_path / "cls.cache"
    assert "wrote" in _run(*_args(ocr_classifier, photo_dir, cache, "--method", "percentile"))
    return cache, cache.read_bytes()


@pytest.mark.parametrize(("flags", "reason"), [
    (("--method", "mse"), "it was made with --method percentile, now mse"),
    (("--method", "percentile", "--percentile", "99.9"), "its parameters differ (percentile 99.99 -> 99.9)"),
    (("--method", "percentile", "--num-bins", "1024"), "it was made with --num-bins 2048, now 1024"),
    (("--method", "percentile", "--tensors", "quantizable"),
     "it covers other tensors than --tensors quantizable selects"),
    (("--method", "percentile", "--power-of-two"), "its parameters differ (power_of_two unset -> True)"),
])
def test_a_cache_made_with_other_settings_is_made_again_and_says_why(
        ocr_classifier, photo_dir, percentile_cache, flags, reason):
    cache, before = percentile_cache
    output = _run(*_args(ocr_classifier, photo_dir, cache, *flags))
    lines = [line for line in output.splitlines() if line.startswith("not reusing")]
    assert len(lines) == 1 and lines[0] == f"not reusing {cache}: {reason}; recalibrated"
    assert "wrote" in output and "reused" not in output
    assert cache.read_bytes() != before
    # The new cache records the new settings, so the same command now reuses it.
    again = _run(*_args(ocr_classifier, photo_dir, cache, *flags))
    assert "reused" in again and "not reusing" not in again


def test_the_same_settings_reuse_the_cache_without_running_the_model(
        ocr_classifier, photo_dir, percentile_cache, monkeypatch):
    cache, before = percentile_cache
    monkeypatch.setattr(calibrate_module, "collect_statistics", _no_model_run)
    output = _run(*_args(ocr_classifier, photo_dir, cache, "--method", "percentile", "--num-bins", "2048"))
    assert "reused" in output and "not reusing" not in output
    assert cache.read_bytes() == before


def test_minmax_ignores_num_bins(ocr_classifier, photo_dir, tmp_path, monkeypatch):
    # minmax reads the exact max, not the histogram: another --num-bins gives the same ranges.
    cache = tmp_path / "cls.cache"
    _run(*_args(ocr_classifier, photo_dir, cache, "--method", "minmax"))
    monkeypatch.setattr(calibrate_module, "collect_statistics", _no_model_run)
    assert "reused" in _run(*_args(ocr_classifier, photo_dir, cache, "--method", "minmax", "--num-bins", "512"))


def test_without_data_another_method_is_an_error_that_keeps_the_cache(ocr_classifier, percentile_cache):
    cache, before = percentile_cache
    result = CliRunner().invoke(main, ["calibrate", str(ocr_classifier), "--cache", str(cache), "--method", "mse"])
    assert result.exit_code == EXIT_BAD_INPUT
    assert result.output.startswith(f"error: not reusing {cache}: it was made with --method percentile, now mse")
    assert "--calib" in result.output and len(result.output.strip().splitlines()) == 1
    assert cache.read_bytes() == before


def test_saved_statistics_serve_another_method_without_a_model_run(ocr_classifier, photo_dir, tmp_path, monkeypatch):
    cache, stats = tmp_path / "cls.cache", tmp_path / "cls.npz"
    _run(*_args(ocr_classifier, photo_dir, cache, "--method", "percentile", "--save-stats", str(stats)))
    expected = tmp_path / "expected.cache"
    _run("-q", "calibrate", str(ocr_classifier), "--load-stats", str(stats), "--cache", str(expected),
         "--method", "mse")
    monkeypatch.setattr(calibrate_module, "collect_statistics", _no_model_run)
    # With the same data given, and with none.
    for data in (("--calib", str(photo_dir)), ()):
        _run(*_args(ocr_classifier, photo_dir, cache, "--method", "percentile"))  # back to percentile
        output = _run("-q", "calibrate", str(ocr_classifier), "--cache", str(cache), "-c", "ppocr", "--height", "48",
                      "--width", "192", "--batch-size", "4", *data, "--method", "mse")
        assert (f"not reusing {cache}: it was made with --method percentile, now mse; ranges made again from the "
                f"statistics saved in {stats.resolve()} (no model run)") in output
        assert read_cache(cache).amax == read_cache(expected).amax


def test_saved_statistics_of_other_data_are_not_used(ocr_classifier, photo_dir, tmp_path):
    cache, stats = tmp_path / "cls.cache", tmp_path / "cls.npz"
    _run(*_args(ocr_classifier, photo_dir, cache, "--method", "percentile", "--save-stats", str(stats)))
    fewer = tmp_path / "fewer"
    fewer.mkdir()
    for photo in sorted(photo_dir.iterdir())[:2]:
        shutil.copy(photo, fewer / photo.name)
    output = _run(*_args(ocr_classifier, fewer, cache, "--method", "mse"))
    assert output.splitlines()[0].endswith("now mse; recalibrated")
    assert read_cache(cache).provenance.num_samples == 2


def _no_model_run(*args, **kwargs):
    raise AssertionError("the model ran although the cache or saved statistics should have served")


def test_a_cache_made_from_other_data_is_made_again(ocr_classifier, photo_dir, percentile_cache, tmp_path):
    cache, before = percentile_cache
    fewer = tmp_path / "fewer"
    fewer.mkdir()
    for path in sorted(p for p in photo_dir.iterdir() if p.is_file())[:-2]:
        shutil.copy(path, fewer / path.name)
    output = _run(*_args(ocr_classifier, fewer, cache, "--method", "percentile"))
    assert (f"not reusing {cache}: it was made from other calibration data: other samples are selected "
            f"({len(list(photo_dir.iterdir()))} then, {len(list(fewer.iterdir()))} now:") in output
    assert cache.read_bytes() != before
    assert "reused" in _run(*_args(ocr_classifier, fewer, cache, "--method", "percentile"))
