"""`trtq build` with cross-layer equalization and learned weight rounding, end to end on CPU."""

from __future__ import annotations

import json

import jsonschema
import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from tests.qdq.test_equalization import depthwise_pointwise
from trtq.cli import main
from trtq.report.report import SCHEMA_PATH


@pytest.fixture()
def workdir(tmp_path):
    """Depthwise -> ReLU6 -> pointwise -> 3x3 conv, and 40 input samples as .npy (8 held out)."""
    onnx.save(depthwise_pointwise("Clip"), tmp_path / "dwpw.onnx")
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((40, 8, 7, 7)) * 2 + rng.normal(0, 1, (40, 8, 1, 1))).astype(np.float32)
    np.save(tmp_path / "calib.npy", x)
    return tmp_path


def _build(workdir, out: str, *extra: str):
    return CliRunner().invoke(main, ["-q", "build", str(workdir / "dwpw.onnx"), "--calib", str(workdir / "calib.npy"),
                                     "--method", "minmax", "-o", str(workdir / out), *extra])


def _report(out) -> dict:
    data = json.loads((out / "report.json").read_text())
    jsonschema.Draft202012Validator(json.loads(SCHEMA_PATH.read_text())).validate(data)
    return data


def test_build_equalizes_and_learns_the_rounding_deterministically(workdir):
    args = ("--equalization", "cle", "--weight-rounding", "learned")
    result = _build(workdir, "a", *args)
    assert result.exit_code == 0, result.output
    data = _report(workdir / "a")
    assert {"equalize", "calibrate", "quantize"} <= {s["name"] for s in data["stages"]}
    assert (workdir / "a" / "dwpw.equalized.onnx").exists() and (workdir / "a" / "dwpw.cache").exists()
    assert len(data["accuracy"]["equalization"]["pairs"]) == 2
    rounding = data["accuracy"]["weight_rounding"]
    assert [r["node"] for r in rounding["layers"]] == ["dw", "pw", "c3"]
    assert all(r["sqnr_learned"] >= r["sqnr_nearest"] for r in rounding["layers"])
    assert sum(r["changed"] for r in rounding["layers"]) > 0
    assert "Learned weight rounding" in (workdir / "a" / "report.md").read_text()
    again = _build(workdir, "b", *args)
    assert again.exit_code == 0, again.output
    assert (workdir / "a" / "dwpw.qdq.onnx").read_bytes() == (workdir / "b" / "dwpw.qdq.onnx").read_bytes()
    plain = _build(workdir, "c", "--fast", *args)
    assert plain.exit_code == 0, plain.output
    fast = _report(workdir / "c")
    assert fast["accuracy"]["weight_rounding"] is None and fast["accuracy"].get("equalization") is None
    assert not (workdir / "c" / "dwpw.equalized.onnx").exists()


def test_build_rechooses_activation_ranges_and_reports_them(workdir):
    result = _build(workdir, "r", "--activation-ranges", "layer-output")
    assert result.exit_code == 0, result.output
    data = _report(workdir / "r")
    rounding = data["accuracy"]["weight_rounding"]
    assert rounding["method"] == "nearest" and rounding["layers"] == []  # the integers are nearest's
    assert {r["tensor"] for r in rounding["ranges"]} and all(r["error_ratio"] <= 1 for r in rounding["ranges"])
    md = (workdir / "r" / "report.md").read_text()
    assert "Activation ranges by layer output error" in md and "Learned weight rounding" not in md
    plain = _build(workdir, "p")
    assert plain.exit_code == 0, plain.output
    # the cache keeps the histogram ranges; the Q/DQ model differs where a range was re-chosen
    assert (workdir / "r" / "dwpw.cache").read_bytes() == (workdir / "p" / "dwpw.cache").read_bytes()
    assert any(r["amax_after"] != r["amax_before"] for r in rounding["ranges"])  # minmax ranges: clipping pays
    assert (workdir / "r" / "dwpw.qdq.onnx").read_bytes() != (workdir / "p" / "dwpw.qdq.onnx").read_bytes()
    assert _report(workdir / "p")["accuracy"]["weight_rounding"] is None


def test_build_with_adaround_rounds_within_one_step_of_nearest(workdir):
    result = _build(workdir, "ada", "--weight-rounding", "adaround", "--activation-ranges", "layer-output")
    assert result.exit_code == 0, result.output
    rounding = _report(workdir / "ada")["accuracy"]["weight_rounding"]
    assert rounding["method"] == "adaround" and [r["node"] for r in rounding["layers"]] == ["dw", "pw", "c3"]
    assert all(r["sqnr_learned"] >= r["sqnr_nearest"] for r in rounding["layers"]) and rounding["ranges"]
