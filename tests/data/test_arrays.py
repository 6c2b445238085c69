"""NumPy data: .npz per-input arrays, .npy with and without a batch axis, name/shape errors."""

from __future__ import annotations

import numpy as np
import pytest

from tests.data.helpers import data, pre, spec, two_input_model
from trtq.data import DataReader, open_source
from trtq.data.npyfile import npz_members, open_member
from trtq.errors import EXIT_BAD_INPUT, DataError

SINGLE = [spec(("N", 3, 8, 8))]


def rng():
    return np.random.default_rng(7)


def open_(path, inputs, **changes):
    return open_source(str(path), inputs, data(**changes), pre())


def test_npz_multi_input_with_and_without_batch_axis(tmp_path):
    inputs = two_input_model(tmp_path)
    assert [s.name for s in inputs] == ["image", "scale"]
    r = rng()
    folder = tmp_path / "npz"
    folder.mkdir()
    one = {"image": r.standard_normal((3, 8, 8)).astype(np.float32), "scale": r.standard_normal(4).astype(np.float32)}
    many = {"image": r.standard_normal((5, 3, 8, 8)).astype(np.float32),
            "scale": r.standard_normal((5, 4)).astype(np.float32)}
    np.savez(folder / "a.npz", **one)
    np.savez_compressed(folder / "b.npz", **many)
    source = open_(folder, inputs)
    assert source.keys == ["a.npz", *[f"b.npz:{i}" for i in range(5)]]
    np.testing.assert_array_equal(source.load(0)["image"], one["image"])
    np.testing.assert_array_equal(source.load(0)["scale"], one["scale"])
    for i in range(5):
        sample = source.load(1 + i)
        np.testing.assert_array_equal(sample["image"], many["image"][i])
        np.testing.assert_array_equal(sample["scale"], many["scale"][i])
    batches = list(DataReader(source, None, batch_size=4))
    assert [b.feeds["image"].shape for b in batches] == [(4, 3, 8, 8), (2, 3, 8, 8)]
    assert [b.feeds["scale"].shape for b in batches] == [(4, 4), (2, 4)]


def test_npz_key_matching_no_input_names_both(tmp_path):
    inputs = two_input_model(tmp_path)
    np.savez(tmp_path / "bad.npz", image=np.zeros((3, 8, 8), np.float32), scal=np.zeros(4, np.float32))
    with pytest.raises(DataError) as err:
        open_(tmp_path / "bad.npz", inputs)
    assert err.value.message == f"{tmp_path / 'bad.npz'} has an array 'scal' that matches no model input " \
                                "(inputs: image, scale)"
    assert err.value.exit_code == EXIT_BAD_INPUT


def test_npz_missing_input_names_both(tmp_path):
    inputs = two_input_model(tmp_path)
    np.savez(tmp_path / "bad.npz", image=np.zeros((3, 8, 8), np.float32))
    with pytest.raises(DataError) as err:
        open_(tmp_path / "bad.npz", inputs)
    assert err.value.message == f"{tmp_path / 'bad.npz'} has no array for input 'scale' (it has image)"


def test_npy_for_multi_input_model_is_an_error(tmp_path):
    inputs = two_input_model(tmp_path)
    np.save(tmp_path / "x.npy", np.zeros((3, 8, 8), np.float32))
    with pytest.raises(DataError) as err:
        open_(tmp_path / "x.npy", inputs)
    assert "is a .npy file but the model has 2 inputs (image, scale)" in err.value.message
    assert "np.savez" in err.value.hint


def test_npy_with_and_without_batch_axis(tmp_path):
    r = rng()
    one = r.standard_normal((3, 8, 8))  # float64: cast to the input's float32
    many = r.standard_normal((6, 3, 8, 8)).astype(np.float32)
    np.save(tmp_path / "one.npy", one)
    np.save(tmp_path / "many.npy", many)
    source = open_(tmp_path, SINGLE)
    assert source.keys == [*[f"many.npy:{i}" for i in range(6)], "one.npy"]
    for i in range(6):
        np.testing.assert_array_equal(source.load(i)["x"], many[i])
    last = source.load(6)["x"]
    assert last.dtype == np.float32
    np.testing.assert_array_equal(last, one.astype(np.float32))
    assert [len(b.keys) for b in DataReader(source, None, batch_size=4)] == [4, 3]


@pytest.mark.parametrize(("shape", "got"), [((3, 7, 8), "3x7x8"), ((2, 1, 8, 8), "1x8x8"), ((8, 8), "8x8")])
def test_wrong_shape_names_input_expected_and_got(tmp_path, shape, got):
    np.save(tmp_path / "bad.npy", np.zeros(shape, np.float32))
    with pytest.raises(DataError) as err:
        open_(tmp_path / "bad.npy", SINGLE)
    key = "bad.npy:0" if len(shape) == 4 else "bad.npy"
    assert err.value.message == f"input 'x' expects Nx3x8x8 (float32), sample {key} has {got}"


def test_float_data_for_integer_input_is_an_error(tmp_path):
    np.save(tmp_path / "ids.npy", np.zeros((2, 5), np.float32))
    with pytest.raises(DataError) as err:
        open_(tmp_path / "ids.npy", [spec(("N", 5), "ids", "int64")])
    assert "array for input 'ids' is float32, the input takes int64" in err.value.message


def test_corrupt_npy_names_file_or_is_skipped(tmp_path):
    np.save(tmp_path / "a.npy", np.ones((3, 8, 8), np.float32))
    (tmp_path / "b.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(DataError) as err:
        open_(tmp_path, SINGLE)
    assert f"{tmp_path / 'b.npy'} is not a readable NumPy file" in err.value.message
    source = open_(tmp_path, SINGLE, skip_bad_files=True)
    assert source.keys == ["a.npy"] and [k for k, _ in source.skipped] == ["b.npy"]


def test_stored_npz_members_are_memory_mapped(tmp_path):
    array = rng().standard_normal((4, 3, 8, 8)).astype(np.float32)
    np.savez(tmp_path / "s.npz", x=array)
    member = npz_members(tmp_path / "s.npz")["x"]
    mapped = open_member(member)
    assert isinstance(mapped, np.memmap)
    np.testing.assert_array_equal(mapped, array)
    np.savez_compressed(tmp_path / "c.npz", x=array)
    compressed = npz_members(tmp_path / "c.npz")["x"]
    assert compressed.offset is None
    np.testing.assert_array_equal(open_member(compressed), array)
