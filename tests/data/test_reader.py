"""DataReader: batching, order, partial and early-ended batches, bounded prefetch, skipping."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from trtq.data import Batch, DataReader, UnreadableFile
from trtq.errors import EXIT_BAD_INPUT, EXIT_USAGE, ConfigError, DataError


class ListSource:
    """Sample i is a constant array of value i with shape shapes[i]; `bad` indices are unreadable."""

    def __init__(self, shapes, bad=()):
        self.shapes = list(shapes)
        self.bad = set(bad)
        self.keys = [f"s{i}" for i in range(len(self.shapes))]
        self.description = "test samples"
        self.loads = 0
        self._lock = threading.Lock()

    def __len__(self):
        return len(self.shapes)

    def load(self, index):
        with self._lock:
            self.loads += 1
        if index in self.bad:
            raise UnreadableFile(f"s{index} is corrupt")
        return {"x": np.full(self.shapes[index], index, dtype=np.float32)}


def values(batch: Batch) -> list[int]:
    return [int(v) for v in batch.feeds["x"].reshape(len(batch.keys), -1)[:, 0]]


def test_last_partial_batch_is_kept_and_order_is_index_order():
    reader = DataReader(ListSource([(2, 3)] * 10), None, batch_size=4, workers=3)
    batches = list(reader)
    assert len(reader) == 3 and reader.num_samples == 10
    assert [b.feeds["x"].shape for b in batches] == [(4, 2, 3), (4, 2, 3), (2, 2, 3)]
    assert [values(b) for b in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert [b.keys for b in batches][2] == ["s8", "s9"]


def test_indices_select_and_order_samples_and_iteration_repeats():
    reader = DataReader(ListSource([(3,)] * 10), [9, 2, 5], batch_size=2, workers=0)
    first = [values(b) for b in reader]
    assert first == [[9, 2], [5]]
    assert [values(b) for b in reader] == first
    assert reader.keys == ["s9", "s2", "s5"]


def test_shape_change_ends_a_batch_early():
    shapes = [(3, 8, 8), (3, 8, 8), (3, 6, 8), (3, 6, 8), (3, 6, 8), (3, 8, 8)]
    batches = list(DataReader(ListSource(shapes), None, batch_size=2))
    assert [values(b) for b in batches] == [[0, 1], [2, 3], [4], [5]]
    assert len(DataReader(ListSource(shapes), None, batch_size=2)) == 3  # the uniform-shape count


def test_prefetch_is_bounded():
    source = ListSource([(4,)] * 200)
    reader = DataReader(source, None, batch_size=4, workers=4)
    iterator = iter(reader)
    next(iterator)
    # one batch consumed; at most two batches (8 samples) plus the refill of the last taken one ahead
    assert source.loads <= 4 + 8 + 1
    iterator.close()
    assert source.loads < 20


def test_unreadable_sample_fails_or_is_skipped():
    with pytest.raises(DataError) as err:
        list(DataReader(ListSource([(2,)] * 6, bad={2}), None, batch_size=4))
    assert err.value.message == "s2 is corrupt" and err.value.exit_code == EXIT_BAD_INPUT
    reader = DataReader(ListSource([(2,)] * 6, bad={2}), None, batch_size=4, skip_bad_files=True)
    assert [values(b) for b in reader] == [[0, 1, 3, 4], [5]]
    assert reader.skipped == [("s2", "s2 is corrupt")]


def test_all_samples_unreadable_is_an_error():
    reader = DataReader(ListSource([(2,)] * 3, bad={0, 1, 2}), None, batch_size=2, skip_bad_files=True)
    with pytest.raises(DataError) as err:
        list(reader)
    assert err.value.message == "all 3 samples were unreadable (first: s0 is corrupt)"


def test_other_errors_are_never_skipped():
    class Broken(ListSource):
        def load(self, index):
            raise DataError("input 'x' expects 3, sample s0 has 4")

    with pytest.raises(DataError, match="expects 3"):
        list(DataReader(Broken([(2,)]), None, batch_size=1, skip_bad_files=True))


def test_invalid_batch_size():
    with pytest.raises(ConfigError) as err:
        DataReader(ListSource([(2,)]), None, batch_size=0)
    assert err.value.message == "--batch-size must be at least 1, got 0" and err.value.exit_code == EXIT_USAGE
