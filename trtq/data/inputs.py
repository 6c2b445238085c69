"""Which model input images feed, and the tensor layout and size they must become."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from trtq.config import DataConfig, PreprocessConfig
from trtq.data.source import is_fixed
from trtq.errors import ConfigError, DataError
from trtq.onnx_model.model import TensorSpec

# Axis of (channels, height, width) in the model input, batch axis included.
_AXES = {"NCHW": (1, 2, 3), "NHWC": (3, 1, 2)}
_FLOAT_DTYPES = ("float32", "float16")


@dataclass(frozen=True)
class ImageTarget:
    """What an image must become for one model input.

    Attributes:
        spec: the model input.
        layout: 'NCHW', 'NHWC', or 'NHW' for a rank-3 input (single-channel images, no channel axis).
        channels: 1 (grayscale) or 3.
        height: target height in pixels, None when neither the model nor the config fixes it.
        width: target width in pixels, likewise.
        dtype: the array dtype the input takes.
    """

    spec: TensorSpec
    layout: str
    channels: int
    height: int | None
    width: int | None
    dtype: np.dtype

    def sample_shape(self, height: int, width: int) -> tuple[int, ...]:
        """Shape of one sample (no batch axis) for an image of height x width."""
        if self.layout == "NCHW":
            return (self.channels, height, width)
        if self.layout == "NHWC":
            return (height, width, self.channels)
        return (height, width)


def _channel_dim(spec: TensorSpec, layout: str) -> int | str | None:
    """The channel dim of a rank-4 input in `layout` (None when the rank is not 4)."""
    if spec.shape is None or len(spec.shape) != 4:
        return None
    return spec.shape[_AXES[layout][0]]


def _image_like(spec: TensorSpec, layout: str) -> bool:
    if spec.shape is None:
        return True
    if len(spec.shape) == 3:
        return True
    channels = _channel_dim(spec, layout)
    return channels is not None and (not is_fixed(channels) or channels in (1, 3))


def _not_image_error(spec: TensorSpec, layout: str) -> DataError:
    """Why `spec` cannot take images, with the fix when the other layout would fit."""
    other = "NHWC" if layout == "NCHW" else "NCHW"
    if _image_like(spec, other) and spec.shape is not None and len(spec.shape) == 4:
        hint = f"the input looks like {other}: pass --layout {other}"
    else:
        hint = "images give 1 or 3 channels; give .npy/.npz data shaped like the input instead"
    return DataError(f"input '{spec.name}' expects {spec.shape_str()} ({layout} {spec.dtype}), "
                     f"which images cannot feed (rank 3 or 4 with 1 or 3 channels needed)", hint=hint)


def image_input(inputs: list[TensorSpec], data: DataConfig, preprocess: PreprocessConfig) -> TensorSpec:
    """The model input that images feed: data.input_name, else the only input.

    Raises:
        ConfigError: input_name is not an input, or the model has several inputs and no input_name.
        DataError: the input cannot take images (wrong rank or channel count).
    """
    names = ", ".join(s.name for s in inputs)
    if data.input_name is not None:
        chosen = [s for s in inputs if s.name == data.input_name]
        if not chosen:
            raise ConfigError(f"--input-name '{data.input_name}' is not a model input (inputs: {names})")
        spec = chosen[0]
    elif len(inputs) == 1:
        spec = inputs[0]
    else:
        raise ConfigError(f"the model has {len(inputs)} inputs ({names}) and images feed only one",
                          hint="give .npz files with one array per input, named after the inputs, "
                               "or choose the image input with --input-name")
    if not _image_like(spec, preprocess.layout):
        raise _not_image_error(spec, preprocess.layout)
    return spec


def _size(spec: TensorSpec, axis: int | None, configured: int | None, what: str) -> int | None:
    """Target height or width: the configured value, else the model's fixed dim."""
    model_dim = spec.shape[axis] if spec.shape is not None and axis is not None else None
    fixed = int(model_dim) if model_dim is not None and is_fixed(model_dim) else None
    if configured is not None:
        if configured < 1:
            raise ConfigError(f"--{what} must be at least 1, got {configured}")
        if fixed is not None and configured != fixed:
            raise ConfigError(f"--{what} {configured} does not match input '{spec.name}' "
                              f"({spec.shape_str()}), whose {what} is {fixed}",
                              hint=f"drop --{what} or set it to {fixed}")
        return configured
    return fixed


def image_target(spec: TensorSpec, preprocess: PreprocessConfig) -> ImageTarget:
    """The layout, channel count, size and dtype images become for `spec`.

    Raises:
        ConfigError: a configured size or dtype contradicts the model input.
    """
    rank = len(spec.shape) if spec.shape is not None else 4
    layout = preprocess.layout if rank == 4 else "NHW"
    if rank == 4:
        c_axis, h_axis, w_axis = _AXES[layout]
        channel = spec.shape[c_axis] if spec.shape is not None else 3
        channels = channel if is_fixed(channel) else 3
    else:
        channels, h_axis, w_axis = 1, 1, 2
    dtype = np.dtype(preprocess.dtype)
    model_dtype = str(spec.dtype)
    if model_dtype in _FLOAT_DTYPES and model_dtype != preprocess.dtype:
        raise ConfigError(f"input '{spec.name}' is {model_dtype} but --dtype is {preprocess.dtype}",
                          hint=f"pass --dtype {model_dtype}")
    if model_dtype not in _FLOAT_DTYPES and spec.dtype != np.dtype("O"):
        raise ConfigError(f"input '{spec.name}' is {model_dtype}; image preprocessing produces float32/float16",
                          hint="give .npy/.npz data of the input's dtype instead of images")
    height = _size(spec, h_axis, preprocess.height, "height")
    width = _size(spec, w_axis, preprocess.width, "width")
    return ImageTarget(spec, layout, int(channels), height, width, dtype)
