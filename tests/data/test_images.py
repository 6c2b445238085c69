"""Image folders: listing, corrupt files, fixed sizes with resize 'none', mixed sizes."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from tests import assets
from tests.data.helpers import data, photo, pre, spec
from trtq.data import DataReader, open_source
from trtq.errors import EXIT_BAD_INPUT, DataError

FIXED = [spec((1, 3, 64, 64))]
DYNAMIC = [spec(("N", 3, "h", "w"))]


def test_folder_is_listed_recursively_sorted_and_skips_hidden_and_other_files(photo_dir):
    (photo_dir / "sub").mkdir()
    shutil.copy(photo_dir / "coffee.png", photo_dir / "sub" / "z.PNG")
    shutil.copy(photo_dir / "coffee.png", photo_dir / "._coffee.png")  # macOS metadata, not an image
    (photo_dir / "notes.txt").write_text("not data")
    source = open_source(str(photo_dir), FIXED, data(), pre(resize="exact"))
    expected = sorted([*assets.COLOR_PHOTOS, "sub/z.PNG"])
    assert source.keys == expected
    assert len(source) == len(expected)
    assert "15 image(s)" in source.description


def test_reads_every_photo(photo_dir):
    source = open_source(str(photo_dir), FIXED, data(), pre())
    batches = list(DataReader(source, None, batch_size=4, workers=2))
    assert [len(b.keys) for b in batches] == [4, 4, 4, 2]
    assert [k for b in batches for k in b.keys] == source.keys
    for batch in batches:
        assert batch.feeds["x"].shape == (len(batch.keys), 3, 64, 64)
        assert batch.feeds["x"].dtype == np.float32
        assert batch.feeds["x"].min() >= 0.0 and batch.feeds["x"].max() <= 1.0


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_corrupt_image_names_the_file(photo_dir, damage):
    good = (photo_dir / "china.jpg").read_bytes()
    content = {"truncated": good[: len(good) // 3], "garbage": b"\x89PNG not really" * 50, "empty": b""}[damage]
    bad = photo_dir / "bad.jpg"
    bad.write_bytes(content)
    source = open_source(str(photo_dir), FIXED, data(), pre(resize="exact"))
    with pytest.raises(DataError) as err:
        list(DataReader(source, None, batch_size=4))
    assert f"image {bad} cannot be read" in err.value.message
    assert "--skip-bad-files" in err.value.hint and err.value.exit_code == EXIT_BAD_INPUT


def test_skip_bad_files_skips_and_counts(photo_dir):
    (photo_dir / "bad.jpg").write_bytes((photo_dir / "china.jpg").read_bytes()[:2000])
    source = open_source(str(photo_dir), FIXED, data(), pre(resize="exact"))
    reader = DataReader(source, None, batch_size=4, skip_bad_files=True)
    keys = [k for b in reader for k in b.keys]
    assert len(reader.skipped) == 1 and reader.skipped[0][0] == "bad.jpg"
    assert "bad.jpg cannot be read" in reader.skipped[0][1]
    assert keys == [k for k in source.keys if k != "bad.jpg"] and len(keys) == len(assets.COLOR_PHOTOS)
    assert [k for b in reader for k in b.keys] == keys and len(reader.skipped) == 1  # again, same result


def test_resize_none_with_fixed_model_size_names_sample(tmp_path):
    photo("chelsea.png").save(tmp_path / "chelsea.png")
    source = open_source(str(tmp_path), [spec((1, 3, 224, 224))], data(), pre(resize="none"))
    with pytest.raises(DataError) as err:
        source.load(0)
    assert err.value.message == "input 'x' expects 1x3x224x224 (NCHW float32), sample chelsea.png has 3x300x451"
    assert "--resize" in err.value.hint and err.value.exit_code == EXIT_BAD_INPUT


def test_mixed_sizes_split_batches_for_dynamic_model(tmp_path):
    names = {"a.png": "astronaut.png", "b.png": "ihc.png", "c.png": "chelsea.png", "d.png": "astronaut.png",
             "e.png": "chelsea.png"}
    for target, name in names.items():
        photo(name).save(tmp_path / target)
    source = open_source(str(tmp_path), DYNAMIC, data(), pre(resize="none"))
    batches = list(DataReader(source, None, batch_size=4))
    assert [b.keys for b in batches] == [["a.png", "b.png"], ["c.png"], ["d.png"], ["e.png"]]
    assert [b.feeds["x"].shape for b in batches] == [(2, 3, 512, 512), (1, 3, 300, 451), (1, 3, 512, 512),
                                                     (1, 3, 300, 451)]
