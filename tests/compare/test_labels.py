"""Labels files and folder-per-class layouts -> sample key -> class index."""

from __future__ import annotations

import json

import pytest

from trtq.accuracy.labels import labels_from_class_folders, load_labels
from trtq.errors import DataError


def test_text_labels_accept_tabs_commas_spaces_and_keys_with_spaces(tmp_path):
    path = tmp_path / "labels.txt"
    path.write_text("# key index\ncat/1.jpg\t3\ndog/2.jpg,7\n\nmy photo.png 0\n")
    assert load_labels(path) == {"cat/1.jpg": 3, "dog/2.jpg": 7, "my photo.png": 0}


def test_json_labels(tmp_path):
    path = tmp_path / "labels.json"
    path.write_text(json.dumps({"a.npz:0": 1, "a.npz:1": 0}))
    assert load_labels(path) == {"a.npz:0": 1, "a.npz:1": 0}


@pytest.mark.parametrize(("name", "text", "message"), [
    ("bad.txt", "a.jpg 1\nb.jpg\n", "line 2 of .* has no class index"),
    ("neg.txt", "a.jpg -1\n", "class index '-1' is not a non-negative integer"),
    ("bad.json", "[1, 2]", "must hold a JSON object"),
    ("broken.json", "{", "not valid JSON"),
    ("float.json", '{"a": 1.5}', "class index 1.5 is not"),
])
def test_bad_labels_files_are_data_errors(tmp_path, name, text, message):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(DataError, match=message):
        load_labels(path)


def test_missing_labels_file(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_labels(tmp_path / "nope.txt")


def test_class_folders_are_numbered_in_sorted_order(tmp_path):
    for rel in ("zebra/1.jpg", "ant/b/2.jpg", "ant/1.jpg", "mole/x.png", ".hidden/y.png"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    assert labels_from_class_folders(tmp_path) == {"ant/1.jpg": 0, "ant/b/2.jpg": 0, "mole/x.png": 1, "zebra/1.jpg": 2}


def test_class_folders_need_subfolders(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"")
    with pytest.raises(DataError, match="no class subfolders"):
        labels_from_class_folders(tmp_path)
