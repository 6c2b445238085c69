"""`trtq cache show|diff|convert` on real files, with exit codes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.cache.helpers import conv_model, provenance_for
from trtq.cache import CalibrationTable, read_cache, read_table, sidecar_path, write_cache, write_table
from trtq.cli import main
from trtq.errors import EXIT_BAD_INPUT, EXIT_USAGE
from trtq.onnx_model.model import fingerprint
from trtq.onnx_model.tensors import activation_tensors

FIXTURE = Path(__file__).parents[1] / "cache" / "fixtures" / "entropy_8601.cache"


def _run(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture()
def fixture_cache(tmp_path) -> Path:
    path = tmp_path / "in.cache"
    shutil.copy(FIXTURE, path)
    return path


def test_show_fixture(fixture_cache):
    result = _run("cache", "show", fixture_cache)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "format:     trt (TensorRT calibration cache)" in out
    assert "header:     TRT-8601-EntropyCalibration2 (TensorRT 8.6.1)" in out
    assert "algorithm:  entropy" in out
    assert "provenance: none" in out
    assert "tensors:    5" in out
    row = next(line for line in out.splitlines() if line.startswith("weird: name"))
    assert row.split()[-2:] == ["254", "2"]


def test_show_limit_and_json(fixture_cache):
    limited = _run("cache", "show", "--limit", "2", fixture_cache)
    assert limited.exit_code == 0
    assert "input_1:0" in limited.output and "conv/BiasAdd:0" not in limited.output
    assert "... 3 more (--limit 0 shows all)" in limited.output
    everything = _run("cache", "show", "--limit", "0", fixture_cache)
    assert "conv/BiasAdd:0" in everything.output and "more" not in everything.output
    data = json.loads(_run("cache", "show", "--json", fixture_cache).output)
    assert data["format"] == "trt" and data["trt_header"] == "TRT-8601-EntropyCalibration2"
    assert data["num_tensors"] == 5 and len(data["tensors"]) == 5
    assert data["tensors"][1] == {"name": "input_1:0", "amax": 127.0, "scale": 1.0}


def test_show_with_provenance(tmp_path):
    model = conv_model()
    names = activation_tensors(model)
    table = CalibrationTable({n: 1.0 for n in names}, algorithm="percentile",
                             provenance=provenance_for(fingerprint(model), names, "percentile"))
    write_cache(table, tmp_path / "m.cache", "10.16.1")
    out = _run("cache", "show", tmp_path / "m.cache").output
    assert "algorithm:  percentile" in out
    assert "provenance: 64 samples, algorithm percentile (start_bin=128), num_bins 2048" in out
    assert f"model graph {fingerprint(model).graph[:12]}" in out


def test_show_errors_exit_4_with_one_line(tmp_path):
    missing = _run("cache", "show", tmp_path / "nope.cache")
    assert missing.exit_code == EXIT_BAD_INPUT
    assert "does not exist" in missing.output and "Traceback" not in missing.output
    bad = tmp_path / "bad.cache"
    bad.write_text("TRT-8601-EntropyCalibration2\nx: 3f800000\ny = 3f800000\n")
    result = _run("cache", "show", bad)
    assert result.exit_code == EXIT_BAD_INPUT
    assert "line 3" in result.output and "'y = 3f800000'" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_show_ort_text_only_on_request(tmp_path):
    path = tmp_path / "calibration.cache"
    path.write_text("conv 1.5\nrelu 2.0\n")
    assert _run("cache", "show", path).exit_code == EXIT_BAD_INPUT
    result = _run("cache", "show", "--from", "ort-text", path)
    assert result.exit_code == 0 and "format:     ort-text" in result.output and "tensors:    2" in result.output


def test_diff(tmp_path):
    write_table(CalibrationTable({"x": 1.0, "y": 2.0, "z": 4.0, "p": 1.0}), tmp_path / "a.json")
    write_table(CalibrationTable({"x": 1.0, "y": 4.0, "z": 1.0, "q": 3.0}), tmp_path / "b.json")
    result = _run("cache", "diff", tmp_path / "a.json", tmp_path / "b.json")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "only in a: 1: p" in lines and "only in b: 1: q" in lines
    assert "changed: 2 of 3 common tensors (largest change first)" in lines
    rows = [line.split() for line in lines if line.startswith(("z ", "y "))]
    assert rows == [["z", "4", "1", "0.25"], ["y", "2", "4", "2"]]
    top = _run("cache", "diff", "--top", "1", tmp_path / "a.json", tmp_path / "b.json")
    assert "... 1 more (--top 0 shows all)" in top.output


def test_diff_of_cache_and_its_json_source_is_identical_within_float32(tmp_path):
    table = CalibrationTable({"x": 0.3, "y": 12.7})
    write_table(table, tmp_path / "t.json")
    write_table(table, tmp_path / "t.cache", trt_version="10.16.1")
    result = _run("cache", "diff", tmp_path / "t.json", tmp_path / "t.cache")
    assert result.exit_code == 0 and "identical: 2 tensors" in result.output
    exact = _run("cache", "diff", "--rtol", "0", tmp_path / "t.json", tmp_path / "t.cache")
    assert exact.exit_code == 0 and "changed: 2 of 2" in exact.output


def test_convert_re_heads_for_another_tensorrt_version(fixture_cache, tmp_path):
    out = tmp_path / "out.cache"
    result = _run("cache", "convert", fixture_cache, out, "--to", "trt", "--trt-version", "10.16.1")
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output and "5 tensors" in result.output
    original, converted = FIXTURE.read_text().splitlines(), out.read_text().splitlines()
    assert converted[0] == "TRT-101601-EntropyCalibration2"
    assert converted[1:] == original[1:]
    assert sidecar_path(out).is_file()


def test_convert_between_all_formats_keeps_values(fixture_cache, tmp_path):
    source = read_table(fixture_cache)
    assert _run("cache", "convert", fixture_cache, tmp_path / "t.json").exit_code == 0
    assert _run("cache", "convert", tmp_path / "t.json", tmp_path / "t.flatbuffers").exit_code == 0
    assert _run("cache", "convert", tmp_path / "t.flatbuffers", tmp_path / "back.cache",
                "--trt-version", "8.6.1").exit_code == 0
    assert read_table(tmp_path / "t.json").amax == source.amax
    assert read_table(tmp_path / "t.flatbuffers").amax == source.amax
    # The ORT table does not carry the header; its sidecar keeps the algorithm.
    back = read_cache(tmp_path / "back.cache")
    assert back.amax == source.amax and back.algorithm == "entropy"
    assert (tmp_path / "back.cache").read_bytes() == FIXTURE.read_bytes()


def test_convert_with_calibrator_and_bad_options(fixture_cache, tmp_path):
    out = tmp_path / "mm.cache"
    assert _run("cache", "convert", fixture_cache, out, "--calibrator", "minmax").exit_code == 0
    assert out.read_text().startswith("TRT-8601-MinMaxCalibration\n")
    unknown_ext = _run("cache", "convert", fixture_cache, tmp_path / "out.txt")
    assert unknown_ext.exit_code == EXIT_USAGE and "--to" in unknown_ext.output
    bad_version = _run("cache", "convert", fixture_cache, out, "--trt-version", "eight")
    assert bad_version.exit_code == EXIT_USAGE and "'eight'" in bad_version.output
    missing = _run("cache", "convert", tmp_path / "none.cache", out)
    assert missing.exit_code == EXIT_BAD_INPUT
