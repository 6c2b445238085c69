"""The PP-OCR presets against rapidocr_onnxruntime 1.4.4's own formulas, computed by hand here.

rapidocr loads images as BGR and normalises (p / 255 - 0.5) / 0.5; the recognizer and the
classifier resize a text line to height 48 with width min(W, ceil(48 * w / h)) and pad the rest
of the width on the right with 0 after normalisation (resize_norm_img in text_recognize.py and
text_cls.py). The resize itself is OpenCV's there and Pillow's here; the checks below compute
the expected value with Pillow so that they test the formula, not the resampler.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from tests.data.helpers import photo, spec
from trtq.config import load_config
from trtq.data import open_source


def _sample(preset: str, path, shape) -> np.ndarray:
    config = load_config([preset])
    source = open_source(str(path), [spec(shape)], config.data, config.preprocess)
    return source.load(0)["x"]


def _ppocr_norm(pixels_rgb: np.ndarray) -> np.ndarray:
    """rapidocr's normalisation of RGB pixels (H x W x 3, 0..255) into its BGR CHW input."""
    bgr = pixels_rgb[:, :, ::-1].astype(np.float64)
    return ((bgr / 255.0 - 0.5) / 0.5).transpose(2, 0, 1)


@pytest.fixture()
def text_line(tmp_path):
    """A wide strip of a real photo (a text-line-like crop), 300 x 60 pixels."""
    path = tmp_path / "line.png"
    photo("chelsea.png").crop((40, 100, 340, 160)).save(path)
    return path


@pytest.mark.parametrize(("preset", "width"), [("ppocr-rec", 320), ("ppocr-cls", 192)])
def test_text_line_presets_match_rapidocr_resize_norm_img(preset, width, text_line):
    out = _sample(preset, text_line, (1, 3, 48, width))
    resized_w = min(width, math.ceil(48 * 300 / 60))  # 240 for the recognizer, capped to 192 for the classifier
    image = Image.open(text_line).convert("RGB").resize((resized_w, 48), Image.Resampling.BILINEAR)
    expected = np.zeros((3, 48, width))
    expected[:, :, :resized_w] = _ppocr_norm(np.asarray(image))
    assert out.shape == (3, 48, width)
    np.testing.assert_allclose(out, expected, atol=1e-5)
    if resized_w < width:
        assert np.all(out[:, :, resized_w:] == 0.0)  # the pad is exactly rapidocr's zero canvas


def test_detector_preset_is_exact_resize_with_half_mean_and_std(tmp_path):
    path = tmp_path / "chelsea.png"
    photo("chelsea.png").save(path)
    out = _sample("ppocr-det", path, (1, 3, 320, 320))
    image = Image.open(path).convert("RGB").resize((320, 320), Image.Resampling.BILINEAR)
    np.testing.assert_allclose(out, _ppocr_norm(np.asarray(image)), atol=1e-5)


def test_pad_right_keeps_a_tall_image_narrow_and_pads_it(tmp_path):
    path = tmp_path / "tall.png"
    photo("chelsea.png").crop((0, 0, 30, 90)).save(path)  # 30 x 90: width ceil(48 * 30 / 90) = 16
    out = _sample("ppocr-rec", path, (1, 3, 48, 320))
    assert np.all(out[:, :, 16:] == 0.0)
    assert np.abs(out[:, :, :16]).max() > 0.05


def test_old_ppocr_preset_warns_that_it_is_deprecated(caplog):
    load_config(["ppocr"])
    assert any("ppocr-det" in r.getMessage() for r in caplog.records)
    caplog.clear()
    load_config(["ppocr-det"])
    assert not caplog.records
