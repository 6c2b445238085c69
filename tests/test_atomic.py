"""Atomic writes leave either the complete new file or the old state, never a partial file."""

from __future__ import annotations

import pytest

from trtq.atomic import atomic_open, write_text


def test_write_replaces_content(tmp_path):
    target = tmp_path / "out" / "a.txt"
    write_text(target, "one")
    write_text(target, "two")
    assert target.read_text() == "two"
    assert [p.name for p in target.parent.iterdir()] == ["a.txt"]


def test_failure_keeps_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "a.txt"
    write_text(target, "old")
    with pytest.raises(RuntimeError), atomic_open(target) as f:
        f.write("half")
        raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_interrupt_leaves_nothing(tmp_path):
    target = tmp_path / "b.bin"
    with pytest.raises(KeyboardInterrupt), atomic_open(target, "wb") as f:
        f.write(b"partial")
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []
