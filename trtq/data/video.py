"""Every k-th frame of video files (PyAV, imported lazily), preprocessed like images.

Frame counting: a demux-only pass counts the non-empty packets of the first video
stream. It reads the file but decodes nothing, so it is cheap next to decoding. The
container's frame count (stream.frames) is not used: mkv/webm do not store it, and in
mp4/mov it can disagree with the frames a decoder returns (edit lists). One packet per
frame holds for every common codec; if a file decodes to fewer frames than counted, the
missing samples fail as unreadable (and are skipped with skip_bad_files).

Frame n is the n-th frame the decoder returns (presentation order), counted from 0.
Decoding is sequential per file: loader threads asking for frames of one file take
turns, and sampled frames passed on the way to a later one are kept (a few) for the
thread that asks for them next, so loading in any order within the prefetch window
decodes each frame once. Asking for an earlier frame reopens the file.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from PIL import Image

from trtq._lazy import require
from trtq.data.images import SIZE_HINT
from trtq.data.preprocess import ImagePipeline
from trtq.data.source import UnreadableFile, check_sample, file_key

log = logging.getLogger(__name__)

_BAD_VIDEO_HINT = "replace or delete the file, or pass --skip-bad-files"
_KEEP_FRAMES = 8  # decoded frames kept per file for out-of-order requests
_OPEN_FILES = 2  # decoders kept open (the file being read and the next one)


def count_frames(av: ModuleType, path: Path) -> int:
    """Frames in the first video stream of `path`, from a demux-only pass.

    Raises:
        UnreadableFile: the file cannot be opened, has no video stream or no frames.
    """
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise UnreadableFile(f"video {path} has no video stream", hint=_BAD_VIDEO_HINT)
            stream = container.streams.video[0]
            count = sum(1 for packet in container.demux(stream) if packet.size > 0)
    except UnreadableFile:
        raise
    except Exception as exc:  # PyAV raises its FFmpegError subclasses (InvalidDataError, ...)
        raise UnreadableFile(f"video {path} cannot be read ({type(exc).__name__}: {exc})",
                             hint=_BAD_VIDEO_HINT) from None
    if count == 0:
        raise UnreadableFile(f"video {path} has no frames", hint=_BAD_VIDEO_HINT)
    return count


class _Decoder:
    """Sequential decoding of one file, shared by the loader threads."""

    def __init__(self, av: ModuleType, path: Path, stride: int) -> None:
        self._av, self.path, self._stride = av, path, stride
        self._lock = threading.Lock()
        self._container: Any = None
        self._frames: Any = None
        self._next = 0
        self._kept: OrderedDict[int, Image.Image] = OrderedDict()
        self._failed: tuple[int, str | None] | None = None  # first frame that failed, error (None: ended)

    def frame(self, index: int) -> Image.Image:
        """Decoded frame `index` as an RGB image.

        Raises:
            UnreadableFile: the frame cannot be decoded (or the video ends before it).
        """
        with self._lock:
            if index in self._kept:
                return self._kept.pop(index)
            if self._failed is not None and index >= self._failed[0]:
                raise UnreadableFile(self._failure(index), hint=_BAD_VIDEO_HINT)
            if self._container is None or index < self._next:
                self._open()
            try:
                return self._decode_to(index)
            except Exception as exc:  # later frames fail the same way: remember from where
                detail = None if isinstance(exc, StopIteration) else f"{type(exc).__name__}: {exc}"
                self._failed = (self._next, detail)
                self._close()
                raise UnreadableFile(self._failure(index), hint=_BAD_VIDEO_HINT) from None

    def _failure(self, index: int) -> str:
        first, detail = self._failed  # type: ignore[misc]
        if detail is None:
            return f"video {self.path} ended after {first} frames, before frame {index}"
        return f"video {self.path} cannot be decoded from frame {first} on ({detail}), so not frame {index}"

    def _open(self) -> None:
        self._close()
        self._container = self._av.open(str(self.path))
        stream = self._container.streams.video[0]
        stream.thread_type = "AUTO"
        self._frames = self._container.decode(stream)
        self._next = 0

    def _decode_to(self, index: int) -> Image.Image:
        while True:
            frame = next(self._frames)  # StopIteration: the video ended
            number = self._next
            self._next += 1
            if number == index:
                return frame.to_image()
            if number > index - _KEEP_FRAMES * self._stride and number % self._stride == 0:
                self._kept[number] = frame.to_image()
                while len(self._kept) > _KEEP_FRAMES:
                    self._kept.popitem(last=False)

    def close(self) -> None:
        """Close the file once no thread is decoding from it (a later request reopens it)."""
        with self._lock:
            self._close()

    def _close(self) -> None:
        if self._container is not None:
            self._container.close()
        self._container, self._frames = None, None


class VideoSource:
    """Frames 0, k, 2k, ... of each video file; keys are 'clip.mp4#frame=30'."""

    def __init__(self, files: list[Path], root: Path, pipeline: ImagePipeline, stride: int,
                 skip_bad_files: bool) -> None:
        self._av = require("av")
        self.pipeline, self.stride = pipeline, stride
        self.files: list[Path] = []
        self._index: list[tuple[int, int]] = []
        self.keys: list[str] = []
        self.skipped: list[tuple[str, str]] = []
        frames = 0
        for path in files:
            try:
                count = count_frames(self._av, path)
            except UnreadableFile as exc:
                if not skip_bad_files:
                    raise
                log.warning("skipping %s", exc.message)
                self.skipped.append((file_key(path, root), exc.message))
                continue
            self.files.append(path)
            frames += count
            self._index.extend((len(self.files) - 1, n) for n in range(0, count, stride))
            self.keys.extend(f"{file_key(path, root)}#frame={n}" for n in range(0, count, stride))
        self._specs = {pipeline.target.spec.name: pipeline.target.spec}
        self._decoders: OrderedDict[int, _Decoder] = OrderedDict()
        self._lock = threading.Lock()
        where = root.name if root.is_file() else f"{root}/"
        self.description = (f"{len(self.keys)} frame(s) (stride {stride} over {frames} frames) from {len(self.files)} "
                            f"video(s) in {where} -> input '{pipeline.target.spec.name}' ({pipeline.describe()})")

    def __len__(self) -> int:
        return len(self.keys)

    def files_of(self, index: int) -> tuple[Path, ...]:
        """The file(s) sample `index` is read from (hashed by the data fingerprint)."""
        return (self.files[self._index[index][0]],)

    def _decoder(self, file_index: int) -> _Decoder:
        with self._lock:
            decoder = self._decoders.get(file_index)
            if decoder is None:
                decoder = self._decoders[file_index] = _Decoder(self._av, self.files[file_index], self.stride)
            self._decoders.move_to_end(file_index)
            evicted = [self._decoders.popitem(last=False)[1] for _ in range(len(self._decoders) - _OPEN_FILES)]
        for old in evicted:
            old.close()
        return decoder

    def load(self, index: int) -> dict[str, np.ndarray]:
        file_index, number = self._index[index]
        image = self._decoder(file_index).frame(number)
        sample = {self.pipeline.target.spec.name: self.pipeline(image)}
        check_sample(sample, self._specs, self.keys[index], self.pipeline.target.layout, SIZE_HINT)
        return sample
