"""Random inputs, only when the user asks for them (--allow-random-data).

Ranges computed from random inputs do not reflect real data, so this source always
logs a warning, and make_readers records it for the report.

Values: an image-like input (rank 3, or rank 4 with 1 or 3 channels in the configured
layout) gets uniform random 0..255 pixels normalised with the preprocess scale/mean/std,
so its range is that of real preprocessed images; other float inputs get standard
normal values, integer inputs uniform integers in 0..9, bool inputs random bools.
Sample i is drawn from a generator seeded with (seed, i), so it does not depend on
which samples are loaded or in which order.
"""

from __future__ import annotations

import logging

import numpy as np

from trtq.config import DataConfig, PreprocessConfig
from trtq.data.inputs import ImageTarget, image_target
from trtq.data.preprocess import ImagePipeline
from trtq.data.source import is_fixed
from trtq.errors import ConfigError
from trtq.onnx_model.model import TensorSpec

log = logging.getLogger(__name__)


def _image_target(spec: TensorSpec, preprocess: PreprocessConfig) -> ImageTarget | None:
    """The image target of `spec` if it looks like an image input, else None."""
    if spec.shape is None or len(spec.shape) not in (3, 4) or not np.issubdtype(spec.dtype, np.floating):
        return None
    channel_axis = 1 if preprocess.layout == "NCHW" else 3
    if len(spec.shape) == 4 and is_fixed(spec.shape[channel_axis]) and spec.shape[channel_axis] not in (1, 3):
        return None
    return image_target(spec, preprocess)


def _sample_shape(spec: TensorSpec, target: ImageTarget | None) -> tuple[int, ...]:
    """Shape of one sample (no batch axis); dynamic dims only where an image size fills them.

    Raises:
        ConfigError: a dynamic dim has no value.
    """
    if spec.shape is None:
        raise ConfigError(f"input '{spec.name}' has no shape in the model, so random data cannot be made",
                          hint="give real data with --calib")
    if target is not None:
        if target.height is None or target.width is None:
            raise ConfigError(f"input '{spec.name}' has a dynamic height/width ({spec.shape_str()}), "
                              "so random data has no size", hint="pass --height and --width")
        return target.sample_shape(target.height, target.width)
    dynamic = [str(d) for d in spec.shape[1:] if not is_fixed(d)]
    if dynamic:
        raise ConfigError(f"input '{spec.name}' ({spec.shape_str()}) has dynamic dims ({', '.join(dynamic)}), "
                          "so random data has no shape", hint="give real data with --calib")
    return tuple(int(d) for d in spec.shape[1:])


class RandomSource:
    """`count` seeded random samples shaped like the model inputs."""

    def __init__(self, inputs: list[TensorSpec], count: int, seed: int, preprocess: PreprocessConfig) -> None:
        if count < 1:
            raise ConfigError(f"--random-samples must be at least 1, got {count}")
        self._plan = []
        for spec in inputs:
            target = _image_target(spec, preprocess)
            shape = _sample_shape(spec, target)
            pipeline = ImagePipeline.build(target, preprocess) if target is not None else None
            self._plan.append((spec, shape, pipeline))
        self.seed = seed
        self.keys = [f"random:{i}" for i in range(count)]
        shapes = ", ".join(f"{spec.name} {'x'.join(map(str, shape))}" for spec, shape, _ in self._plan)
        self.description = f"{count} random sample(s), seed {seed} ({shapes}) -- not real data"
        self.warning = (f"calibrating on {count} random samples (--allow-random-data): ranges from random "
                        "inputs do not reflect real data, so expect poor INT8 accuracy")
        log.warning(self.warning)

    def __len__(self) -> int:
        return len(self.keys)

    def load(self, index: int) -> dict[str, np.ndarray]:
        if not 0 <= index < len(self.keys):
            raise IndexError(index)
        rng = np.random.default_rng((self.seed, index))
        return {spec.name: _draw(rng, spec, shape, pipeline) for spec, shape, pipeline in self._plan}


def _draw(rng: np.random.Generator, spec: TensorSpec, shape: tuple[int, ...],
          pipeline: ImagePipeline | None) -> np.ndarray:
    if pipeline is not None:
        height, width = shape[1:] if pipeline.target.layout == "NCHW" else shape[:2]
        pixels = rng.integers(0, 256, size=(height, width, pipeline.target.channels)).astype(np.float32)
        return pipeline.finish(pixels)
    if spec.dtype == np.bool_:
        return rng.integers(0, 2, size=shape).astype(np.bool_)
    if np.issubdtype(spec.dtype, np.integer):
        return rng.integers(0, 10, size=shape).astype(spec.dtype)
    dtype = spec.dtype if np.issubdtype(spec.dtype, np.floating) else np.float32
    return rng.standard_normal(size=shape).astype(dtype)


def random_source(inputs: list[TensorSpec], data: DataConfig, preprocess: PreprocessConfig) -> RandomSource:
    """data.random_samples random samples for `inputs`, seeded with data.seed (logs a warning).

    Raises:
        ConfigError: an input has dynamic dims that neither --height/--width nor the model fix.
    """
    return RandomSource(inputs, data.random_samples, data.seed, preprocess)
