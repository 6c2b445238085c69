"""Issue 13.1: a cache is reused only for the data the model would see now: the same files' contents,
the same preprocessing and the same sample selection; the console says why it is (not) reused."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from tests.image_models import conv_classifier, image_args, save
from trtq.cli import main


@pytest.fixture()
def setup(tmp_path):
    """The small conv model and a folder of 8 seeded 40x40 photos-like images."""
    model = save(conv_classifier(), tmp_path / "conv.onnx")
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(8):
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(images / f"{i}.png")
    return model, images, tmp_path / "conv.cache"


def _args(model, images, cache, *extra):
    return ["calibrate", str(model), "--calib", str(images), "--cache", str(cache), *image_args(),
            "--batch-size", "4", "--method", "minmax", *extra]


def _run(caplog, *args):
    caplog.clear()
    with caplog.at_level(logging.INFO):
        result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output
    return result.output + "\n".join(r.getMessage() for r in caplog.records)


def test_other_preprocessing_or_selection_is_not_reused(setup, caplog):
    model, images, cache = setup
    _run(caplog, *_args(model, images, cache))
    for flags in (("--mean", "0.5,0.5,0.5"), ("--std", "0.25,0.25,0.25"), ("--channel-order", "BGR"),
                  ("--resize", "letterbox"), ("--max-samples", "3"), ("-c", "imagenet")):
        before = cache.read_bytes()
        output = _run(caplog, *_args(model, images, cache, *flags))
        assert f"not reusing {cache}: it was made from other calibration data" in output, flags
        assert cache.read_bytes() != before, flags
    # Same command again: now the data matches, and the console says what was checked.
    again = _run(caplog, *_args(model, images, cache, *flags))
    assert "it matches the model, the settings and the calibration data" in again


def test_new_contents_under_the_same_names_are_not_reused(setup, caplog):
    model, images, cache = setup
    _run(caplog, *_args(model, images, cache))
    before = cache.read_bytes()
    for path in sorted(images.iterdir()):  # every image replaced by its negative, same name, same size
        with Image.open(path) as image:
            Image.eval(image.convert("RGB"), lambda p: 255 - p).save(path)
    output = _run(caplog, *_args(model, images, cache))
    assert f"not reusing {cache}: it was made from other calibration data" in output
    assert cache.read_bytes() != before


def test_the_split_seed_is_part_of_the_data(setup, caplog):
    model, images, cache = setup
    _run(caplog, *_args(model, images, cache, "--eval-fraction", "0.5", "--seed", "1"))
    output = _run(caplog, *_args(model, images, cache, "--eval-fraction", "0.5", "--seed", "2"))
    assert f"not reusing {cache}: it was made from other calibration data" in output


# The line says which part of the data changed (issue 15), before the model runs again.

def _reason_line(output, cache):
    lines = [line for line in output.splitlines() if line.startswith(f"not reusing {cache}:")]
    assert len(lines) == 1, output
    return lines[0]


@pytest.mark.parametrize(("flags", "says"), [
    (("--mean", "0.5,0.5,0.5"), "the preprocessing changed (--mean [0.0, 0.0, 0.0] -> [0.5, 0.5, 0.5])"),
    (("--channel-order", "BGR"), "the preprocessing changed (--channel-order RGB -> BGR)"),
    (("--max-samples", "3"), "other samples are selected (8 then, 3 now:"),
])
def test_the_line_names_the_part_of_the_data_that_changed(setup, caplog, flags, says):
    model, images, cache = setup
    _run(caplog, *_args(model, images, cache))
    line = _reason_line(_run(caplog, *_args(model, images, cache, *flags)), cache)
    assert line.startswith(f"not reusing {cache}: it was made from other calibration data: {says}"), line
    assert line.endswith("; recalibrating")
    assert "preprocessing" not in line if "preprocessing" not in says else "other samples" not in line


def test_new_contents_are_named_as_such(setup, caplog):
    model, images, cache = setup
    _run(caplog, *_args(model, images, cache))
    for path in sorted(images.iterdir()):
        with Image.open(path) as image:
            Image.eval(image.convert("RGB"), lambda p: 255 - p).save(path)
    line = _reason_line(_run(caplog, *_args(model, images, cache)), cache)
    assert line == (f"not reusing {cache}: it was made from other calibration data: the files of its 8 samples "
                    "have other contents (same names); recalibrating")


def test_the_reason_is_logged_before_the_model_runs(setup, caplog, monkeypatch):
    from trtq.pipeline import calibrate as calibrate_module

    model, images, cache = setup
    _run(caplog, *_args(model, images, cache))
    seen = []
    real = calibrate_module.collect_statistics

    def collect(*args, **kwargs):
        seen.append([r.getMessage() for r in caplog.records if r.getMessage().startswith("not reusing")])
        return real(*args, **kwargs)

    monkeypatch.setattr(calibrate_module, "collect_statistics", collect)
    output = _run(caplog, *_args(model, images, cache, "--std", "0.5,0.5,0.5"))
    assert len(seen) == 1 and len(seen[0]) == 1 and "the preprocessing changed (--std" in seen[0][0]
    assert output.count("not reusing") == 1  # said once: not again after the work


def test_a_cache_is_not_silently_passed_over_for_statistics(setup, caplog, tmp_path):
    model, images, cache = setup
    _run(caplog, *_args(model, images, cache))
    stats = tmp_path / "s.npz"
    output = _run(caplog, *_args(model, images, cache, "--save-stats", str(stats)))
    assert (f"not reusing {cache}: --save-stats saves the model's activation statistics, which a cache does not "
            "hold; recalibrating") in output
    output = _run(caplog, "calibrate", str(model), "--load-stats", str(stats), "--cache", str(cache),
                  "--method", "minmax")
    assert f"not reusing {cache}: the ranges are made from the statistics of --load-stats" in output


def test_a_reused_cache_says_what_matched_in_the_report(setup, caplog, tmp_path):
    model, images, _ = setup
    out = tmp_path / "out"
    args = ["build", str(model), "--calib", str(images), *image_args(), "--batch-size", "4", "--method", "minmax",
            "--eval-fraction", "0", "-o", str(out)]
    _run(caplog, *args)
    first = json.loads((out / "report.json").read_text())
    # Produced lists the sidecar, which the next run checks the cache against.
    assert first["artifacts"]["calibration_sidecar"] == str(out / "conv.cache.json")
    _run(caplog, *args)
    info = json.loads((out / "report.json").read_text())["info"]
    assert (f"calibration cache {out / 'conv.cache'} reused: it matches the model, the settings and the "
            "calibration data (8 samples: file contents, preprocessing and selection)") in info
    if "plot_ranges" in first["artifacts"]:  # with matplotlib: the first run's range plot is not left stale
        assert not (out / "ranges.png").exists()
        assert any(line.startswith(f"removed {out / 'ranges.png'}") for line in info)


def test_a_sidecar_without_the_parts_still_says_the_data_differs(setup, caplog):
    model, images, cache = setup
    _run(caplog, *_args(model, images, cache))
    sidecar = cache.with_name(cache.name + ".json")
    doc = json.loads(sidecar.read_text())
    del doc["provenance"]["data_parts"], doc["provenance"]["preprocess"]  # as trtq wrote it before
    sidecar.write_text(json.dumps(doc))
    line = _reason_line(_run(caplog, *_args(model, images, cache, "--max-samples", "3")), cache)
    assert line == (f"not reusing {cache}: it was made from other calibration data: not the 3 samples given now "
                    "(other files or file contents, preprocessing or sample selection; its sidecar does not say "
                    "which); recalibrating")
