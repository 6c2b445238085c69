"""Optimization-profile shapes from observed data and user overrides."""

from __future__ import annotations

import numpy as np
import pytest

from trtq.engine.profiles import ShapeRange, derive_profiles, opt_shape, parse_shapes, record_shapes
from trtq.errors import ConfigError, DataError
from trtq.onnx_model.model import TensorSpec

F32 = np.dtype("float32")
IMAGE = TensorSpec("image", ("N", 3, "H", "W"), F32)
SCALE = TensorSpec("scale", (1, 2), F32)  # fixed
TOKENS = TensorSpec("tokens", ("N", "T"), np.dtype("int64"))


def test_parse_shapes():
    assert parse_shapes("x:1x3x224x224, y:1X10") == {"x": (1, 3, 224, 224), "y": (1, 10)}
    assert parse_shapes("input:0:4x3") == {"input:0": (4, 3)}  # TF-style names keep their colon
    assert parse_shapes(None) == {} and parse_shapes(" ") == {}


@pytest.mark.parametrize(("text", "match"), [
    ("1x3x224x224", "'1x3x224x224' is not of the form name:dims"),
    ("x:", "is not of the form name:dims"),
    ("x:1x3xAx4", "input 'x' has dims '1x3xAx4'"),
    ("x:1x0x4", "input 'x' has dims '1x0x4'"),
    ("x:1x3,x:2x3", "input 'x' is given twice"),
])
def test_parse_shapes_errors_name_the_option_and_input(text, match):
    with pytest.raises(ConfigError, match=match) as info:
        parse_shapes(text, "opt_shapes")
    assert info.value.message.startswith("--opt-shapes: ")


def test_derive_min_max_and_most_common_opt():
    observed = {
        "image": [(8, 3, 32, 100), (8, 3, 32, 100), (8, 3, 32, 320), (3, 3, 32, 100), (8, 3, 32, 100)],
        "scale": [(1, 2)] * 5,
    }
    (image,) = derive_profiles([IMAGE, SCALE], observed)  # the fixed input needs no range
    assert image == ShapeRange("image", min=(3, 3, 32, 100), opt=(8, 3, 32, 100), max=(8, 3, 32, 320))


def test_opt_tie_goes_to_the_larger_shape():
    assert opt_shape([(2, 10), (4, 10), (2, 10), (4, 10)]) == (4, 10)
    assert opt_shape([(1, 5)]) == (1, 5)


def test_record_shapes_collects_per_input():
    observed: dict = {}
    record_shapes(observed, {"image": np.zeros((2, 3, 8, 8)), "tokens": np.zeros((2, 7), np.int64)})
    record_shapes(observed, {"image": np.zeros((1, 3, 8, 8)), "tokens": np.zeros((1, 5), np.int64)})
    assert observed == {"image": [(2, 3, 8, 8), (1, 3, 8, 8)], "tokens": [(2, 7), (1, 5)]}
    (_, tokens) = derive_profiles([IMAGE, TOKENS], observed)
    assert (tokens.min, tokens.opt, tokens.max) == ((1, 5), (2, 7), (2, 7))


def test_overrides_replace_derived_shapes_per_kind():
    observed = {"image": [(4, 3, 32, 100), (4, 3, 32, 200)]}
    (image,) = derive_profiles([IMAGE], observed, min_shapes="image:1x3x32x32", max_shapes="image:16x3x32x640")
    assert image == ShapeRange("image", (1, 3, 32, 32), (4, 3, 32, 200), (16, 3, 32, 640))


def test_overrides_alone_when_no_data_was_seen():
    (image,) = derive_profiles([IMAGE], {}, opt_shapes="image:4x3x64x64")
    assert image == ShapeRange("image", (4, 3, 64, 64), (4, 3, 64, 64), (4, 3, 64, 64))
    (image,) = derive_profiles([IMAGE], {}, min_shapes="image:1x3x64x64", max_shapes="image:8x3x64x64")
    assert (image.min, image.opt, image.max) == ((1, 3, 64, 64), (8, 3, 64, 64), (8, 3, 64, 64))


def test_dynamic_input_with_nothing_to_go_on():
    with pytest.raises(ConfigError, match="input 'image' has a dynamic shape \\(Nx3xHxW\\)") as info:
        derive_profiles([IMAGE], {})
    assert "--opt-shapes" in info.value.hint


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"opt_shapes": "image:1x3x32"}, "--opt-shapes: input 'image' gets 3 dims \\(1x3x32\\) but the model's input "
                                     "has rank 4"),
    ({"max_shapes": "image:8x1x32x32"}, "--max-shapes: input 'image' gets 1 in dim 1 but the model fixes it to 3"),
    ({"min_shapes": "scale:1x3"}, "--min-shapes: input 'scale' gets 3 in dim 1"),
    ({"min_shapes": "mask:1x3"}, "--min-shapes: the model has no input 'mask'"),
    ({"min_shapes": "image:8x3x32x32", "max_shapes": "image:4x3x32x32"}, "input 'image': shapes must satisfy "
                                                                         "min <= opt <= max"),
])
def test_override_errors_name_the_input(kwargs, match):
    observed = {"image": [(4, 3, 32, 32)], "scale": [(1, 2)]}
    with pytest.raises(ConfigError, match=match):
        derive_profiles([IMAGE, SCALE], observed, **kwargs)


def test_observed_shapes_that_contradict_the_model():
    with pytest.raises(DataError, match="calibration data: input 'image' gets 1 in dim 1"):
        derive_profiles([IMAGE], {"image": [(4, 1, 32, 32)]})


def test_unknown_rank_input_takes_any_consistent_rank():
    spec = TensorSpec("x", None, F32)
    (x,) = derive_profiles([spec], {"x": [(2, 5), (3, 5)]})
    assert (x.min, x.opt, x.max) == ((2, 5), (3, 5), (3, 5))
    with pytest.raises(DataError, match="different ranks"):
        derive_profiles([spec], {"x": [(2, 5), (3, 5, 1)]})


def test_to_dict():
    r = ShapeRange("x", (1, 3), (2, 3), (4, 3))
    assert r.to_dict() == {"input": "x", "min": [1, 3], "opt": [2, 3], "max": [4, 3]}
