"""trtq.pipeline.method_compare and `trtq calibrate --compare-methods`, on real photos.

The library test uses the real PP-OCR direction classifier; the CLI tests a small
classifier built in code, which is quicker to quantize and compare four times.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
from click.testing import CliRunner

from tests.image_models import conv_classifier, image_args, save
from trtq.accuracy import compare_models
from trtq.cache import read_cache
from trtq.cli import main
from trtq.config import load_config
from trtq.data import make_readers
from trtq.errors import EXIT_BAD_INPUT
from trtq.onnx_model.model import graph_inputs, load_model
from trtq.pipeline.calibrate import calibrate
from trtq.pipeline.method_compare import COMPARED_METHODS, compare_methods
from trtq.qdq import quantize_model


def test_every_method_is_compared_and_minmax_matches_a_direct_comparison(ocr_classifier, photo_dir, tmp_path):
    config = load_config(["ppocr"], {"calib": str(photo_dir), "height": 48, "width": 192, "batch_size": 4,
                                     "workers": 0, "method": "minmax", "cache": str(tmp_path / "cmp.cache")})
    comparison = compare_methods(ocr_classifier, config, show_progress=False)
    rows = {row.method: row for row in comparison.rows}
    assert list(rows) == list(COMPARED_METHODS)
    output = "save_infer_model/scale_0.tmp_1"  # the classifier's [N, 2] softmax
    photos = len(list(photo_dir.iterdir()))
    held = math.floor(photos * 0.2 + 0.5)
    assert comparison.eval_samples == held and comparison.calibration.table.provenance.num_samples == photos - held
    for row in rows.values():
        metrics = row.outputs[output]
        assert math.isfinite(metrics.sqnr_db) and metrics.samples == held
        assert 0.0 <= metrics.top1_agreement <= 1.0
    assert [row.method for row in comparison.rows if row.best] == [max(rows, key=lambda m: rows[m].mean_sqnr_db)]

    # Directly: calibrate the same 80% with minmax, build its Q/DQ model, compare on the same 20%.
    model = load_model(ocr_classifier)
    plan = make_readers(config, graph_inputs(model), default_eval_fraction=0.2)
    direct_config = dataclasses.replace(config, calibration=dataclasses.replace(
        config.calibration, cache=str(tmp_path / "direct.cache")))
    direct = calibrate(ocr_classifier, direct_config, show_progress=False, plan=plan)
    assert rows["minmax"].amax == direct.table.amax
    qdq = quantize_model(model, direct.table.amax, config.quantize).model
    result = compare_models(model, qdq, (b.feeds for b in plan.eval), progress=False)
    expected = result.outputs[output]
    got = rows["minmax"].outputs[output]
    assert got.sqnr_db == pytest.approx(expected.sqnr_db, rel=1e-9)
    assert got.cosine == pytest.approx(expected.cosine, rel=1e-12)
    assert got.top1_agreement == expected.top1_agreement
    # The cache written is the one of --method (minmax here), over the calibration split.
    assert (tmp_path / "cmp.cache").read_bytes() == (tmp_path / "direct.cache").read_bytes()


def _cli(model, cache, *extra):
    return CliRunner().invoke(main, ["-q", "calibrate", str(model), "--cache", str(cache), *image_args(),
                                     "--batch-size", "4", "--compare-methods", *extra])


def test_cli_prints_the_table_and_writes_the_cache_of_its_method(photo_dir, tmp_path):
    model = save(conv_classifier(), tmp_path / "conv.onnx")
    cache = tmp_path / "conv.cache"
    result = _cli(model, cache, "--calib", str(photo_dir), "--method", "percentile")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("methods compared on 3 held-out sample(s) of 14 image(s)")
    assert lines[2].split() == ["method", "SQNR", "dB", "cosine", "top-1"]  # one output: no name prefix
    rows = {}  # method -> (marked best, SQNR dB, cosine, top-1 %)
    for line in lines[4:8]:
        method, *cells = line.split()
        best = cells[0] == "*"
        sqnr, cosine, top1 = cells[1:] if best else cells
        rows[method] = (best, float(sqnr), float(cosine), float(top1.rstrip("%")))
    assert list(rows) == list(COMPARED_METHODS)
    assert all(math.isfinite(sqnr) and 0 < cosine <= 1 and 0 <= top1 <= 100 for _, sqnr, cosine, top1 in rows.values())
    best = [m for m, row in rows.items() if row[0]]
    assert len(best) == 1 and rows[best[0]][1] == max(row[1] for row in rows.values())  # equal when rounded
    assert f"* best mean output SQNR: {best[0]}" in result.output
    assert f"wrote {cache} (8 tensors, percentile)" in result.output
    assert read_cache(cache).algorithm == "percentile"


def test_no_held_out_samples_is_a_clear_error(photo_dir, tmp_path):
    model = save(conv_classifier(), tmp_path / "conv.onnx")
    cache = tmp_path / "conv.cache"
    result = _cli(model, cache, "--calib", str(photo_dir), "--eval-fraction", "0")
    assert result.exit_code == EXIT_BAD_INPUT
    assert "--compare-methods needs held-out samples" in result.output and "--eval DATA" in result.output
    assert not cache.exists()


def test_loaded_stats_are_compared_on_eval_data(photo_dir, tmp_path):
    model = save(conv_classifier(), tmp_path / "conv.onnx")
    stats = tmp_path / "conv.npz"
    saved = CliRunner().invoke(main, ["-q", "calibrate", str(model), "--calib", str(photo_dir), "--cache",
                                      str(tmp_path / "a.cache"), *image_args(), "--save-stats", str(stats)])
    assert saved.exit_code == 0, saved.output
    no_data = _cli(model, tmp_path / "b.cache", "--load-stats", str(stats))
    assert no_data.exit_code == EXIT_BAD_INPUT and "give evaluation data with --eval DATA" in no_data.output
    result = _cli(model, tmp_path / "b.cache", "--load-stats", str(stats), "--eval", str(photo_dir))
    assert result.exit_code == 0, result.output
    assert result.output.startswith("methods compared on 14 held-out sample(s)")
    # Statistics of all photos, entropy: the cache equals the one the saving run wrote.
    assert (tmp_path / "b.cache").read_bytes() == (tmp_path / "a.cache").read_bytes()
