"""Which input images feed, and the target size: errors name the input and say how to fix it."""

from __future__ import annotations

import pytest

from tests.data.helpers import data, pre, spec
from trtq.data import open_source
from trtq.data.inputs import image_input, image_target
from trtq.errors import EXIT_BAD_INPUT, EXIT_USAGE, ConfigError, DataError


@pytest.fixture()
def one_photo(photo_dir):
    return str(photo_dir / "coffee.png")


def test_single_input_is_chosen_and_sizes_come_from_the_model():
    x = spec((1, 3, 224, 320))
    target = image_target(image_input([x], data(), pre()), pre())
    assert (target.layout, target.channels, target.height, target.width) == ("NCHW", 3, 224, 320)


def test_nhwc_dims():
    x = spec(("N", 48, 64, 1))
    target = image_target(image_input([x], data(), pre(layout="NHWC")), pre(layout="NHWC"))
    assert (target.channels, target.height, target.width) == (1, 48, 64)


def test_configured_size_fills_dynamic_dims():
    x = spec(("N", 3, "H", "W"))
    target = image_target(x, pre(height=100, width=50))
    assert (target.height, target.width) == (100, 50)


def test_configured_size_contradicting_model_is_an_error():
    with pytest.raises(ConfigError) as err:
        image_target(spec((1, 3, 224, 224)), pre(height=300))
    assert "--height 300 does not match input 'x' (1x3x224x224), whose height is 224" in err.value.message


def test_multi_input_model_needs_npz_or_input_name(one_photo):
    inputs = [spec((1, 3, 8, 8), "image"), spec((1, 4), "scale")]
    with pytest.raises(ConfigError) as err:
        open_source(one_photo, inputs, data(), pre())
    assert err.value.message == "the model has 2 inputs (image, scale) and images feed only one"
    assert ".npz" in err.value.hint and "--input-name" in err.value.hint
    assert err.value.exit_code == EXIT_USAGE
    source = open_source(one_photo, inputs, data(input_name="image"), pre())
    assert source.load(0)["image"].shape == (3, 8, 8)


def test_unknown_input_name(one_photo):
    with pytest.raises(ConfigError) as err:
        open_source(one_photo, [spec((1, 3, 8, 8))], data(input_name="images"), pre())
    assert err.value.message == "--input-name 'images' is not a model input (inputs: x)"


def test_four_channel_input_cannot_take_images(one_photo):
    with pytest.raises(DataError) as err:
        open_source(one_photo, [spec((1, 4, 224, 224))], data(), pre())
    assert "input 'x' expects 1x4x224x224 (NCHW float32), which images cannot feed" in err.value.message
    assert "1 or 3 channels" in err.value.hint and err.value.exit_code == EXIT_BAD_INPUT


def test_nhwc_model_with_nchw_layout_suggests_layout(one_photo):
    with pytest.raises(DataError) as err:
        open_source(one_photo, [spec((1, 224, 224, 3))], data(), pre())
    assert "input 'x' expects 1x224x224x3 (NCHW float32)" in err.value.message
    assert err.value.hint == "the input looks like NHWC: pass --layout NHWC"


def test_dynamic_size_needs_height_and_width(one_photo):
    with pytest.raises(ConfigError) as err:
        open_source(one_photo, [spec((-1, 3, "?", "?"))], data(), pre(resize="letterbox"))
    assert "input 'x' has a dynamic height/width (-1x3x?x?), so resize 'letterbox' has no target size" \
        in err.value.message
    assert "--height and --width" in err.value.hint and "--resize none" in err.value.hint
    # resize 'none' keeps each image's own size
    source = open_source(one_photo, [spec((-1, 3, "?", "?"))], data(), pre(resize="none"))
    assert source.load(0)["x"].shape == (3, 400, 600)
