"""CalibrationTable and Provenance: units, immutability, strict JSON round trips."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from trtq._version import __version__
from trtq.cache.table import CalibrationTable, Provenance, names_sha256
from trtq.errors import CacheError


def _provenance(**overrides) -> Provenance:
    values = dict(model_graph_sha256="a" * 64, model_weights_sha256="b" * 64, tensor_names_sha256="c" * 64,
                  algorithm="percentile", num_samples=100)
    return Provenance(**{**values, **overrides})


def test_scales_are_amax_over_127_in_table_order():
    table = CalibrationTable({"z": 127.0, "a": 2.54, "m": np.float32(63.5)})
    assert table.names() == ["z", "a", "m"]
    assert table.scales() == {"z": 1.0, "a": 2.54 / 127, "m": 0.5}
    assert type(table.amax["m"]) is float
    assert len(table) == 3


def test_table_copies_its_input():
    source = {"x": 1.0}
    table = CalibrationTable(source)
    source["x"] = 5.0
    assert table.amax == {"x": 1.0}


def test_table_rejects_bad_names_and_algorithm():
    with pytest.raises(ValueError, match="non-empty"):
        CalibrationTable({"": 1.0})
    with pytest.raises(ValueError, match="algorithm"):
        CalibrationTable({"x": 1.0}, algorithm="")


def test_names_sha256_is_of_sorted_names():
    expected = hashlib.sha256(b"a\nb\nc").hexdigest()
    assert names_sha256(["c", "a", "b"]) == expected == names_sha256({"b", "c", "a"})


def test_provenance_round_trip_with_schema_and_sorted_params():
    prov = _provenance(algorithm_params={"percentile": np.float64(99.99), "a": (1, 2), "n": {"k": np.int64(3)}},
                       num_bins=2048,
                       random_data=True, data_sha256=None)
    data = prov.to_dict()
    assert next(iter(data)) == "schema" and data["schema"] == 1
    assert list(data["algorithm_params"]) == ["a", "n", "percentile"]
    assert data["algorithm_params"] == {"a": [1, 2], "n": {"k": 3}, "percentile": 99.99}
    assert type(data["algorithm_params"]["n"]["k"]) is int
    assert data["trtq_version"] == __version__
    assert Provenance.from_dict(data) == prov


def test_provenance_rejects_unknown_key_naming_it():
    data = {**_provenance().to_dict(), "num_sampels": 3}
    with pytest.raises(CacheError, match="unknown key 'num_sampels'"):
        Provenance.from_dict(data)


@pytest.mark.parametrize(("change", "message"), [
    ({"schema": 2}, "schema 2"),
    ({"schema": None}, "no 'schema'"),
    ({"num_samples": "many"}, "'num_samples' must be an integer"),
    ({"num_samples": True}, "'num_samples' must be an integer"),
    ({"model_graph_sha256": 5}, "'model_graph_sha256' must be a string"),
    ({"num_bins": 1.5}, "'num_bins'"),
    ({"random_data": "yes"}, "'random_data'"),
    ({"algorithm_params": [1]}, "'algorithm_params'"),
    ({"data_parts": {"samples": 1}}, "'data_parts' must be an object of strings"),
    ({"preprocess": [0.5]}, "'preprocess' must be an object or null"),
])
def test_provenance_rejects_bad_values(change, message):
    data = {**_provenance().to_dict(), **change}
    data = {k: v for k, v in data.items() if v is not None or k != "schema"}
    with pytest.raises(CacheError, match=message):
        Provenance.from_dict(data)


def test_provenance_requires_its_keys():
    data = _provenance().to_dict()
    del data["tensor_names_sha256"]
    with pytest.raises(CacheError, match="lacks key 'tensor_names_sha256'"):
        Provenance.from_dict(data)
    with pytest.raises(CacheError, match="JSON object"):
        Provenance.from_dict(["not", "a", "dict"])  # type: ignore[arg-type]


def test_provenance_params_must_be_json_values():
    with pytest.raises(TypeError, match="algorithm_params"):
        _provenance(algorithm_params={"f": object()})


def test_the_data_parts_and_preprocessing_round_trip_and_older_sidecars_lack_them():
    prov = _provenance(data_parts={"samples": "d" * 64, "contents": "e" * 64},
                       preprocess={"mean": [0.5, 0.5, 0.5], "resize": "pad-right"})
    assert Provenance.from_dict(prov.to_dict()) == prov
    older = {k: v for k, v in prov.to_dict().items() if k not in ("data_parts", "preprocess")}
    assert Provenance.from_dict(older).data_parts == {} and Provenance.from_dict(older).preprocess is None
