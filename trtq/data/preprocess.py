"""Image -> model input: pixel mode, orientation, resize, crop/pad, normalisation, layout.

Order of operations, matching torchvision / PaddleOCR style pipelines:
1. EXIF orientation applied; any mode made 8-bit RGB (or L for 1-channel inputs):
   16-bit pixels are scaled by 255/65535, transparent pixels composited over white.
2. Resize ('shorter' then centre crop, 'exact', 'letterbox', 'pad-right', or 'none').
3. p in 0..255 -> (p * scale - mean) / std per channel, after the RGB->BGR swap, so
   mean/std are given in the model's channel order.
4. Layout NCHW / NHWC (or HW for rank-3 inputs), dtype.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

from trtq.config import PreprocessConfig
from trtq.data.inputs import ImageTarget
from trtq.errors import ConfigError

_FILTERS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
}
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")
# torchvision's convention: the shorter side is resized to crop / 0.875 (224 -> 256).
CROP_RATIO = 0.875
# Transparent pixels are shown over white, as a browser or viewer shows them on a page; dropping
# alpha instead exposes whatever colour the encoder left under fully transparent pixels.
_BACKGROUND = (255, 255, 255, 255)


def to_pixels(image: Image.Image, channels: int) -> Image.Image:
    """An upright 8-bit image in mode 'RGB' (channels 3) or 'L' (channels 1)."""
    image = ImageOps.exif_transpose(image) or image
    if image.mode in _SIXTEEN_BIT:
        # 16-bit (and 32-bit 'I', which Pillow uses for 16-bit PNGs) cover 0..65535.
        wide = np.asarray(image, dtype=np.float64) * (255.0 / 65535.0)
        image = Image.fromarray(np.clip(np.rint(wide), 0, 255).astype(np.uint8), mode="L")
    elif image.mode == "F":
        image = Image.fromarray(np.clip(np.rint(np.asarray(image)), 0, 255).astype(np.uint8), mode="L")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, _BACKGROUND), rgba)
    mode = "RGB" if channels == 3 else "L"
    return image if image.mode == mode else image.convert(mode)


def _as_array(image: Image.Image) -> np.ndarray:
    """H x W x C uint8 pixels (a view of the image's bytes, no float copy yet)."""
    array = np.asarray(image)
    return array[:, :, None] if array.ndim == 2 else array


def _crop_or_pad(image: Image.Image, height: int, width: int, pad_value: float) -> np.ndarray:
    """Centre crop to height x width, padding with pad_value where the image is smaller.

    Offsets follow torchvision's CenterCrop: top = round((h - height) / 2).
    """
    w, h = image.size
    if h >= height and w >= width:
        top, left = round((h - height) / 2.0), round((w - width) / 2.0)
        return _as_array(image.crop((left, top, left + width, top + height)))
    ph, pw = max(height - h, 0), max(width - w, 0)
    array = np.pad(_as_array(image).astype(np.float32), ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)),
                   constant_values=pad_value)
    h, w = array.shape[:2]
    top, left = round((h - height) / 2.0), round((w - width) / 2.0)
    return array[top:top + height, left:left + width]


def _letterbox(image: Image.Image, height: int, width: int, pad_value: float,
               resample: Image.Resampling) -> np.ndarray:
    """Resize keeping the aspect ratio to fit height x width, centred on a pad_value canvas."""
    w, h = image.size
    scale = min(height / h, width / w)
    nw, nh = min(max(round(w * scale), 1), width), min(max(round(h * scale), 1), height)
    resized = _as_array(image.resize((nw, nh), resample))
    canvas = np.full((height, width, resized.shape[2]), pad_value, dtype=np.float32)
    top, left = (height - nh) // 2, (width - nw) // 2
    canvas[top:top + nh, left:left + nw] = resized
    return canvas


def _pad_right(image: Image.Image, height: int, width: int, pad_value: float,
               resample: Image.Resampling) -> np.ndarray:
    """PaddleOCR's text-line resize: height becomes `height`, the width follows the aspect ratio
    (rounded up) but at most `width`, and the rest of the width is padded on the right.

    rapidocr_onnxruntime 1.4.4 ch_ppocr_rec/text_recognize.py and ch_ppocr_cls/text_cls.py
    (`resize_norm_img`): resized_w = min(W, ceil(H * w / h)), then a zero canvas after normalisation
    (with mean = std = 0.5 that is pixel 127.5) gets the resized image at columns [0, resized_w).
    """
    w, h = image.size
    resized_w = min(width, math.ceil(height * w / h))
    resized = _as_array(image.resize((resized_w, height), resample))
    canvas = np.full((height, width, resized.shape[2]), pad_value, dtype=np.float32)
    canvas[:, :resized_w] = resized
    return canvas


def _shorter_size(w: int, h: int, size: int) -> tuple[int, int]:
    """(width, height) with the shorter side = size; the longer side truncated as torchvision does."""
    if w <= h:
        return size, int(size * h / w)
    return int(size * w / h), size


def _channel_values(values: list[float], channels: int, name: str) -> np.ndarray:
    if len(values) == channels:
        return np.asarray(values, dtype=np.float32)
    if len(values) == 1 or (channels == 1 and len(set(values)) == 1):
        return np.full(channels, values[0], dtype=np.float32)
    raise ConfigError(f"--{name} has {len(values)} values but the input takes {channels} channel(s)",
                      hint=f"give {channels} value(s), e.g. --{name} {','.join(['0.5'] * channels)}")


@dataclass(frozen=True, eq=False)
class ImagePipeline:
    """Turns a decoded PIL image into one sample (no batch axis) for `target`."""

    target: ImageTarget
    config: PreprocessConfig
    resize_size: int | None
    mean: np.ndarray
    std: np.ndarray
    gain: np.ndarray  # scale / std: (p * scale - mean) / std = p * gain + offset
    offset: np.ndarray  # -mean / std

    @classmethod
    def build(cls, target: ImageTarget, config: PreprocessConfig) -> ImagePipeline:
        """Check that the config gives every size the resize mode needs.

        Raises:
            ConfigError: the target size is unknown (dynamic model dims) or a value is invalid.
        """
        mode, spec = config.resize, target.spec
        size_known = target.height is not None and target.width is not None
        needs_size = mode in ("exact", "letterbox", "pad-right") or (mode == "shorter" and
                                                         (config.center_crop or config.resize_size is None))
        if needs_size and not size_known:
            raise ConfigError(f"input '{spec.name}' has a dynamic height/width ({spec.shape_str()}), "
                              f"so resize '{mode}' has no target size",
                              hint="pass --height and --width (or --resize none to keep each image's size)")
        resize_size = config.resize_size
        if mode == "shorter" and resize_size is None and target.height and target.width:
            resize_size = round(max(target.height, target.width) / CROP_RATIO)
        if resize_size is not None and resize_size < 1:
            raise ConfigError(f"--resize-size must be at least 1, got {resize_size}")
        mean = _channel_values(config.mean, target.channels, "mean")
        std = _channel_values(config.std, target.channels, "std")
        if not np.all(std != 0):
            raise ConfigError(f"--std must not contain 0, got {config.std}")
        gain = (np.float64(config.scale) / std).astype(np.float32)
        offset = (-mean.astype(np.float64) / std).astype(np.float32)
        return cls(target, config, resize_size, mean, std, gain, offset)

    def describe(self) -> str:
        """E.g. 'resize shorter side to 256, crop 224x224, NCHW RGB float32'."""
        c, t = self.config, self.target
        size = f"{t.height}x{t.width}"
        steps = {"shorter": f"resize shorter side to {self.resize_size}" + (f", crop {size}" if c.center_crop else ""),
                 "exact": f"resize to {size}", "letterbox": f"letterbox {size} pad {c.pad_value:g}",
                 "pad-right": f"resize to height {t.height} keeping the aspect ratio, pad right to {size} "
                              f"with {c.pad_value:g}",
                 "none": "no resize"}[c.resize]
        colours = "gray" if t.channels == 1 else c.channel_order
        return f"{steps}, {t.layout} {colours} {t.dtype}"

    def resize(self, image: Image.Image) -> np.ndarray:
        """H x W x C pixels in 0..255 (uint8, or float32 when padded) after the resize step."""
        c, t = self.config, self.target
        resample = _FILTERS[c.interpolation]
        if c.resize == "exact":
            return _as_array(image.resize((t.width, t.height), resample))  # type: ignore[arg-type]
        if c.resize == "pad-right":
            return _pad_right(image, t.height, t.width, c.pad_value, resample)  # type: ignore[arg-type]
        if c.resize == "letterbox":
            return _letterbox(image, t.height, t.width, c.pad_value, resample)  # type: ignore[arg-type]
        if c.resize == "shorter":
            image = image.resize(_shorter_size(*image.size, self.resize_size), resample)  # type: ignore[arg-type]
            if c.center_crop:
                return _crop_or_pad(image, t.height, t.width, c.pad_value)  # type: ignore[arg-type]
        return _as_array(image)

    def finish(self, pixels: np.ndarray) -> np.ndarray:
        """Normalise, reorder and lay out H x W x C pixels in 0..255 (after the resize step).

        Written channel by channel into the one output array: worker threads then allocate a
        single sample-sized block per image, instead of a float temporary per step.
        """
        t = self.target
        if t.channels == 3 and self.config.channel_order == "BGR":
            pixels = pixels[:, :, ::-1]
        out = np.empty(t.sample_shape(*pixels.shape[:2]), dtype=np.float32)
        if t.layout == "NCHW":
            planes = out
        elif t.layout == "NHWC":
            planes = np.moveaxis(out, 2, 0)
        else:
            planes = out[None]
        for c in range(t.channels):
            np.multiply(pixels[:, :, c], self.gain[c], out=planes[c], dtype=np.float32)
            planes[c] += self.offset[c]
        return out if t.dtype == np.float32 else out.astype(t.dtype)

    def __call__(self, image: Image.Image) -> np.ndarray:
        """One preprocessed sample from a decoded image of any mode."""
        return self.finish(self.resize(to_pixels(image, self.target.channels)))
