"""The quantizer on the real PP-OCR models (opset 11/12), calibrated on real photos.

The amax table comes from a quick FP32 run (exact max |x|) on two photos; the
accuracy is measured on a different photo. PP-OCRv4's detector is
reparameterised (MobileOne-style blocks) and known to be sensitive to PTQ with
plain max ranges, so the bars are modest: what is checked here is that the
Q/DQ model is valid, runs, and still finds the same text pixels.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from PIL import Image

from tests import assets
from tests.qdq.helpers import activation_amax, session, sqnr_db
from trtq.config import QuantizeConfig
from trtq.qdq.linter import lint_model
from trtq.qdq.quantizer import quantize_model

_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
_STD = np.array([0.229, 0.224, 0.225], np.float32)


def _image(name: str, height: int, width: int, imagenet: bool = True) -> np.ndarray:
    """A real photo as a 1x3xHxW BGR tensor: ImageNet mean/std (detector) or (x/255 - 0.5)/0.5 (rec/cls)."""
    image = Image.open(assets.photo(name)).convert("RGB").resize((width, height), Image.BILINEAR)
    x = np.asarray(image, np.float32)[:, :, ::-1] / 255.0
    x = (x - _MEAN) / _STD if imagenet else (x - 0.5) / 0.5
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None], dtype=np.float32)


def _with_output(model: onnx.ModelProto, tensor: str) -> onnx.ModelProto:
    model = onnx.ModelProto.FromString(model.SerializeToString())
    model.graph.output.append(helper.make_tensor_value_info(tensor, TensorProto.FLOAT, None))
    return model


@pytest.fixture(scope="module")
def detector_case(ocr_detector):
    model = onnx.load(str(ocr_detector))
    calib = [{"x": _image(n, 320, 320)} for n in ("coffee.png", "astronaut.png")]
    return model, activation_amax(model, calib)


@pytest.mark.parametrize("precision", ["int8", "fp8"])
def test_detector_quantized_runs_and_finds_the_same_text(detector_case, precision):
    model, amax = detector_case
    result = quantize_model(model, amax, QuantizeConfig(precision=precision))
    assert result.report.opset == (12, 13 if precision == "int8" else 19)
    assert not [f for f in lint_model(result.model) if f.severity == "error"]
    quantized = {n.op_type for n in result.report.quantized}
    assert {"Conv", "ConvTranspose", "GlobalAveragePool"} <= quantized
    logits = next(n for n in model.graph.node if n.op_type == "Sigmoid").input[0]
    feed = {"x": _image("page.png", 320, 320)}  # a page of text, not used for calibration
    prob, logit = session(_with_output(model, logits)).run(None, feed)
    qprob, qlogit = session(_with_output(result.model, logits)).run(None, feed)
    text, qtext = prob > 0.3, qprob > 0.3  # DB post-processing's default binarisation threshold
    assert text.mean() > 0.05  # the page really has text
    assert (text == qtext).mean() > 0.95
    assert sqnr_db(logit, qlogit) > 10.0
    print(f"\ndetector {precision}: logit SQNR {sqnr_db(logit, qlogit):.1f} dB, probability SQNR "
          f"{sqnr_db(prob, qprob):.1f} dB, text-pixel agreement {(text == qtext).mean():.3f}")


@pytest.mark.parametrize(("which", "shape", "opset"), [("classifier", (48, 192), 11), ("recognizer", (48, 320), 12)])
def test_classifier_and_recognizer_survive_the_opset_bump(ocr_classifier, ocr_recognizer, which, shape, opset):
    model = onnx.load(str(ocr_classifier if which == "classifier" else ocr_recognizer))
    amax = activation_amax(model, [{"x": _image("page.png", *shape, imagenet=False)}])
    result = quantize_model(model, amax)
    assert result.report.opset == (opset, 13)
    assert not [f for f in lint_model(result.model) if f.severity == "error"]
    feed = {"x": _image("text.png", *shape, imagenet=False)}
    ref = session(model).run(None, feed)[0]
    out = session(result.model).run(None, feed)[0]
    assert out.shape == ref.shape
    assert sqnr_db(ref, out) > 15.0
    print(f"\n{which} int8: output SQNR {sqnr_db(ref, out):.1f} dB")
