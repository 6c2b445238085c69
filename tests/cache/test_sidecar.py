"""A TensorRT cache with its provenance sidecar."""

from __future__ import annotations

import json
import logging
import os

import pytest

from tests.cache.helpers import conv_model, provenance_for
from trtq.cache.sidecar import read_cache, sidecar_path, write_cache
from trtq.cache.table import CalibrationTable
from trtq.errors import CacheError, ConfigError
from trtq.onnx_model.model import fingerprint
from trtq.onnx_model.tensors import activation_tensors


def _table(algorithm: str = "percentile") -> CalibrationTable:
    model = conv_model()
    names = activation_tensors(model)
    return CalibrationTable({n: 127 * 2.0 ** i for i, n in enumerate(names)}, algorithm=algorithm,
                            provenance=provenance_for(fingerprint(model), names, algorithm))


def test_sidecar_path_appends_json(tmp_path):
    assert sidecar_path(tmp_path / "m.cache") == tmp_path / "m.cache.json"


def test_write_then_read_restores_algorithm_and_provenance(tmp_path):
    table = _table("percentile")
    path = tmp_path / "m.cache"
    write_cache(table, path, "8.6.1")
    # The header can only name a TensorRT calibrator; the sidecar keeps "percentile".
    assert path.read_text().splitlines()[0] == "TRT-8601-EntropyCalibration2"
    doc = json.loads(sidecar_path(path).read_text())
    assert doc["algorithm"] == "percentile" and doc["provenance"]["num_samples"] == 64
    back = read_cache(path)
    assert back.algorithm == "percentile" and back.provenance == table.provenance
    assert back.trt_version == "8.6.1" and back.trt_algorithm == "EntropyCalibration2"
    # amax = 127 * 2^i: the scales 2^i are exact in float32.
    assert back.amax == table.amax


def test_ort_cache_gets_a_sidecar_too(tmp_path):
    path = tmp_path / "calibration.flatbuffers"
    write_cache(_table("minmax"), path, format="ort")
    back = read_cache(path)
    assert back.algorithm == "minmax" and back.provenance is not None
    with pytest.raises(ConfigError, match="'json'"):
        write_cache(_table(), tmp_path / "t.json", format="json")


def test_without_sidecar_there_is_no_provenance(tmp_path):
    path = tmp_path / "m.cache"
    write_cache(_table("entropy"), path, "10.16.1")
    sidecar_path(path).unlink()
    back = read_cache(path)
    assert back.provenance is None and back.algorithm == "entropy"


def test_cache_rewritten_by_someone_else_ignores_stale_sidecar(tmp_path, caplog):
    path = tmp_path / "m.cache"
    write_cache(_table(), path, "10.16.1")
    # TensorRT's own calibrator rewriting the cache: same format, other bytes.
    path.write_text("TRT-101601-EntropyCalibration2\nx: 3f800000\n")
    with caplog.at_level(logging.WARNING):
        back = read_cache(path)
    assert back.provenance is None and back.algorithm == "entropy"
    assert "does not describe" in caplog.text


@pytest.mark.parametrize(("content", "message"), [
    ("{not json", "not valid JSON"),
    ('["a"]', "not a JSON object"),
    ('{"schema": 1, "cache_sha256": "x", "algorithm": "entropy", "note": 1}', "unknown key 'note'"),
    ('{"schema": 1, "algorithm": "entropy"}', "needs 'cache_sha256'"),
    ('{"schema": 3, "cache_sha256": "x", "algorithm": "entropy"}', "schema 3"),
])
def test_malformed_sidecar_is_an_error(tmp_path, content, message):
    path = tmp_path / "m.cache"
    write_cache(_table(), path, "10.16.1")
    sidecar_path(path).write_text(content)
    with pytest.raises(CacheError, match=message):
        read_cache(path)


def test_failed_write_replaces_neither_file(tmp_path, monkeypatch):
    path = tmp_path / "m.cache"
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(5, "I/O error")))
    with pytest.raises(OSError, match="I/O error"):
        write_cache(_table(), path, "10.16.1")
    assert list(tmp_path.iterdir()) == []


def test_repeated_writes_are_byte_identical(tmp_path):
    for name in ("a.cache", "b.cache"):
        write_cache(_table(), tmp_path / name, "10.16.1")
    assert (tmp_path / "a.cache").read_bytes() == (tmp_path / "b.cache").read_bytes()
    assert sidecar_path(tmp_path / "a.cache").read_bytes() == sidecar_path(tmp_path / "b.cache").read_bytes()
