"""Format detection, reading and writing files: atomic, deterministic, clear errors."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from trtq.cache.files import detect_format, format_for_path, parse_table, read_table, serialize_table, write_table
from trtq.cache.table import CalibrationTable
from trtq.errors import CacheError, ConfigError, OutputError

FIXTURE = Path(__file__).parent / "fixtures" / "entropy_8601.cache"


def _table() -> CalibrationTable:
    rng = np.random.default_rng(9)
    return CalibrationTable({f"layer{i}: out": float(v) for i, v in enumerate(rng.uniform(0.1, 50, 30))},
                            algorithm="entropy")


# Explicit ids: a parameter id "trt" would mark the test as needing TensorRT (see conftest).
@pytest.mark.parametrize(("name", "fmt"), [("t.cache", "trt"), ("t.json", "json"), ("t.flatbuffers", "ort")],
                         ids=["cache", "json", "flatbuffers"])
def test_write_by_extension_then_detect_and_read(tmp_path, name, fmt):
    table = _table()
    path = tmp_path / name
    write_table(table, path, trt_version="10.16.1")
    assert detect_format(path) == fmt
    back = read_table(path)
    assert back.names() == table.names()
    if fmt == "trt":
        assert back.amax == {n: float(np.float32(a / 127)) * 127 for n, a in table.amax.items()}
    else:
        assert back.amax == table.amax
    if fmt == "json":
        assert back.trt_version == "10.16.1"


@pytest.mark.parametrize("fmt", ["trt", "json", "ort"], ids=["tensorrt-text", "json", "flatbuffers"])
def test_repeated_writes_are_byte_identical(tmp_path, fmt):
    write_table(_table(), tmp_path / "a", fmt, "8.6.1")
    write_table(_table(), tmp_path / "b", fmt, "8.6.1")
    assert (tmp_path / "a").read_bytes() == (tmp_path / "b").read_bytes()
    assert (tmp_path / "a").read_bytes() == serialize_table(_table(), fmt, "8.6.1")


def test_detection_by_content_not_name(tmp_path):
    path = tmp_path / "looks_like.json"
    path.write_bytes(FIXTURE.read_bytes())
    assert detect_format(path) == "trt"
    assert read_table(path).amax["input_1:0"] == 127.0
    bom = tmp_path / "bom.cache"
    bom.write_bytes(b"\xef\xbb\xbf" + FIXTURE.read_bytes())
    assert read_table(bom).names() == read_table(FIXTURE).names()


def test_explicit_format_overrides_detection():
    data = FIXTURE.read_bytes()
    with pytest.raises(CacheError, match="not valid JSON"):
        parse_table(data, "json", "f.cache")
    table, fmt = parse_table(b"x 1.5\ny 2\n", "ort-text")
    assert fmt == "ort-text" and table.amax == {"x": 1.5, "y": 2.0}
    with pytest.raises(ConfigError, match="'yaml'"):
        parse_table(data, "yaml")


def test_ort_text_is_never_guessed(tmp_path):
    path = tmp_path / "calibration.cache"
    path.write_text("conv1 1.5\nconv2 2.0\n")
    with pytest.raises(CacheError) as info:
        read_table(path)
    assert "no TensorRT cache header" in info.value.message and "'conv1 1.5'" in info.value.message
    assert "TRT-8601-EntropyCalibration2" in info.value.one_line() and "ort-text" in info.value.one_line()
    assert read_table(path, "ort-text").amax == {"conv1": 1.5, "conv2": 2.0}


def test_unreadable_inputs_are_one_clear_error(tmp_path):
    with pytest.raises(CacheError, match="does not exist"):
        read_table(tmp_path / "missing.cache")
    with pytest.raises(CacheError, match="is a directory"):
        read_table(tmp_path)
    empty = tmp_path / "empty.cache"
    empty.write_bytes(b"")
    with pytest.raises(CacheError, match="is empty"):
        read_table(empty)
    binary = tmp_path / "junk.bin"
    binary.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(CacheError, match="not a calibration cache trtq can read"):
        read_table(binary)
    broken = tmp_path / "broken.json"
    broken.write_text('{"schema": 1, "tensors": ')
    with pytest.raises(CacheError, match=r"broken\.json is not valid JSON"):
        read_table(broken)


def test_output_format_from_extension():
    assert format_for_path("a/b.CACHE") == "trt"
    assert format_for_path("x.json") == "json"
    assert format_for_path("calibration.flatbuffers") == "ort"
    with pytest.raises(ConfigError, match=r"'out\.txt'"):
        format_for_path("out.txt")
    with pytest.raises(ConfigError, match="cannot write cache format 'ort-text'"):
        serialize_table(_table(), "ort-text")
    with pytest.raises(ConfigError, match=r"TensorRT version 'x\.y'"):
        serialize_table(_table(), "trt", "x.y")


def _fail_fsync(monkeypatch):
    def boom(fd):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "fsync", boom)


@pytest.mark.parametrize("name", ["t.cache", "t.json", "t.flatbuffers"])
def test_failed_write_leaves_no_file_and_no_temp_file(tmp_path, monkeypatch, name):
    _fail_fsync(monkeypatch)  # fails after the content went to the temp file, before the rename
    with pytest.raises(OutputError, match="No space"):
        write_table(_table(), tmp_path / name, trt_version="8.6.1")
    assert list(tmp_path.iterdir()) == []


def test_failed_write_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "t.cache"
    path.write_bytes(FIXTURE.read_bytes())
    _fail_fsync(monkeypatch)
    with pytest.raises(OutputError):
        write_table(_table(), path, trt_version="8.6.1")
    assert path.read_bytes() == FIXTURE.read_bytes()
    assert [p.name for p in tmp_path.iterdir()] == ["t.cache"]
