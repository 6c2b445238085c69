"""TensorRT cache text format: the hand-written fixture, tolerant reading, exact writing, headers."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from trtq.cache import trt_format
from trtq.cache.table import CalibrationTable
from trtq.cache.trt_format import (
    DEFAULT_TRT_VERSION,
    decode_trt_version,
    encode_trt_version,
    format_trt_cache,
    parse_trt_cache,
    trt_version_header,
)
from trtq.errors import CacheError, ConfigError

FIXTURES = Path(__file__).parent / "fixtures"


def _float32_bits(bits: int) -> float:
    """Value of a normal float32 from its bit pattern, computed from the IEEE-754 fields."""
    exponent, mantissa = (bits >> 23) & 0xFF, bits & 0x7FFFFF
    return (1 + mantissa / 2**23) * 2.0 ** (exponent - 127)


def test_reads_hand_written_fixture():
    table = parse_trt_cache((FIXTURES / "entropy_8601.cache").read_bytes())
    assert table.trt_version == "8.6.1"
    assert table.trt_algorithm == "EntropyCalibration2"
    assert table.algorithm == "entropy"
    assert table.names() == ["input", "input_1:0", "(Unnamed Layer* 2) [Convolution]_output", "weird: name",
                             "conv/BiasAdd:0"]
    assert table.amax["input_1:0"] == 127.0
    assert table.amax["(Unnamed Layer* 2) [Convolution]_output"] == 63.5
    assert table.amax["weird: name"] == 254.0
    assert table.amax["input"] == _float32_bits(0x3C010204) * 127
    assert table.amax["input"] == pytest.approx(1.0, rel=1e-7)
    assert table.amax["conv/BiasAdd:0"] == _float32_bits(0x3DCCCCCD) * 127
    assert table.amax["conv/BiasAdd:0"] == pytest.approx(12.7, rel=1e-7)
    assert table.scales()["input_1:0"] == 1.0


def test_writing_the_fixture_values_gives_the_fixture_bytes():
    # 1/127 -> 3c010204 is the documented example; amax 1.0 must encode to it.
    table = CalibrationTable({"input": 1.0, "input_1:0": 127.0, "(Unnamed Layer* 2) [Convolution]_output": 63.5,
                              "weird: name": 254.0, "conv/BiasAdd:0": 12.7}, algorithm="entropy")
    text = format_trt_cache(table, trt_version="8.6.1")
    assert text == (FIXTURES / "entropy_8601.cache").read_text()


def test_tolerates_crlf_unpadded_uppercase_hex_trailing_space_and_no_final_newline():
    data = b"TRT-100300-MinMaxCalibration  \r\na: 3c0102\r\nb: 3F800000   \r\n\r\nc: 0\r\nd: 1"
    table = parse_trt_cache(data)
    assert table.trt_version == "10.3.0" and table.algorithm == "minmax"
    # Unpadded hex is padded on the left: 3c0102 -> 003c0102, a subnormal float32 = bits * 2^-149.
    assert table.amax["a"] == 0x3C0102 * 2.0**-149 * 127
    assert table.amax["b"] == 127.0
    assert table.amax["c"] == 0.0
    assert table.amax["d"] == 2.0**-149 * 127
    assert table.names() == ["a", "b", "c", "d"]


def test_final_newline_or_not_reads_the_same():
    with_newline = parse_trt_cache("TRT-8601-EntropyCalibration2\nx: 3f800000\n")
    without = parse_trt_cache("TRT-8601-EntropyCalibration2\nx: 3f800000")
    assert with_newline == without and with_newline.amax == {"x": 127.0}


def test_names_with_colon_space_round_trip():
    names = ["a: b", "x:0", "block 1: conv: out", "(Unnamed Layer* 7) [Shuffle]_output", "end:"]
    table = CalibrationTable({n: float(i + 1) for i, n in enumerate(names)})
    back = parse_trt_cache(format_trt_cache(table, "10.16.1"))
    assert back.names() == names


def test_round_trip_is_exact_to_float32_and_rewrites_identical_bytes():
    rng = np.random.default_rng(7)
    amax = 10.0 ** rng.uniform(-4, 4, size=200)
    table = CalibrationTable({f"t{i}": float(a) for i, a in enumerate(amax)}, algorithm="entropy")
    text = format_trt_cache(table, "10.16.1")
    back = parse_trt_cache(text)
    for i, a in enumerate(amax):
        assert back.amax[f"t{i}"] == float(np.float32(a / 127)) * 127
    assert format_trt_cache(back, "10.16.1") == text


def test_hex_digits_are_eight_lowercase_big_endian():
    text = format_trt_cache(CalibrationTable({"small": 1e-30, "one": 127.0}), "8.6.1")
    lines = text.splitlines()
    assert lines[2] == "one: 3f800000"
    # 1e-30/127 ~ 2^-106.6: biased exponent 20 = 0b00010100, so the bit pattern starts with a 0 hex digit.
    digits = lines[1].split(": ")[1]
    assert len(digits) == 8 and digits == digits.lower() and digits[0] == "0"
    assert bytes.fromhex(digits) == np.array([1e-30 / 127], dtype=">f4").tobytes()


@pytest.mark.parametrize(("version", "number"), [
    ("7.0.0", 7000), ("8.5.1", 8501), ("8.6.1", 8601), ("9.9.99", 9999),
    ("10.0.0", 100000), ("10.3.0", 100300), ("10.16.1", 101601), ("10.99.99", 109999),
])
def test_version_encoding_table(version, number):
    assert encode_trt_version(version) == number
    assert decode_trt_version(number) == version


def test_version_encoding_ignores_build_number_and_fills_missing_parts():
    assert encode_trt_version("10.16.1.11") == 101601
    assert encode_trt_version("8.6") == 8600
    assert encode_trt_version("10") == 100000


@pytest.mark.parametrize("bad", ["abc", "", "8.10.0", "8.6.100", "10.100.0", "0.1.0"])
def test_unencodable_versions_are_config_errors(bad):
    with pytest.raises(ConfigError, match="TensorRT version"):
        encode_trt_version(bad)


@pytest.mark.parametrize("bad", [999, 10000, 99999])
def test_undecodable_numbers_are_cache_errors(bad):
    with pytest.raises(CacheError, match=str(bad)):
        decode_trt_version(bad)


def test_header_lines():
    assert trt_version_header("8.6.1") == "TRT-8601-EntropyCalibration2"
    assert trt_version_header("10.16.1", "minmax") == "TRT-101601-MinMaxCalibration"
    assert trt_version_header("7.0.0", "LegacyCalibration") == "TRT-7000-LegacyCalibration"
    with pytest.raises(ConfigError, match="Int8Entropy"):
        trt_version_header("8.6.1", "Int8Entropy")


def test_header_of_trt_11_is_written_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING):
        assert trt_version_header("11.4.0") == "TRT-110400-EntropyCalibration2"
    assert "reads no calibration caches" in caplog.text


def test_header_calibrator_follows_the_algorithm():
    def header(table, **kw):
        return format_trt_cache(table, "10.16.1", **kw).splitlines()[0]

    assert header(CalibrationTable({"x": 1.0}, algorithm="minmax")) == "TRT-101601-MinMaxCalibration"
    assert header(CalibrationTable({"x": 1.0}, algorithm="entropy")) == "TRT-101601-EntropyCalibration2"
    # TensorRT has no percentile calibrator: the header names the calibrator that will read it.
    assert header(CalibrationTable({"x": 1.0}, algorithm="percentile")) == "TRT-101601-EntropyCalibration2"
    assert header(CalibrationTable({"x": 1.0}, algorithm="mse"), calibrator="minmax") == \
        "TRT-101601-MinMaxCalibration"


def test_re_heading_keeps_the_calibrator_read():
    legacy = parse_trt_cache("TRT-8501-LegacyCalibration\nx: 3f800000\n")
    assert legacy.algorithm == "unknown" and legacy.trt_algorithm == "LegacyCalibration"
    assert format_trt_cache(legacy, "8.6.1") == "TRT-8601-LegacyCalibration\nx: 3f800000\n"
    v1 = parse_trt_cache("TRT-8501-EntropyCalibration\nx: 3f800000\n")
    assert v1.algorithm == "entropy"
    assert format_trt_cache(v1).splitlines()[0] == "TRT-8501-EntropyCalibration"


def test_default_version_table_then_installed_then_constant(monkeypatch):
    table = CalibrationTable({"x": 127.0})
    monkeypatch.setattr(trt_format, "installed_trt_version", lambda: None)
    assert DEFAULT_TRT_VERSION == "10.16.1"
    assert format_trt_cache(table).startswith("TRT-101601-")
    monkeypatch.setattr(trt_format, "installed_trt_version", lambda: "8.6.1.6")
    assert format_trt_cache(table).startswith("TRT-8601-")
    # TensorRT 11 reads no caches: the default falls back to the last 10.x.
    monkeypatch.setattr(trt_format, "installed_trt_version", lambda: "11.4.0.106")
    assert format_trt_cache(table).startswith("TRT-101601-")
    read = parse_trt_cache("TRT-8501-EntropyCalibration2\nx: 3f800000\n")
    assert format_trt_cache(read).startswith("TRT-8501-")
    assert format_trt_cache(read, trt_version="10.3.0").startswith("TRT-100300-")


def test_malformed_line_names_its_number_and_text():
    data = "TRT-8601-EntropyCalibration2\na: 3f800000\nb 3f800000\nc: 3f000000\n"
    with pytest.raises(CacheError, match="line 3") as info:
        parse_trt_cache(data, source="my.cache")
    assert "my.cache" in info.value.message and "'b 3f800000'" in info.value.message


@pytest.mark.parametrize("line", ["x: 3f8000001", "x: zz", "x: ", ": 3f800000", "x:3f800000"])
def test_bad_values_are_errors(line):
    with pytest.raises(CacheError, match="line 2"):
        parse_trt_cache(f"TRT-8601-EntropyCalibration2\n{line}\n")


def test_missing_header_says_what_a_header_looks_like():
    with pytest.raises(CacheError) as info:
        parse_trt_cache("x: 3f800000\n")
    assert "line 1" in info.value.message
    assert "TRT-8601-EntropyCalibration2" in info.value.one_line()


def test_unknown_calibrator_and_empty_file_are_errors():
    with pytest.raises(CacheError, match="FancyCalibration"):
        parse_trt_cache("TRT-8601-FancyCalibration\nx: 3f800000\n")
    with pytest.raises(CacheError, match="empty"):
        parse_trt_cache(b"")
    with pytest.raises(CacheError, match="not a TensorRT version"):
        parse_trt_cache("TRT-50000-EntropyCalibration2\n")


def test_duplicate_tensor_is_an_error():
    with pytest.raises(CacheError, match=r"line 3.*also on line 2"):
        parse_trt_cache("TRT-8601-EntropyCalibration2\nx: 3f800000\nx: 3f000000\n")


def test_unwritable_tables_are_errors():
    with pytest.raises(CacheError, match=r"'bad'.*nan"):
        format_trt_cache(CalibrationTable({"ok": 1.0, "bad": float("nan")}), "8.6.1")
    with pytest.raises(CacheError, match="line break"):
        format_trt_cache(CalibrationTable({"a\nb": 1.0}), "8.6.1")


def test_not_utf8_is_an_error():
    with pytest.raises(CacheError, match="UTF-8"):
        parse_trt_cache(b"TRT-8601-EntropyCalibration2\n\xff\xfe: 3f800000\n")
