"""Image files (jpg/png/bmp/webp/tif) decoded with Pillow, one sample per file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from trtq.data.preprocess import ImagePipeline, to_pixels
from trtq.data.source import UnreadableFile, check_sample, file_key

SIZE_HINT = "use --resize shorter, exact or letterbox (with --height/--width) to bring images to the model's size"


def decode_image(path: Path) -> Image.Image:
    """Fully decode `path` (so truncation shows here, not later) and close the file.

    Raises:
        UnreadableFile: the file is missing, not an image, truncated or too large for Pillow.
    """
    try:
        with Image.open(path) as image:
            image.load()
            return image
    except Exception as exc:  # Pillow raises OSError, ValueError, SyntaxError, DecompressionBombError...
        raise UnreadableFile(f"image {path} cannot be read ({type(exc).__name__}: {exc})",
                             hint="replace or delete the file, or pass --skip-bad-files") from None


class ImageSource:
    """One sample per image file, decoded and preprocessed on `load`."""

    def __init__(self, files: list[Path], root: Path, pipeline: ImagePipeline) -> None:
        self.files = files
        self.keys = [file_key(path, root) for path in files]
        self.pipeline = pipeline
        self._specs = {pipeline.target.spec.name: pipeline.target.spec}
        where = root.name if root.is_file() else f"{root}/"
        self.description = (f"{len(files)} image(s) from {where} -> input '{pipeline.target.spec.name}' "
                            f"({pipeline.describe()})")

    def __len__(self) -> int:
        return len(self.files)

    def files_of(self, index: int) -> tuple[Path, ...]:
        """The file(s) sample `index` is read from (hashed by the data fingerprint)."""
        return (self.files[index],)

    def load(self, index: int) -> dict[str, np.ndarray]:
        path, key = self.files[index], self.keys[index]
        image = decode_image(path)
        try:
            image = to_pixels(image, self.pipeline.target.channels)
        except (OSError, ValueError) as exc:  # a mode Pillow cannot convert to RGB, a broken EXIF block
            raise UnreadableFile(f"image {path} cannot be converted to pixels ({type(exc).__name__}: {exc})",
                                 hint="replace or delete the file, or pass --skip-bad-files") from None
        array = self.pipeline.finish(self.pipeline.resize(image))
        sample = {self.pipeline.target.spec.name: array}
        check_sample(sample, self._specs, key, self.pipeline.target.layout, SIZE_HINT)
        return sample
