"""open_source: the right Source for a path (image file or folder, .npy/.npz, video)."""

from __future__ import annotations

from pathlib import Path

from trtq.config import DataConfig, PreprocessConfig
from trtq.data.arrays import ArraySource
from trtq.data.images import ImageSource
from trtq.data.inputs import image_input, image_target
from trtq.data.preprocess import ImagePipeline
from trtq.data.source import (
    ARRAY_SUFFIXES,
    IMAGE_SUFFIXES,
    VIDEO_SUFFIXES,
    ConcatSource,
    Source,
    list_files,
)
from trtq.data.video import VideoSource
from trtq.errors import ConfigError, DataError
from trtq.onnx_model.model import TensorSpec

NO_DATA_HINT = ("give --calib an image folder or file, .npy/.npz files or a video; only if you accept "
                "meaningless ranges, --allow-random-data calibrates on random inputs")
_KINDS = (f"images ({'/'.join(s[1:] for s in IMAGE_SUFFIXES)}), arrays (npy/npz) "
          f"or videos ({'/'.join(s[1:] for s in VIDEO_SUFFIXES)})")


def _pipeline(inputs: list[TensorSpec], data: DataConfig, preprocess: PreprocessConfig) -> ImagePipeline:
    spec = image_input(inputs, data, preprocess)
    return ImagePipeline.build(image_target(spec, preprocess), preprocess)


def _check(data: DataConfig) -> None:
    if data.video_stride < 1:
        raise ConfigError(f"--video-stride must be at least 1, got {data.video_stride}")


def open_source(path: str, inputs: list[TensorSpec], data: DataConfig, preprocess: PreprocessConfig) -> Source:
    """A Source over `path`: an image file or folder, a .npy/.npz file or folder, a video file,
    or a folder of images and videos. Nothing is decoded yet; video frames are counted.

    Raises:
        DataError: the path is missing, empty, of an unknown kind, or does not fit the model.
        ConfigError: the preprocessing settings do not fit the model input.
        MissingDependencyError: a video is given and PyAV is not installed.
    """
    _check(data)
    root = Path(path)
    if not root.exists():
        raise DataError(f"data path {path} does not exist", hint=NO_DATA_HINT)
    if root.is_file():
        suffix = root.suffix.lower()
        if suffix in ARRAY_SUFFIXES:
            return ArraySource([root], root, inputs, data.skip_bad_files)
        if suffix in IMAGE_SUFFIXES:
            return ImageSource([root], root, _pipeline(inputs, data, preprocess))
        if suffix in VIDEO_SUFFIXES:
            return VideoSource([root], root, _pipeline(inputs, data, preprocess), data.video_stride,
                               data.skip_bad_files)
        raise DataError(f"data file {path} is not a supported kind ({suffix or 'no suffix'})",
                        hint=f"give {_KINDS}, or a folder of them")
    return _open_folder(root, inputs, data, preprocess)


def _open_folder(root: Path, inputs: list[TensorSpec], data: DataConfig, preprocess: PreprocessConfig) -> Source:
    arrays = list_files(root, ARRAY_SUFFIXES)
    images = list_files(root, IMAGE_SUFFIXES)
    videos = list_files(root, VIDEO_SUFFIXES)
    if not (arrays or images or videos):
        raise DataError(f"data folder {root}/ holds no {_KINDS}", hint=NO_DATA_HINT)
    if arrays and (images or videos):
        raise DataError(f"data folder {root}/ mixes NumPy files ({len(arrays)}) with images or "
                        f"videos ({len(images) + len(videos)})", hint="keep one kind of data per folder")
    if arrays:
        return ArraySource(arrays, root, inputs, data.skip_bad_files)
    pipeline = _pipeline(inputs, data, preprocess)
    parts: list[Source] = []
    if images:
        parts.append(ImageSource(images, root, pipeline))
    if videos:
        parts.append(VideoSource(videos, root, pipeline, data.video_stride, data.skip_bad_files))
    return parts[0] if len(parts) == 1 else ConcatSource(parts)

