"""Issue 13.1: a cache is reused only for the data the model would see now: the same files' contents,
the same preprocessing and the same sample selection; the console says why it is (not) reused."""

from __future__ import annotations

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
