"""ONNX Runtime TensorRT EP tables: our flatbuffers against ORT's own reader and writer."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from trtq.cache.ort_format import format_ort_table, parse_ort_table, parse_ort_text
from trtq.cache.table import CalibrationTable
from trtq.errors import CacheError


def _table() -> CalibrationTable:
    rng = np.random.default_rng(5)
    names = ["input", "conv: out", "(Unnamed Layer* 1) [Relu]_output", "ünï"]
    return CalibrationTable({n: float(v) for n, v in zip(names, 10.0 ** rng.uniform(-3, 3, len(names)), strict=True)})


def test_round_trip_is_exact_and_keeps_order():
    table = _table()
    back = parse_ort_table(format_ort_table(table))
    assert back.amax == table.amax and back.names() == table.names()
    assert back.algorithm == "unknown" and back.provenance is None


def test_identical_tables_give_identical_bytes():
    assert format_ort_table(_table()) == format_ort_table(_table())


def test_empty_table_round_trips():
    assert parse_ort_table(format_ort_table(CalibrationTable({}))).amax == {}


def test_ort_generated_reader_reads_our_bytes():
    trt_table = pytest.importorskip("onnxruntime.quantization.CalTableFlatBuffers.TrtTable")
    table = _table()
    root = trt_table.TrtTable.GetRootAs(format_ort_table(table), 0)
    pairs = [(root.Dict(i).Key().decode(), root.Dict(i).Value().decode()) for i in range(root.DictLength())]
    assert [k for k, _ in pairs] == table.names()
    # The TensorRT EP parses the value as a decimal number: amax itself, not the scale.
    assert {k: float(v) for k, v in pairs} == table.amax


def test_reads_tables_written_by_onnxruntime(tmp_path):
    quant_utils = pytest.importorskip("onnxruntime.quantization.quant_utils")
    calibrate = pytest.importorskip("onnxruntime.quantization.calibrate")
    ranges = {"b": (-3.0, 2.0), "a": (-0.5, 1.25), "c d": (0.0, 6.0)}
    cache = {name: calibrate.TensorData(lowest=np.float32(lo), highest=np.float32(hi))
             for name, (lo, hi) in ranges.items()}
    quant_utils.write_calibration_table(cache, dir=str(tmp_path))
    # ORT writes value = max(highest, lowest) (docs/tensorrt.md §2), not max |x|.
    expected = {name: max(lo, hi) for name, (lo, hi) in ranges.items()}
    flat = parse_ort_table((tmp_path / "calibration.flatbuffers").read_bytes())
    assert flat.amax == expected
    text = parse_ort_text((tmp_path / "calibration.cache").read_bytes())
    assert text.amax == expected and text.names() == ["a", "b", "c d"]


@pytest.mark.parametrize("data", [
    b"",
    b"\x00\x01",
    b"\xff\xff\xff\x7f" + b"\x00" * 12,    # root offset past the end
    b"conv1 1.5\nconv2 2.0\n",             # ORT's text table is not a flatbuffer
])
def test_garbage_is_a_cache_error(data):
    with pytest.raises(CacheError, match=r"flatbuffers|too short"):
        parse_ort_table(data)


def test_truncated_table_is_a_cache_error_or_intact():
    table = _table()
    data = format_ort_table(table)
    for cut in range(len(data)):
        try:
            back = parse_ort_table(data[:cut])
        except CacheError:
            continue
        # Only trailing alignment padding may be cut without losing anything.
        assert back.amax == table.amax and cut >= len(data) - 2
    with pytest.raises(CacheError):
        parse_ort_table(data[:len(data) - 3])  # cuts the last string's NUL terminator


def _flatbuffer(pairs: list[tuple[str, str]]) -> bytes:
    flatbuffers = pytest.importorskip("flatbuffers")
    builder = flatbuffers.Builder(64)
    entries = []
    for key, value in pairs:
        k, v = builder.CreateString(key), builder.CreateString(value)
        builder.StartObject(2)
        builder.PrependUOffsetTRelativeSlot(0, k, 0)
        builder.PrependUOffsetTRelativeSlot(1, v, 0)
        entries.append(builder.EndObject())
    builder.StartVector(4, len(entries), 4)
    for e in reversed(entries):
        builder.PrependUOffsetTRelative(e)
    vec = builder.EndVector()
    builder.StartObject(1)
    builder.PrependUOffsetTRelativeSlot(0, vec, 0)
    builder.Finish(builder.EndObject())
    return bytes(builder.Output())


def test_bad_values_and_duplicates_are_errors():
    with pytest.raises(CacheError, match="'x' is 'wide', not a decimal amax"):
        parse_ort_table(_flatbuffer([("x", "wide")]))
    with pytest.raises(CacheError, match="'x' appears twice"):
        parse_ort_table(_flatbuffer([("x", "1.0"), ("x", "2.0")]))
    assert parse_ort_table(_flatbuffer([("x", "2.5e-3")])).amax == {"x": 0.0025}


def test_root_offset_is_little_endian_uoffset():
    data = format_ort_table(CalibrationTable({"x": 1.0}))
    (root,) = struct.unpack_from("<I", data, 0)
    assert 4 <= root < len(data)


def test_ort_text_lines():
    table = parse_ort_text("conv out 1.5\r\nrelu 2\n\n")
    assert table.amax == {"conv out": 1.5, "relu": 2.0}
    with pytest.raises(CacheError, match="line 2"):
        parse_ort_text("a 1.0\nb\n")
    with pytest.raises(CacheError, match=r"line 2.*twice"):
        parse_ort_text("a 1.0\na 2.0\n")
