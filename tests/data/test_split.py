"""Eval split: deterministic, exact count, stable when files are added."""

from __future__ import annotations

import pytest

from trtq.data import split_indices
from trtq.errors import ConfigError

KEYS = [f"img_{i:03d}.jpg" for i in range(100)]


def held_keys(keys, fraction, seed=0):
    return {keys[i] for i in split_indices(keys, fraction, seed)[1]}


def test_same_keys_same_split_and_exact_count():
    calib, held = split_indices(KEYS, 0.2, seed=0)
    assert (calib, held) == split_indices(list(KEYS), 0.2, seed=0)
    assert len(held) == 20 and len(calib) == 80
    assert sorted(calib + held) == list(range(100)) and calib == sorted(calib) and held == sorted(held)
    assert held_keys(KEYS, 0.2, seed=1) != held_keys(KEYS, 0.2, seed=0)


@pytest.mark.parametrize(("n", "fraction", "count"), [(10, 0.25, 3), (10, 0.15, 2), (3, 0.1, 0), (7, 0.0, 0)])
def test_count_is_rounded_half_up(n, fraction, count):
    assert len(split_indices(KEYS[:n], fraction, 0)[1]) == count


def test_split_does_not_depend_on_key_order():
    shuffled = KEYS[::-1]
    assert held_keys(shuffled, 0.3) == held_keys(KEYS, 0.3)


def test_adding_files_moves_at_most_the_change_in_count():
    before = held_keys(KEYS, 0.2)  # 20 of 100
    grown = [*KEYS, *[f"new_{i}.jpg" for i in range(5)]]
    after = held_keys(grown, 0.2)  # 21 of 105
    old_after = after & set(KEYS)
    # old files leave the held-out set only where a new file takes their place
    assert len(before - old_after) <= len(after - set(KEYS))
    assert len(old_after - before) <= 1  # and at most one old file joins (the count grew by one)


def test_adding_one_file_keeps_every_other_assignment_or_swaps_one():
    before = held_keys(KEYS, 0.2)  # 20 of 100; 101 files still hold out round(20.2) = 20
    unchanged = 0
    for i in range(20):
        extra = f"extra_{i}.jpg"
        after = held_keys([*KEYS, extra], 0.2)
        if extra in after:
            assert len(before - after) == 1 and after - before == {extra}
        else:
            assert after == before
            unchanged += 1
    assert 0 < unchanged < 20  # both cases occurred


def test_fraction_out_of_range():
    with pytest.raises(ConfigError) as err:
        split_indices(KEYS, 1.0, 0)
    assert err.value.message == "--eval-fraction must be in [0, 1), got 1.0"
