"""validate_table against a small real model, and diff_tables."""

from __future__ import annotations

import dataclasses
import math

import pytest

from tests.cache.helpers import conv_model, provenance_for
from trtq.cache.table import CalibrationTable
from trtq.cache.validate import diff_tables, validate_table
from trtq.errors import CacheError
from trtq.onnx_model.model import fingerprint
from trtq.onnx_model.tensors import activation_tensors

MODEL = conv_model()
NAMES = activation_tensors(MODEL)
FP = fingerprint(MODEL)


def _table(amax: dict[str, float] | None = None, provenance: bool = True) -> CalibrationTable:
    amax = amax if amax is not None else {n: float(i + 1) for i, n in enumerate(NAMES)}
    return CalibrationTable(amax, algorithm="entropy",
                            provenance=provenance_for(FP, NAMES) if provenance else None)


def test_model_has_the_expected_calibrated_tensors():
    assert NAMES == ["x", "conv_out", "y"]


def test_matching_table_passes_without_warnings():
    assert validate_table(_table(), fingerprint=FP, tensor_names=NAMES) == []


def test_table_without_provenance_is_checked_by_names_with_a_warning():
    warnings = validate_table(_table(provenance=False), fingerprint=FP, tensor_names=NAMES)
    assert len(warnings) == 1 and "no provenance" in warnings[0]


def test_extra_tensors_are_counted_and_named():
    extra = {f"ghost{i}": 1.0 for i in range(7)}
    table = _table({**{n: 1.0 for n in NAMES}, **extra})
    with pytest.raises(CacheError) as info:
        validate_table(table, fingerprint=FP, tensor_names=NAMES, source="m.cache")
    message = info.value.message
    assert "m.cache does not fit the model" in message
    assert "7 of its 10 tensors are not in the model" in message
    assert "'ghost0'" in message and "'ghost4'" in message and "(2 more)" in message
    assert "'ghost6'" not in message


def test_missing_tensors_are_named():
    table = _table({"x": 1.0})
    with pytest.raises(CacheError, match=r"lacks 2 of the model's 3 calibrated tensors: 'conv_out', 'y'"):
        validate_table(table, fingerprint=FP, tensor_names=NAMES)


def test_graph_change_is_an_error():
    other = conv_model(activation="Sigmoid")  # same tensor names, same weights, other graph
    other_fp = fingerprint(other)
    assert other_fp.weights == FP.weights and other_fp.graph != FP.graph
    with pytest.raises(CacheError) as info:
        validate_table(_table(), fingerprint=other_fp, tensor_names=activation_tensors(other))
    assert (f"the graph changed since the cache was written (cache for graph {FP.graph[:12]}, "
            f"model has {other_fp.graph[:12]})") in info.value.message
    assert "weights" not in info.value.message


def test_weights_change_is_an_error_that_says_what_to_do():
    retrained = fingerprint(conv_model(weight_scale=1.5))
    assert retrained.graph == FP.graph and retrained.weights != FP.weights
    with pytest.raises(CacheError) as info:
        validate_table(_table(), fingerprint=retrained, tensor_names=NAMES)
    assert info.value.one_line().endswith(
        f"the weights changed since the cache was written (cache for weights {FP.weights[:12]}, "
        f"model has {retrained.weights[:12]}); recalibrate: delete the cache or give another --cache path, "
        "and trtq calibrates anew; or pass --force to use it anyway")


def test_force_turns_mismatches_into_warnings():
    retrained = fingerprint(conv_model(weight_scale=1.5))
    table = _table({"x": 1.0, "conv_out": 2.0, "ghost": 3.0})
    warnings = validate_table(table, fingerprint=retrained, tensor_names=NAMES, force=True)
    text = "\n".join(warnings)
    assert len(warnings) == 3
    assert "'ghost'" in text and "'y'" in text and "weights changed" in text and "--force" in text


@pytest.mark.parametrize("bad", [math.nan, math.inf, -1.0, 0.0])
def test_unusable_amax_is_an_error_even_with_force(bad):
    table = _table({"x": 1.0, "conv_out": bad, "y": 1.0})
    with pytest.raises(CacheError, match=f"'conv_out' \\({bad}\\)"):
        validate_table(table, fingerprint=FP, tensor_names=NAMES, force=True)


def test_diff_orders_by_log_ratio():
    a = CalibrationTable({"x": 1.0, "y": 2.0, "z": 4.0, "p": 1.0, "w": 3.0})
    b = CalibrationTable({"q": 3.0, "x": 1.0, "y": 4.0, "z": 1.0, "w": 3.3})
    diff = diff_tables(a, b)
    assert diff.only_in_a == ["p"] and diff.only_in_b == ["q"]
    # |log 0.25| = 1.386 > |log 2| = 0.693 > |log 1.1| = 0.095
    assert [c.name for c in diff.changed] == ["z", "y", "w"]
    assert diff.changed[0].ratio == 0.25 and diff.changed[1].ratio == 2.0
    assert diff.changed[2].ratio == pytest.approx(1.1)
    assert (diff.changed[1].amax_a, diff.changed[1].amax_b) == (2.0, 4.0)
    assert diff.unchanged == 1 and not diff.identical


def test_diff_tolerance_zero_and_nan():
    a = CalibrationTable({"x": 1.0, "zero": 0.0, "n": math.nan, "s": 5.0})
    b = CalibrationTable({"x": 1.0 + 1e-9, "zero": 2.0, "n": math.nan, "s": 5.0})
    exact = diff_tables(a, b)
    assert [c.name for c in exact.changed] == ["zero", "x"]
    assert exact.changed[0].ratio == math.inf
    loose = diff_tables(a, b, rtol=1e-6)
    assert [c.name for c in loose.changed] == ["zero"] and loose.unchanged == 3


def test_diff_of_a_table_with_itself_is_identical():
    table = _table()
    diff = diff_tables(table, dataclasses.replace(table, provenance=None))
    assert diff.identical and diff.unchanged == 3
