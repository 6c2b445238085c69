"""Image preprocessing against direct numpy/Pillow computations on real photos."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tests import assets
from tests.data.helpers import IMAGENET_MEAN, IMAGENET_STD, data, photo, pre, spec
from trtq.data import open_source
from trtq.errors import EXIT_USAGE, ConfigError

DYNAMIC_NCHW = ("N", 3, "h", "w")


def load_one(path, shape, **preprocess) -> np.ndarray:
    """The single sample open_source makes of one image file."""
    source = open_source(str(path), [spec(shape, dtype=preprocess.get("dtype", "float32"))], data(), pre(**preprocess))
    assert len(source) == 1
    return source.load(0)["x"]


@pytest.fixture()
def chelsea(tmp_path):
    """A real 451x300 RGB photo saved losslessly."""
    path = tmp_path / "chelsea.png"
    photo("chelsea.png").save(path)
    return path


def test_imagenet_shorter_side_and_crop_matches_direct_computation(chelsea):
    out = load_one(chelsea, (1, 3, 224, 224), scale=1 / 255, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    # Shorter side 300 -> 256 (= round(224 / 0.875)), longer side int(256 * 451 / 300) = 384,
    # then the centre 224x224: left = (384 - 224) / 2 = 80, top = (256 - 224) / 2 = 16.
    resized = np.asarray(photo("chelsea.png").resize((384, 256), Image.Resampling.BILINEAR), dtype=np.float64)
    crop = resized[16:240, 80:304] / 255.0
    expected = ((crop - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1)
    assert out.shape == (3, 224, 224) and out.dtype == np.float32
    np.testing.assert_allclose(out, expected, atol=1e-5)
    for c in range(3):  # inside the normalised range of 0..255 pixels, and spread over much of it
        low, high = -IMAGENET_MEAN[c] / IMAGENET_STD[c], (1 - IMAGENET_MEAN[c]) / IMAGENET_STD[c]
        assert low - 1e-6 <= out[c].min() and out[c].max() <= high + 1e-6
        assert out[c].max() - out[c].min() > 0.5 * (high - low)


def test_bgr_swaps_channels_and_takes_mean_in_model_order(chelsea):
    rgb = load_one(chelsea, (1, 3, 224, 224), mean=IMAGENET_MEAN, std=IMAGENET_STD)
    bgr = load_one(chelsea, (1, 3, 224, 224), channel_order="BGR", mean=IMAGENET_MEAN[::-1], std=IMAGENET_STD[::-1])
    np.testing.assert_array_equal(bgr, rgb[::-1])
    assert not np.allclose(rgb[0], rgb[2])  # the swap is visible on a colour photo


def test_nhwc_is_nchw_transposed(chelsea):
    nchw = load_one(chelsea, (1, 3, 160, 200), resize="exact")
    nhwc = load_one(chelsea, (1, 160, 200, 3), resize="exact", layout="NHWC")
    assert nchw.shape == (3, 160, 200) and nhwc.shape == (160, 200, 3)
    np.testing.assert_array_equal(nhwc, nchw.transpose(1, 2, 0))


def test_letterbox_pads_top_and_bottom_with_pad_value(chelsea):
    out = load_one(chelsea, (1, 3, 224, 224), resize="letterbox", pad_value=114.0)
    # 451x300 scaled by 224/451: 224 x round(300 * 224 / 451) = 224 x 149, centred: 37 rows above, 38 below.
    pad = 114.0 / 255.0
    np.testing.assert_allclose(out[:, :37], pad, rtol=0, atol=1e-7)
    np.testing.assert_allclose(out[:, 37 + 149:], pad, rtol=0, atol=1e-7)
    for row in (37, 37 + 148):  # first and last image rows are photo content, not padding
        assert np.abs(out[:, row] - pad).max() > 0.05
    expected = np.asarray(photo("chelsea.png").resize((224, 149), Image.Resampling.BILINEAR)) / 255.0
    np.testing.assert_allclose(out[:, 37:186].transpose(1, 2, 0), expected, atol=1e-6)


def test_shorter_side_without_crop_keeps_aspect(chelsea):
    out = load_one(chelsea, DYNAMIC_NCHW, resize="shorter", resize_size=150, center_crop=False)
    assert out.shape == (3, 150, 225)  # 451 * 150 / 300 = 225.5, truncated like torchvision


def test_nearest_upscale_repeats_pixels(tmp_path):
    small = photo("chelsea.png").crop((100, 50, 140, 80))  # 40x30
    small.save(tmp_path / "small.png")
    out = load_one(tmp_path / "small.png", (1, 3, 60, 80), resize="exact", interpolation="nearest", scale=1.0)
    expected = np.repeat(np.repeat(np.asarray(small), 2, axis=0), 2, axis=1).transpose(2, 0, 1)
    np.testing.assert_array_equal(out, expected)


def test_grayscale_photo_feeds_three_equal_channels(tmp_path):
    gray = Image.open(assets.photo(assets.GRAY_PHOTOS[0]))
    assert gray.mode == "L"
    out = load_one(assets.photo(assets.GRAY_PHOTOS[0]), DYNAMIC_NCHW, resize="none")
    expected = np.asarray(gray) / 255.0
    for c in range(3):
        np.testing.assert_allclose(out[c], expected, atol=1e-7)


def test_rgba_is_composited_over_white(tmp_path):
    rgb = np.asarray(photo("chelsea.png"), dtype=np.float64)
    alpha = np.tile(np.linspace(0, 255, rgb.shape[1]).round(), (rgb.shape[0], 1))
    rgba = np.dstack([rgb, alpha]).astype(np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    out = load_one(tmp_path / "rgba.png", DYNAMIC_NCHW, resize="none", scale=1.0)
    a = alpha[..., None] / 255.0
    expected = (rgb * a + 255.0 * (1 - a)).transpose(2, 0, 1)
    np.testing.assert_allclose(out, expected, atol=1.0)  # Pillow composites in integers
    assert out[:, :, 0].min() >= 254  # fully transparent column is white


def test_palette_with_transparency(tmp_path):
    image = photo("chelsea.png").quantize(16)
    image.info["transparency"] = 0
    image.save(tmp_path / "p.png", transparency=0)
    out = load_one(tmp_path / "p.png", DYNAMIC_NCHW, resize="none", scale=1.0)
    index = np.asarray(Image.open(tmp_path / "p.png"))
    assert (index == 0).any()
    np.testing.assert_array_equal(out[:, index == 0], 255.0)  # transparent palette entry -> white


def test_sixteen_bit_is_scaled_to_eight_bit(tmp_path):
    gray = np.asarray(Image.open(assets.photo("camera.png")), dtype=np.uint16)
    Image.fromarray(gray * 257).save(tmp_path / "deep.png")  # 0..255 -> 0..65535
    assert Image.open(tmp_path / "deep.png").mode in ("I;16", "I")
    out = load_one(tmp_path / "deep.png", ("N", 1, "h", "w"), resize="none", scale=1.0, mean=[0.0], std=[1.0])
    assert out.shape == (1, *gray.shape)
    np.testing.assert_array_equal(out[0], gray)


@pytest.mark.parametrize(("orientation", "clockwise_turns"), [(6, 1), (3, 2), (8, 3)])
def test_exif_orientation_is_applied(tmp_path, orientation, clockwise_turns):
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = orientation
    photo("chelsea.png").save(path, quality=95, exif=exif)
    with Image.open(path) as stored:
        raw = np.asarray(stored.convert("RGB"), dtype=np.float32)  # pixels as stored, orientation ignored
    out = load_one(path, DYNAMIC_NCHW, resize="none", scale=1.0)
    np.testing.assert_array_equal(out.transpose(1, 2, 0), np.rot90(raw, k=-clockwise_turns))


def test_one_channel_model_gets_luma(chelsea):
    out = load_one(chelsea, ("N", 1, "h", "w"), resize="none", scale=1.0, mean=[0.0], std=[1.0])
    rgb = np.asarray(photo("chelsea.png"), dtype=np.float64)
    luma = rgb @ [0.299, 0.587, 0.114]  # ITU-R 601-2, what Pillow's 'L' conversion uses
    np.testing.assert_allclose(out[0], luma, atol=1.0)


def test_rank3_input_gets_grayscale_without_channel_axis(chelsea):
    out = load_one(chelsea, ("N", 48, 64), resize="exact", mean=[0.0], std=[1.0])
    assert out.shape == (48, 64)


def test_float16(chelsea):
    out = load_one(chelsea, (1, 3, 32, 32), resize="exact", dtype="float16")
    assert out.dtype == np.float16


def test_model_dtype_must_match_configured_dtype(chelsea):
    with pytest.raises(ConfigError) as err:
        open_source(str(chelsea), [spec((1, 3, 32, 32), dtype="float16")], data(), pre())
    assert "input 'x' is float16 but --dtype is float32" in err.value.message
    assert "--dtype float16" in err.value.hint and err.value.exit_code == EXIT_USAGE


def test_three_means_for_a_one_channel_input_is_an_error(chelsea):
    with pytest.raises(ConfigError) as err:
        open_source(str(chelsea), [spec(("N", 1, 32, 32))], data(), pre(mean=IMAGENET_MEAN))
    assert "--mean has 3 values but the input takes 1 channel(s)" in err.value.message
