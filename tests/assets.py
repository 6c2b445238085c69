"""Real models and photos for tests, taken from PyPI wheels and cached.

The PP-OCRv4 detector/recognizer and the direction classifier ship inside the
rapidocr-onnxruntime wheel; real photos ship inside the scikit-image and
scikit-learn wheels. Installing those packages would drag in OpenCV, SciPy and
a second onnxruntime, so the wheels are downloaded with `pip download
--no-deps` and only the needed files are extracted, once, into a cache
(TRTQ_TEST_ASSETS, default ~/.cache/trtq-test-assets).
"""

from __future__ import annotations

import fnmatch
import os
import subprocess
import sys
import zipfile
from pathlib import Path

CACHE = Path(os.environ.get("TRTQ_TEST_ASSETS", Path.home() / ".cache" / "trtq-test-assets"))

_WHEELS = {
    "rapidocr": ("rapidocr-onnxruntime==1.4.4", "rapidocr_onnxruntime/models/*.onnx"),
    "skimage": ("scikit-image==0.26.0", "skimage/data/*"),
    "sklearn": ("scikit-learn==1.9.1", "sklearn/datasets/images/*.jpg"),
}

OCR_DETECTOR = "ch_PP-OCRv4_det_infer.onnx"
OCR_RECOGNIZER = "ch_PP-OCRv4_rec_infer.onnx"
OCR_CLASSIFIER = "ch_ppocr_mobile_v2.0_cls_infer.onnx"

# Colour photographs from the wheels (grayscale and synthetic images left out).
COLOR_PHOTOS = (
    "astronaut.png", "chelsea.png", "coffee.png", "motorcycle_left.png", "motorcycle_right.png",
    "rocket.jpg", "retina.jpg", "hubble_deep_field.jpg", "ihc.png", "china.jpg", "flower.jpg",
    "brick.png", "grass.png", "gravel.png",
)
GRAY_PHOTOS = ("camera.png", "coins.png", "moon.png", "page.png", "text.png")


def _extract(key: str) -> Path:
    spec, pattern = _WHEELS[key]
    target = CACHE / key
    done = target / ".done"
    if done.exists():
        return target
    wheel_dir = CACHE / "wheels"
    wheel_dir.mkdir(parents=True, exist_ok=True)
    name = spec.split("==")[0].replace("-", "_")
    wheels = sorted(wheel_dir.glob(f"{name}-*.whl"))
    if not wheels:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "-d", str(wheel_dir), spec],
            check=True,
        )
        wheels = sorted(wheel_dir.glob(f"{name}-*.whl"))
    target.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheels[-1]) as zf:
        for member in zf.namelist():
            if fnmatch.fnmatch(member, pattern) and not member.endswith("/"):
                (target / Path(member).name).write_bytes(zf.read(member))
    done.touch()
    return target


def ocr_model(name: str) -> Path:
    """Path of a real PP-OCR ONNX model."""
    return _extract("rapidocr") / name


def photo(name: str) -> Path:
    """Path of a real photo from scikit-image or scikit-learn."""
    for key in ("skimage", "sklearn"):
        path = _extract(key) / name
        if path.exists():
            return path
    raise FileNotFoundError(name)


def color_photos() -> list[Path]:
    """All bundled colour photos."""
    return [photo(n) for n in COLOR_PHOTOS]


# Windows (left, top, width, height as fractions) cut from the scanned text images, so an OCR
# detector sees real printed text at several scales, not only photos without any.
TEXT_WINDOWS = ((0, 0, 1, 1), (0, 0, .5, .6), (.5, 0, .5, .6), (0, .4, .5, .6), (.5, .4, .5, .6),
                (.25, .2, .5, .6), (0, 0, .7, .7))


def text_images(folder: Path) -> list[Path]:
    """Write windows of the scanned page.png and text.png into `folder` as RGB PNGs; return their paths."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in ("page.png", "text.png"):
        with Image.open(photo(name)) as image:
            rgb = image.convert("RGB")
        w, h = rgb.size
        for i, (fx, fy, fw, fh) in enumerate(TEXT_WINDOWS):
            path = folder / f"text_{Path(name).stem}_{i}.png"
            rgb.crop((int(fx * w), int(fy * h), int((fx + fw) * w), int((fy + fh) * h))).save(path)
            paths.append(path)
    return paths


# Single printed text lines of the scanned page.png (left, top, right, bottom in its 384x191 pixels),
# whole and in halves: what the PP-OCR recognizer and direction classifier are fed after detection.
PAGE_LINES = ((0, 8, 300, 36), (0, 46, 384, 66), (0, 63, 384, 82), (0, 82, 384, 100), (0, 99, 384, 118),
              (0, 118, 200, 136), (0, 170, 250, 191))


def text_lines(folder: Path) -> list[Path]:
    """Write the text lines of page.png (whole, left half, right half) into `folder`; return their paths."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    with Image.open(photo("page.png")) as image:
        rgb = image.convert("RGB")
    paths = []
    for i, (left, top, right, bottom) in enumerate(PAGE_LINES):
        middle = (left + right) // 2
        for part, box in (("", (left, top, right, bottom)), ("a", (left, top, middle, bottom)),
                          ("b", (middle, top, right, bottom))):
            path = folder / f"line_{i}{part}.png"
            rgb.crop(box).save(path)
            paths.append(path)
    return paths


def prepare_example(folder: Path) -> None:
    """Copy the PP-OCR models, the real photos and windows of scanned text into `folder/photos` and
    single text lines into `folder/lines` (the README's example)."""
    import shutil

    folder = Path(folder)
    (folder / "photos").mkdir(parents=True, exist_ok=True)
    for name in (OCR_DETECTOR, OCR_RECOGNIZER, OCR_CLASSIFIER):
        shutil.copy(ocr_model(name), folder / name)
    for path in color_photos():
        shutil.copy(path, folder / "photos" / path.name)
    text_images(folder / "photos")
    text_lines(folder / "lines")


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "example")
    prepare_example(target)
    print(f"example models and photos in {target}/")
