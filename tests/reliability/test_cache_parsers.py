"""Issue 13.10: cache, sidecar and table parsers refuse huge numbers, NaN, deep nesting and huge files
with a CacheError; `cache show --json` prints standard JSON."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from trtq.cache import read_cache
from trtq.cache.files import MAX_CACHE_BYTES, parse_table
from trtq.cache.sidecar import write_cache
from trtq.cache.table import CalibrationTable
from trtq.cli import main
from trtq.errors import EXIT_BAD_INPUT, CacheError

JSON_TABLE = {"schema": 1, "algorithm": "entropy", "tensors": {"x": {"amax": 1.5}}}


@pytest.mark.parametrize(("data", "message"), [
    (b"TRT-" + b"9" * 5000 + b"-EntropyCalibration2\nx: 3c010a14\n", "not a TensorRT cache header"),
    (b'{"schema": 1, "algorithm": "e", "tensors": {"x": {"amax": NaN}}}', "NaN, which is not JSON"),
    (b'{"schema": 1, "algorithm": "e", "tensors": {"x": {"amax": 1e999}}}', "too large"),
    (b'{"schema": 1, "algorithm": "e", "tensors": {"x": {"amax": ' + b"1" * 5000 + b"}}}", "cannot read"),
    (b'{"a":' * 100000 + b"1" + b"}" * 100000, "nests too deeply"),
])
def test_malformed_tables_are_cache_errors(data, message):
    with pytest.raises(CacheError, match=message):
        parse_table(data, "auto", "t")


def test_nan_in_a_json_tables_provenance_is_refused(tmp_path):
    path = tmp_path / "t.json"
    doc = dict(JSON_TABLE, provenance={"schema": 1, "num_samples": float("nan")})
    path.write_text(json.dumps(doc))
    result = CliRunner().invoke(main, ["cache", "convert", str(path), str(tmp_path / "o.cache")])
    assert result.exit_code == EXIT_BAD_INPUT and "NaN, which is not JSON" in result.output, result.output


@pytest.mark.parametrize("field", ["num_samples", "num_bins"])
def test_huge_integers_in_a_sidecar_are_refused(tmp_path, field):
    cache = tmp_path / "m.cache"
    write_cache(CalibrationTable({"x": 1.0}), cache, "10.16.1")
    sidecar = tmp_path / "m.cache.json"
    sidecar.write_text(sidecar.read_text().replace('"provenance": null', f'"provenance": {{"{field}": {"9" * 5000}}}'))
    with pytest.raises(CacheError, match="cannot read"):
        read_cache(cache)


def test_cache_show_json_is_standard_json_for_a_nan_scale(tmp_path):
    cache = tmp_path / "nan.cache"
    cache.write_text("TRT-8601-EntropyCalibration2\nx: 7fc00000\ny: 3c010a14\n")
    result = CliRunner().invoke(main, ["cache", "show", "--json", str(cache)])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output, parse_constant=lambda name: pytest.fail(f"non-standard JSON {name}"))
    assert doc["tensors"][0]["amax"] == "nan"


def test_a_huge_file_is_refused_before_it_is_read(tmp_path):
    cache = tmp_path / "huge.cache"
    with open(cache, "wb") as f:
        f.truncate(MAX_CACHE_BYTES + 1)  # sparse: no disk used
    result = CliRunner().invoke(main, ["cache", "show", str(cache)])
    assert result.exit_code == EXIT_BAD_INPUT and "more than a calibration cache can be" in result.output
