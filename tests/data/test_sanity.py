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
