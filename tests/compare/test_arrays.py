"""NumPy evaluation data for `trtq compare --data`: files regrouped into batches, lazily."""

from __future__ import annotations

import numpy as np
import pytest

from trtq.compare.arrays import open_arrays
from trtq.errors import DataError
from trtq.model import TensorSpec

X = TensorSpec("x", ("N", 3), np.dtype("float32"))
Y = TensorSpec("y", ("N", 2), np.dtype("float32"))


def _samples(start: int, count: int, width: int = 3) -> np.ndarray:
    return np.arange(start * width, (start + count) * width, dtype=np.float32).reshape(count, width)


def test_folder_of_npz_and_npy_is_rebatched_in_sorted_order(tmp_path):
    np.savez(tmp_path / "a.npz", x=_samples(0, 3))
    (tmp_path / "b").mkdir()
    np.save(tmp_path / "b" / "x.npy", _samples(3, 4))
    np.savez(tmp_path / "c.npz", x=_samples(7, 1))
    data = open_arrays(tmp_path, [X], batch_size=3)
    batches = list(data)
    assert len(data) == 3 == len(batches)
    assert [b["x"].shape[0] for b in batches] == [3, 3, 2]
    np.testing.assert_array_equal(np.concatenate([b["x"] for b in batches]), _samples(0, 8))
    assert data.keys() == ["a.npz:0", "a.npz:1", "a.npz:2", "b/x.npy:0", "b/x.npy:1", "b/x.npy:2", "b/x.npy:3",
                           "c.npz:0"]
    assert next(iter(data))["x"].shape == (3, 3)  # iterable more than once


def test_keys_follow_the_batch_order(tmp_path):
    np.savez(tmp_path / "a.npz", x=_samples(0, 2))
    np.savez(tmp_path / "b.npz", x=_samples(2, 2))
    data = open_arrays(tmp_path, [X], batch_size=3)
    assert data.keys() == ["a.npz:0", "a.npz:1", "b.npz:0", "b.npz:1"]


def test_single_npz_with_two_inputs(tmp_path):
    path = tmp_path / "eval.npz"
    np.savez(path, x=_samples(0, 5), y=_samples(0, 5, 2), extra=np.zeros(1))
    batches = list(open_arrays(path, [X, Y], batch_size=2))
    assert [sorted(b) for b in batches] == [["x", "y"]] * 3
    np.testing.assert_array_equal(batches[2]["y"], _samples(4, 1, 2))
    assert open_arrays(path, [X, Y], 2).keys()[0] == "eval.npz:0"


@pytest.mark.parametrize(("setup", "message"), [
    (lambda p: np.savez(p / "a.npz", image=np.zeros((2, 3))), "has no array named 'x'"),
    (lambda p: (p / "a.npy").write_bytes(b"junk"), "not a readable NumPy file"),
    (lambda p: np.savez(p / "a.npz", x=np.zeros((2, 3)), y=np.zeros((3, 2))), "do not share a sample count"),
    (lambda p: (p / "notes.txt").write_text("hi"), "holds no .npz or .npy file"),
])
def test_bad_data_is_a_data_error(tmp_path, setup, message):
    setup(tmp_path)
    with pytest.raises(DataError, match=message):
        open_arrays(tmp_path, [X, Y] if "share" in message else [X], batch_size=2)


def test_npy_needs_a_single_input_model(tmp_path):
    np.save(tmp_path / "a.npy", _samples(0, 2))
    with pytest.raises(DataError, match="the model has 2 inputs"):
        open_arrays(tmp_path / "a.npy", [X, Y], batch_size=2)


def test_missing_path(tmp_path):
    with pytest.raises(DataError, match=r"is not a \.npz/\.npy file or a folder"):
        open_arrays(tmp_path / "nope", [X], batch_size=2)
