"""Video files: every k-th frame, counted by demuxing, preprocessed like images."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from tests.data.helpers import config, data, photo, pre, spec
from trtq.data import DataReader, make_readers, open_source
from trtq.data import video as video_module
from trtq.errors import EXIT_BAD_INPUT, EXIT_MISSING_DEPENDENCY, DataError, MissingDependencyError

av = pytest.importorskip("av")

FRAMES, W, H = 30, 128, 96
INPUT = [spec(("N", 3, H, W))]


def source_frames() -> list[np.ndarray]:
    """Frame i is a 128x96 crop of a real photo, shifted right by 8 px per frame."""
    pixels = np.asarray(photo("chelsea.png"))
    return [np.ascontiguousarray(pixels[40:40 + H, 8 * i:8 * i + W]) for i in range(FRAMES)]


def write_video(path, frames) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=30)
        stream.width, stream.height, stream.pix_fmt, stream.bit_rate = W, H, "yuv420p", 4_000_000
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    write_video(path, source_frames())
    return path


def nearest_frame(sample: np.ndarray, frames: list[np.ndarray]) -> int:
    pixels = sample.transpose(1, 2, 0) * 255.0
    errors = [np.abs(pixels - f).mean() for f in frames]
    assert min(errors) < 6.0  # lossy codec, but close to one source frame
    return int(np.argmin(errors))


@pytest.mark.parametrize(("stride", "expected"), [(10, [0, 10, 20]), (7, [0, 7, 14, 21, 28]), (1, list(range(30)))])
def test_stride_and_frame_count(clip, stride, expected):
    source = open_source(str(clip), INPUT, data(video_stride=stride), pre(resize="exact"))
    assert len(source) == len(expected)
    assert source.keys == [f"clip.mp4#frame={n}" for n in expected]
    assert f"{len(expected)} frame(s) (stride {stride} over 30 frames) from 1 video(s)" in source.description


def test_frames_are_the_right_ones_in_any_order(clip):
    frames = source_frames()
    source = open_source(str(clip), INPUT, data(video_stride=10), pre(resize="exact"))
    forward = [source.load(i)["x"] for i in range(3)]
    assert [nearest_frame(s, frames) for s in forward] == [0, 10, 20]
    backward = [source.load(i)["x"] for i in (2, 0, 1)]  # going back reopens the file
    for got, want in zip(backward, (forward[2], forward[0], forward[1]), strict=True):
        np.testing.assert_array_equal(got, want)
    batches = list(DataReader(source, None, batch_size=2, workers=3))
    assert [b.keys for b in batches] == [["clip.mp4#frame=0", "clip.mp4#frame=10"], ["clip.mp4#frame=20"]]
    np.testing.assert_array_equal(batches[1].feeds["x"][0], forward[2])


def test_mkv_without_stored_frame_count(tmp_path):
    path = tmp_path / "clip.mkv"
    write_video(path, source_frames()[:12])
    with av.open(str(path)) as container:
        assert container.streams.video[0].frames == 0  # Matroska stores no frame count
    source = open_source(str(path), INPUT, data(video_stride=5), pre(resize="exact"))
    assert source.keys == ["clip.mkv#frame=0", "clip.mkv#frame=5", "clip.mkv#frame=10"]
    assert nearest_frame(source.load(2)["x"], source_frames()) == 10


def test_folder_of_images_and_videos(tmp_path, clip):
    (tmp_path / "clip.mp4").write_bytes(clip.read_bytes())
    photo("coffee.png").save(tmp_path / "a.png")
    source = open_source(str(tmp_path), INPUT, data(video_stride=15), pre(resize="exact"))
    assert source.keys == ["a.png", "clip.mp4#frame=0", "clip.mp4#frame=15"]
    assert source.load(2)["x"].shape == (3, H, W)


def test_corrupt_video_names_file_or_is_skipped(tmp_path, clip):
    (tmp_path / "good.mp4").write_bytes(clip.read_bytes())
    (tmp_path / "bad.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"junk" * 100)
    with pytest.raises(DataError) as err:
        open_source(str(tmp_path), INPUT, data(), pre(resize="exact"))
    assert f"video {tmp_path / 'bad.mp4'} cannot be read" in err.value.message
    assert err.value.exit_code == EXIT_BAD_INPUT
    changes = {"calib": str(tmp_path), "skip_bad_files": True, "video_stride": 10}
    plan = make_readers(config(changes, {"resize": "exact"}), INPUT)
    assert plan.calib.keys == ["good.mp4#frame=0", "good.mp4#frame=10", "good.mp4#frame=20"]
    assert any(w.startswith("skipped unreadable file bad.mp4") for w in plan.warnings)


def test_truncated_video_counts_only_present_frames(tmp_path):
    path = tmp_path / "cut.mkv"
    write_video(path, source_frames())
    content = path.read_bytes()
    path.write_bytes(content[: len(content) * 2 // 3])
    source = open_source(str(path), INPUT, data(video_stride=1), pre(resize="exact"))
    assert 0 < len(source) < FRAMES  # only the packets still in the file are counted
    assert sum(len(b.keys) for b in DataReader(source, None, batch_size=8)) == len(source)


def test_frames_the_decoder_does_not_return_are_unreadable(clip, monkeypatch):
    real_count = video_module.count_frames
    monkeypatch.setattr(video_module, "count_frames", lambda av_, path: real_count(av_, path) + 10)
    source = open_source(str(clip), INPUT, data(video_stride=5), pre(resize="exact"))
    assert len(source) == 8  # frames 0..35, but the stream ends after frame 29
    with pytest.raises(DataError) as err:
        list(DataReader(source, None, batch_size=4))
    assert f"video {clip} ended after 30 frames, before frame 30" in err.value.message
    reader = DataReader(source, None, batch_size=4, skip_bad_files=True)
    assert sum(len(b.keys) for b in reader) == 6
    assert [key for key, _ in reader.skipped] == ["clip.mp4#frame=30", "clip.mp4#frame=35"]


def test_missing_pyav_says_how_to_install(clip, monkeypatch):
    monkeypatch.setitem(sys.modules, "av", None)  # import av now raises ImportError
    with pytest.raises(MissingDependencyError) as err:
        open_source(str(clip), INPUT, data(), pre(resize="exact"))
    assert "pip install 'trtq[video]'" in err.value.hint and err.value.exit_code == EXIT_MISSING_DEPENDENCY
