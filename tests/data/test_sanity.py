"""Warnings about calibration data that reads fine but cannot give useful ranges (trtq.data.sanity)."""

from __future__ import annotations

import numpy as np
import onnx
from click.testing import CliRunner

from tests.cache.helpers import conv_model
from trtq.cli import main
from trtq.data.reader import Batch
from trtq.data.sanity import SampleCheck


def _check(*batches: dict[str, np.ndarray]) -> list[str]:
    check = SampleCheck()
    seen = list(check.watch(Batch(feeds, [f"s{i}" for i in range(len(next(iter(feeds.values()))))])
                            for feeds in batches))
    assert len(seen) == len(batches)
    return check.warnings()


def test_identical_samples_are_reported_across_batches():
    x = np.random.default_rng(0).standard_normal((1, 2, 4, 4)).astype(np.float32)
    lines = _check({"x": np.repeat(x, 3, 0)}, {"x": np.repeat(x, 2, 0)})
    assert len(lines) == 1 and "all 5 calibration samples of input 'x' are identical" in lines[0]


def test_one_differing_sample_in_a_later_batch_is_enough():
    x = np.random.default_rng(0).standard_normal((4, 2, 4, 4)).astype(np.float32)
    other = x.copy()
    other[3, 1, 2, 2] += 1e-6  # one value of one sample
    assert _check({"x": np.repeat(x[:1], 4, 0)}, {"x": other[3:]}) == []


def test_a_constant_input_is_reported_once():
    lines = _check({"x": np.zeros((3, 2, 4, 4), np.float32)}, {"x": np.zeros((2, 2, 4, 4), np.float32)})
    assert len(lines) == 1 and "input 'x' is 0 everywhere in all 5 calibration samples" in lines[0]


def test_constant_integer_inputs_are_normal_but_identical_token_ids_are_not():
    ids = np.random.default_rng(0).integers(1, 1000, (1, 12))
    lines = _check({"input_ids": np.repeat(ids, 4, 0), "token_type_ids": np.zeros((4, 12), np.int64),
                    "attention_mask": np.ones((4, 12), np.int64)})
    assert len(lines) == 1 and "samples of input 'input_ids' are identical" in lines[0]


def test_a_single_sample_has_nothing_to_compare():
    assert _check({"x": np.zeros((1, 2, 4, 4), np.float32)}) == []


def test_calibrate_says_so_on_the_console(tmp_path):
    model = conv_model()
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "N"
    model.ir_version = 8
    onnx.save(model, tmp_path / "m.onnx")
    x = np.random.default_rng(1).standard_normal((1, 2, 4, 4)).astype(np.float32)
    np.save(tmp_path / "same.npy", np.repeat(x, 6, 0))
    np.save(tmp_path / "varied.npy", np.random.default_rng(2).standard_normal((6, 2, 4, 4)).astype(np.float32))
    runs = {}
    for name in ("same", "varied"):
        args = ["calibrate", str(tmp_path / "m.onnx"), "--calib", str(tmp_path / f"{name}.npy"), "--cache",
                str(tmp_path / f"{name}.cache")]
        runs[name] = CliRunner().invoke(main, args)
        assert runs[name].exit_code == 0, runs[name].output
    assert "all 6 calibration samples of input 'x' are identical" in runs["same"].output
    assert "identical" not in runs["varied"].output


def _pixels(seed: int, n: int = 6) -> np.ndarray:
    """Photo-like 0..255 values (uint8 levels as float32)."""
    return np.random.default_rng(seed).integers(0, 256, (n, 2, 4, 4)).astype(np.float32)


def test_raw_pixels_into_a_conv_are_reported_normalized_or_mean_subtracted_ones_are_not():
    def warnings(x: np.ndarray, conv_inputs=("x",)) -> list[str]:
        check = SampleCheck(conv_inputs)
        list(check.watch([Batch({"x": x}, [str(i) for i in range(len(x))])]))
        return [w for w in check.warnings() if "raw 0..255" in w]

    raw = _pixels(0)
    (line,) = warnings(raw)
    assert "input 'x' looks like raw 0..255 pixels (range 0..255" in line and "--mean/--std" in line
    assert warnings((raw / 255 - 0.45) / 0.225) == []  # ImageNet-normalized
    assert warnings(raw / 255) == []  # 0..1
    assert warnings(raw - 120.0) == []  # caffe-style: mean subtracted, no std
    assert warnings(raw, conv_inputs=()) == []  # the model normalizes it itself (or reads it otherwise)


def test_only_inputs_read_by_convs_alone_are_checked():
    from onnx import TensorProto, helper

    from trtq.onnx_model.tensors import conv_only_inputs

    assert conv_only_inputs(conv_model()) == ["x"]
    model = conv_model()
    conv = next(n for n in model.graph.node if n.op_type == "Conv")
    conv.input[0] = "x_norm"  # the model's own normalization in front: x / 255
    model.graph.initializer.append(helper.make_tensor("k255", TensorProto.FLOAT, [], [255.0]))
    model.graph.node.insert(0, helper.make_node("Div", ["x", "k255"], ["x_norm"]))
    assert conv_only_inputs(model) == []


def test_calibrate_warns_about_raw_pixels_on_the_console(tmp_path):
    model = conv_model()
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "N"
    model.ir_version = 8
    onnx.save(model, tmp_path / "m.onnx")
    np.save(tmp_path / "raw.npy", _pixels(3))
    result = CliRunner().invoke(main, ["calibrate", str(tmp_path / "m.onnx"), "--calib", str(tmp_path / "raw.npy"),
                                       "--cache", str(tmp_path / "raw.cache")])
    assert result.exit_code == 0, result.output
    assert result.output.count("looks like raw 0..255 pixels") == 1
