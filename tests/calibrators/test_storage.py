"""Saving, loading and merging observer sets (.npz)."""

from __future__ import annotations

import numpy as np
import pytest

from trtq.calibrators.histogram import HistogramObserver
from trtq.calibrators.observers import EmaMinMaxObserver, MinMaxObserver
from trtq.calibrators.stats import TensorStats
from trtq.calibrators.storage import load_observers, merge_observer_sets, save_observers
from trtq.errors import CacheError

NAMES = ["conv1/Conv_output_0", "a:b::c", "ünïcødé/张量", "", "trailing\x00", "x" * 300]


def _same(a, b) -> bool:
    da, db = a.to_dict(), b.to_dict()
    return da.keys() == db.keys() and all(np.array_equal(da[k], db[k]) for k in da)


def _observer_set(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    out = {}
    for i, name in enumerate(NAMES):
        obs = [TensorStats(), HistogramObserver(64), MinMaxObserver(), EmaMinMaxObserver(0.1),
               TensorStats(ema_constant=None), TensorStats()][i]
        if i != 5:  # the last one stays empty
            obs.update(rng.standard_normal((3, 50)) * (i + 1))
        out[name] = obs
    return out


def test_round_trip_keeps_names_order_types_and_meta(tmp_path):
    observers = _observer_set(0)
    meta = {"model": "sha256:abc", "ünïcødé": "värde/x:y", "empty": ""}
    path = tmp_path / "stats.data"  # no .npz suffix is added
    save_observers(path, observers, meta)
    assert [p.name for p in tmp_path.iterdir()] == ["stats.data"]
    loaded, loaded_meta = load_observers(path)
    assert list(loaded) == NAMES
    assert loaded_meta == meta
    for name in NAMES:
        assert type(loaded[name]) is type(observers[name])
        assert _same(loaded[name], observers[name])


def test_saved_file_needs_no_pickle(tmp_path):
    save_observers(tmp_path / "s.npz", _observer_set(1))
    with np.load(tmp_path / "s.npz", allow_pickle=False) as npz:
        assert str(npz["format"]) == "trtq-observers"
        assert not any(name in npz.files for name in NAMES)


def test_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path):
    path = tmp_path / "stats.npz"
    save_observers(path, {"t": MinMaxObserver()}, {"run": "first"})
    before = path.read_bytes()

    class Broken(MinMaxObserver):
        def to_dict(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        save_observers(path, {"ok": MinMaxObserver(), "bad": Broken()})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["stats.npz"]


def test_unreadable_files_raise_cache_error(tmp_path):
    with pytest.raises(CacheError, match="does not exist"):
        load_observers(tmp_path / "missing.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(CacheError, match="not a readable"):
        load_observers(tmp_path / "junk.npz")
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(CacheError, match="not a trtq-observers"):
        load_observers(tmp_path / "other.npz")


def test_inconsistent_content_names_the_tensor(tmp_path):
    path = tmp_path / "s.npz"
    save_observers(path, {"good": TensorStats(), "bad/one": HistogramObserver(8)})
    with np.load(path) as npz:
        arrays = dict(npz)
    arrays["1/count"] = np.array(5)
    np.savez(path, **arrays)
    with pytest.raises(CacheError, match="bad/one"):
        load_observers(path)


def test_merge_observer_sets_merges_common_tensors_and_keeps_the_rest():
    rng = np.random.default_rng(2)
    xa, xb, xy1, xy2 = (rng.standard_normal(200) * s for s in (1.0, 2.0, 3.0, 40.0))
    a = {"x": TensorStats(), "y": TensorStats()}
    b = {"y": TensorStats(), "z": TensorStats()}
    a["x"].update(xa)
    a["y"].update(xy1)
    b["y"].update(xy2)
    b["z"].update(xb)
    a_before = {k: v.to_dict() for k, v in a.items()}
    merged = merge_observer_sets(a, b)
    assert list(merged) == ["x", "y", "z"]
    expected_y = TensorStats()
    expected_y.update(np.concatenate([xy1, xy2]))
    np.testing.assert_array_equal(merged["y"].hist.bins, expected_y.hist.bins)
    assert _same(merged["x"], a["x"]) and _same(merged["z"], b["z"])
    assert merged["x"] is not a["x"]
    assert all(np.array_equal(a[k].to_dict()["hist.bins"], a_before[k]["hist.bins"]) for k in a)
    with pytest.raises(ValueError, match="tensor 'y'"):
        merge_observer_sets(a, {"y": TensorStats(num_bins=64)})
