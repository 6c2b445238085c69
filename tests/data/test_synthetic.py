"""Random inputs: shaped like the model, seeded per sample, always with a warning."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from tests.data.helpers import IMAGENET_MEAN, IMAGENET_STD, data, pre, spec
from trtq.data import DataReader, random_source
from trtq.errors import ConfigError


def test_image_input_gets_normalised_random_pixels(caplog):
    imagenet = pre(mean=IMAGENET_MEAN, std=IMAGENET_STD)
    with caplog.at_level(logging.WARNING):
        source = random_source([spec((1, 3, 32, 32))], data(random_samples=5, seed=3), imagenet)
    assert "random samples" in caplog.text and "poor INT8 accuracy" in source.warning
    assert len(source) == 5 and source.keys[0] == "random:0"
    x = source.load(0)["x"]
    assert x.shape == (3, 32, 32) and x.dtype == np.float32
    pixels = (x * np.array(IMAGENET_STD)[:, None, None] + np.array(IMAGENET_MEAN)[:, None, None]) * 255
    np.testing.assert_allclose(pixels, np.round(pixels), atol=1e-3)  # whole 0..255 pixel values
    assert pixels.min() > -0.01 and pixels.max() < 255.01 and pixels.std() > 50  # spread like uniform 0..255


def test_samples_depend_only_on_seed_and_index():
    inputs = [spec(("N", 10)), spec(("N", 4), "ids", "int64"), spec(("N", 2), "mask", "bool")]
    a = random_source(inputs, data(random_samples=4, seed=1), pre())
    b = random_source(inputs, data(random_samples=4, seed=1), pre())
    later = [b.load(i) for i in (3, 2, 1, 0)][::-1]
    for i in range(4):
        for name in ("x", "ids", "mask"):
            np.testing.assert_array_equal(a.load(i)[name], later[i][name])
    assert not np.array_equal(a.load(0)["x"], a.load(1)["x"])
    other = random_source(inputs, data(random_samples=4, seed=2), pre())
    assert not np.array_equal(a.load(0)["x"], other.load(0)["x"])
    sample = a.load(0)
    assert sample["ids"].dtype == np.int64 and sample["ids"].min() >= 0 and sample["ids"].max() <= 9
    assert sample["mask"].dtype == np.bool_
    batches = list(DataReader(a, None, batch_size=3))
    assert [b.feeds["x"].shape for b in batches] == [(3, 10), (1, 10)]


def test_dynamic_image_size_needs_height_and_width():
    with pytest.raises(ConfigError) as err:
        random_source([spec(("N", 3, "h", "w"))], data(), pre())
    assert "input 'x' has a dynamic height/width (Nx3xhxw), so random data has no size" in err.value.message
    assert err.value.hint == "pass --height and --width"
    source = random_source([spec(("N", 3, "h", "w"))], data(random_samples=1), pre(height=20, width=30))
    assert source.load(0)["x"].shape == (3, 20, 30)


def test_other_dynamic_dims_need_real_data():
    with pytest.raises(ConfigError) as err:
        random_source([spec(("N", "seq"), "tokens", "int64")], data(), pre())
    assert "input 'tokens' (Nxseq) has dynamic dims (seq), so random data has no shape" in err.value.message
    assert "--calib" in err.value.hint
