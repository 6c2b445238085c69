"""trtq's JSON table: exact floats, provenance inside, strict reading."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.cache.helpers import conv_model, provenance_for
from trtq.cache.json_format import format_json_table, parse_json_table, table_to_dict
from trtq.cache.table import CalibrationTable
from trtq.errors import CacheError
from trtq.onnx_model.model import fingerprint
from trtq.onnx_model.tensors import activation_tensors


def _table() -> CalibrationTable:
    model = conv_model()
    names = activation_tensors(model)
    rng = np.random.default_rng(3)
    amax = {n: float(v) for n, v in zip(names, rng.uniform(0.01, 100.0, len(names)), strict=True)}
    return CalibrationTable(amax, algorithm="percentile", trt_version="10.16.1",
                            provenance=provenance_for(fingerprint(model), names, "percentile"))


def test_round_trip_is_bit_exact_with_provenance():
    rng = np.random.default_rng(11)
    values = np.concatenate([rng.uniform(0, 1e-6, 50), 10.0 ** rng.uniform(-30, 30, 50), [0.1, 1 / 3, 5e-324]])
    table = CalibrationTable({f"t{i}": float(v) for i, v in enumerate(values)}, algorithm="mse",
                             provenance=_table().provenance, trt_algorithm="MinMaxCalibration")
    back = parse_json_table(format_json_table(table))
    assert back == table
    assert all(back.amax[f"t{i}"] == float(v) for i, v in enumerate(values))


def test_document_layout():
    table = _table()
    doc = json.loads(format_json_table(table))
    assert list(doc) == ["schema", "algorithm", "trt_version", "trt_algorithm", "tensors", "provenance"]
    assert doc["schema"] == 1 and doc["algorithm"] == "percentile" and doc["trt_version"] == "10.16.1"
    name = table.names()[0]
    assert doc["tensors"][name] == {"amax": table.amax[name], "scale": table.amax[name] / 127}
    assert list(doc["tensors"]) == table.names()
    assert doc["provenance"]["num_samples"] == 64


def test_identical_tables_give_identical_text():
    assert format_json_table(_table()) == format_json_table(_table())


def _doc(**changes):
    doc = table_to_dict(CalibrationTable({"x": 2.54}, algorithm="entropy"))
    doc.update(changes)
    return json.dumps(doc)


@pytest.mark.parametrize(("text", "message"), [
    (_doc(extra=1), "unknown key 'extra'"),
    (_doc(schema=7), "schema 7"),
    (_doc(tensors={"x": {"amax": 2.54, "scale": 0.5}}), "tensor 'x' has amax 2.54 but scale 0.5"),
    (_doc(tensors={"x": {"amax": "big"}}), "amax of tensor 'x' must be a number"),
    (_doc(tensors={"x": {"scale": 0.02}}), "tensor 'x' must be an object with an 'amax'"),
    (_doc(tensors={"x": {"amax": 1.0, "zero_point": 0}}), "unknown key 'zero_point'"),
    (_doc(tensors=[1, 2]), "no 'tensors' object"),
    (_doc(tensors={"": {"amax": 1.0}}), "empty name"),
    ('{"schema": 1, "tensors": {"x": {"amax": 1' + "0" * 400 + '}}}', "too large"),
    (_doc(algorithm=3), "'algorithm' must be a non-empty string"),
    (_doc(trt_version=8.6), "'trt_version' must be a string"),
    (_doc(provenance={"schema": 1}), "lacks key"),
    ('{"schema": 1, "tensors": {"x": {"amax": 1}, "x": {"amax": 2}}}', "key 'x' twice"),
    ('{"schema": 1,', "not valid JSON"),
    ("[1, 2]", "not a JSON object"),
])
def test_malformed_documents_are_errors(text, message):
    with pytest.raises(CacheError, match=message):
        parse_json_table(text, source="t.json")


def test_scale_without_edit_is_accepted_and_amax_wins():
    table = parse_json_table('{"schema": 1, "tensors": {"x": {"amax": 127}, "y": {"amax": 1.27, "scale": 0.01}}}')
    assert table.amax == {"x": 127.0, "y": 1.27} and table.algorithm == "unknown"


def test_non_finite_amax_cannot_be_written():
    with pytest.raises(CacheError, match="'x' is inf"):
        format_json_table(CalibrationTable({"x": float("inf")}))
