"""Plots are PNGs next to the report when matplotlib is installed, one info line when it is not."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from trtq.report import Report, write_report
from trtq.report import plots as plots_module
from trtq.report.plots import plot_layer_errors, plot_output_errors, plot_ranges
from trtq.report.report import add_plots

_COMPARISON = {
    "reference": "ref.onnx", "candidate": "cand.onnx", "candidate_kind": "onnx", "samples": 4, "batches": 1,
    "seconds": 0.1, "warnings": [],
    "outputs": {"prob": {"sqnr_db": 24.5}, "boxes": {"sqnr_db": "inf"}},
    "per_layer": [{"tensor": f"t{i}", "op_type": "Conv", "sqnr_db": 5.0 + i, "cosine": 0.9} for i in range(40)],
}


def _report() -> Report:
    report = Report(command="compare")
    report.ranges = {"x": (2.0, 2.0), "clipped": (0.1, 3.0)}
    report.comparison = _COMPARISON
    return report


def test_plots_are_written_and_recorded_as_artifacts(tmp_path):
    pytest.importorskip("matplotlib")
    report = _report()
    written = add_plots(report, tmp_path)
    assert [p.name for p in written] == ["ranges.png", "output_sqnr.png", "layer_sqnr.png"]
    for path in written:
        with Image.open(path) as image:
            assert image.format == "PNG" and image.width > 200 and image.height > 200
    assert report.artifacts["plot_layer_sqnr"] == str(tmp_path / "layer_sqnr.png")
    assert report.info == []


def test_nothing_plottable_gives_no_file(tmp_path):
    pytest.importorskip("matplotlib")
    assert plot_ranges({"x": (0.0, 0.0)}, tmp_path / "r.png") is None
    assert plot_output_errors({"y": {"sqnr_db": "inf"}}, tmp_path / "o.png") is None
    assert plot_layer_errors([], tmp_path / "l.png") is None
    assert list(tmp_path.iterdir()) == []


def test_missing_matplotlib_is_one_info_line_not_an_error(tmp_path, monkeypatch):
    monkeypatch.setattr(plots_module._lazy, "is_available", lambda name: name != "matplotlib")
    report = Report(command="build")
    report.ranges = {"x": (2.0, 2.0)}
    paths = write_report(report, tmp_path)
    assert [p.name for p in paths] == ["report.json", "report.md"]
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["info"] == ["plots not written: matplotlib is not installed (pip install 'trtq[plot]')"]
    assert "matplotlib is not installed" in (tmp_path / "report.md").read_text()
