"""`trtq quantize MODEL --cache CACHE -o OUT` on the real PP-OCR classifier."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from tests.qdq.helpers import session
from trtq.cache import CalibrationTable, read_cache, write_cache
from trtq.cli import main
from trtq.errors import EXIT_BAD_INPUT
from trtq.qdq import lint_model


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory, ocr_classifier):
    """The classifier and a minmax cache calibrated on real photos (with provenance sidecar)."""
    from tests import assets

    folder = tmp_path_factory.mktemp("quantize")
    photos = folder / "photos"
    photos.mkdir()
    for path in assets.color_photos()[:6]:
        (photos / path.name).write_bytes(path.read_bytes())
    cache = folder / "cls.cache"
    result = CliRunner().invoke(main, ["-q", "calibrate", str(ocr_classifier), "--calib", str(photos), "--cache",
                                       str(cache), "-c", "ppocr", "--height", "48", "--width", "192",
                                       "--method", "minmax"])
    assert result.exit_code == 0, result.output
    return ocr_classifier, cache


def _quantize(*args: str):
    return CliRunner().invoke(main, ["-q", "quantize", *args])


def test_quantize_applies_cache_scales(calibrated, tmp_path):
    model, cache = calibrated
    out = tmp_path / "cls.qdq.onnx"
    result = _quantize(str(model), "--cache", str(cache), "-o", str(out))
    assert result.exit_code == 0, result.output
    assert f"wrote {out}" in result.stdout
    qdq = onnx.load(str(out))
    table = read_cache(cache)
    # Every activation QuantizeLinear carries scale = amax / 127 of the cache's entry for its input.
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in qdq.graph.initializer}
    checked = 0
    for node in qdq.graph.node:
        if node.op_type == "QuantizeLinear" and node.input[0] in table.amax:
            assert inits[node.input[1]] == pytest.approx(table.amax[node.input[0]] / 127, rel=1e-6)
            checked += 1
    assert checked > 10
    assert not [f for f in lint_model(qdq) if f.severity == "error"]
    x = np.random.default_rng(0).uniform(-1, 1, (2, 3, 48, 192)).astype(np.float32)
    assert np.isfinite(session(qdq).run(None, {"x": x})[0]).all()


def test_cache_for_another_model_is_refused(calibrated, tmp_path):
    model, _ = calibrated
    other = tmp_path / "other.cache"
    write_cache(CalibrationTable(amax={"conv_out_a": 1.0, "conv_out_b": 2.0}, algorithm="entropy"), other, "10.16.1")
    result = _quantize(str(model), "--cache", str(other), "-o", str(tmp_path / "q.onnx"))
    assert result.exit_code == EXIT_BAD_INPUT
    assert "none of the model's activation tensors" in result.stderr and "another model" in result.stderr
    assert not (tmp_path / "q.onnx").exists()


def test_trt_written_cache_without_sidecar_migrates_with_warnings(calibrated, tmp_path):
    """A cache as TensorRT 10 writes it: no sidecar, plus network-internal tensor names."""
    model, cache = calibrated
    table = read_cache(cache)
    amax = dict(table.amax)
    amax["(Unnamed Layer* 3) [Constant]_output"] = 1.5
    legacy = tmp_path / "legacy.cache"
    write_cache(CalibrationTable(amax=amax, algorithm="entropy"), legacy, "10.16.1")
    legacy.with_name("legacy.cache.json").unlink(missing_ok=True)
    out = tmp_path / "migrated.onnx"
    result = _quantize(str(model), "--cache", str(legacy), "-o", str(out))
    assert result.exit_code == 0, result.output
    assert "no provenance" in result.stderr
    assert "1 of" in result.stderr and "TensorRT-internal names" in result.stderr
    assert out.exists()


def test_changed_weights_need_force(calibrated, tmp_path):
    model, cache = calibrated
    changed = onnx.load(str(model))
    # PaddlePaddle exports keep weights in Constant nodes: scale the first 4-D one.
    weight = next(a.t for n in changed.graph.node if n.op_type == "Constant" for a in n.attribute
                  if len(a.t.dims) == 4)
    array = onnx.numpy_helper.to_array(weight) * 1.01
    weight.CopyFrom(onnx.numpy_helper.from_array(array.astype(np.float32), weight.name))
    path = tmp_path / "changed.onnx"
    onnx.save(changed, str(path))
    result = _quantize(str(path), "--cache", str(cache), "-o", str(tmp_path / "q.onnx"))
    assert result.exit_code == EXIT_BAD_INPUT and "weights changed" in result.stderr
    assert not (tmp_path / "q.onnx").exists()
    forced = _quantize(str(path), "--cache", str(cache), "-o", str(tmp_path / "q.onnx"), "--force")
    assert forced.exit_code == 0, forced.output
    assert (tmp_path / "q.onnx").exists()


def test_fp8_option(calibrated, tmp_path):
    model, cache = calibrated
    out = tmp_path / "fp8.onnx"
    result = _quantize(str(model), "--cache", str(cache), "-o", str(out), "--precision", "fp8")
    assert result.exit_code == 0, result.output
    qdq = onnx.load(str(out))
    assert qdq.opset_import[0].version >= 19
    zero_points = [t for t in qdq.graph.initializer if t.data_type == onnx.TensorProto.FLOAT8E4M3FN]
    assert zero_points
