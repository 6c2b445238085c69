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
    # One output with a finite SQNR and no gate: its bar chart would say nothing the table does not.
    assert [p.name for p in written] == ["layer_sqnr.png", "ranges.png"]
    for path in written:
        with Image.open(path) as image:
            assert image.format == "PNG" and image.width > 200 and image.height > 200
    assert report.artifacts["plot_layer_sqnr"] == str(tmp_path / "layer_sqnr.png")
    assert report.info == []


@pytest.fixture()
def figures(monkeypatch):
    """The matplotlib figures the plots draw, by file name (they are still written)."""
    pytest.importorskip("matplotlib")
    drawn = {}
    save = plots_module._save

    def keep(figure, path):
        drawn[path.name] = figure
        return save(figure, path)

    monkeypatch.setattr(plots_module, "_save", keep)
    return drawn


def _gate_lines(axes):
    return [line for line in axes.get_lines() if line.get_label() == "gate --min-sqnr 20 dB"]


def test_the_gate_is_drawn_where_sqnr_is(tmp_path, figures):
    report = _report()
    report.comparison = {**_COMPARISON, "outputs": {"prob": {"sqnr_db": 24.5}, "boxes": {"sqnr_db": 12.0}}}
    report.gates = {"thresholds": {"min_sqnr": 20.0}, "passed": False, "failures": []}
    report.accuracy = {"sensitivity": [
        {"node": "conv_a", "op_type": "Conv", "alone_sqnr_db": 31.0, "local_sqnr_db": 25.0},
        {"node": "gemm_b", "op_type": "Gemm", "alone_sqnr_db": 14.0, "local_sqnr_db": 9.0},
        {"node": "conv_c", "op_type": "Conv", "alone_sqnr_db": None, "local_sqnr_db": 30.0},
    ], "fallback": {"excluded": ["gemm_b"], "passed": True, "steps": [], "sensitivity": []}}
    written = add_plots(report, tmp_path)
    assert [p.name for p in written] == ["layer_sensitivity.png", "layer_sqnr.png", "ranges.png", "output_sqnr.png"]
    for name in ("layer_sensitivity.png", "layer_sqnr.png", "output_sqnr.png"):
        (axes,) = figures[name].axes
        assert len(_gate_lines(axes)) == 1, name
    # Sensitivity: the layers measured alone, the most sensitive on top, named by layer and op.
    (axes,) = figures["layer_sensitivity.png"].axes
    labels = [t.get_text() for t in axes.get_yticklabels()]
    assert labels == ["conv_a (Conv)", "gemm_b (Gemm)"]  # bottom to top
    assert "alone SQNR" in axes.get_xlabel()
    # The layer the fallback left in float stands out, and the legend says why.
    top, bottom = axes.patches[1].get_facecolor(), axes.patches[0].get_facecolor()
    assert top != bottom
    assert "left in float (--fallback)" in [t.get_text() for t in axes.get_legend().get_texts()]


def test_the_range_plot_colours_by_method_and_names_the_clipped_tensors_in_bars(tmp_path, figures):
    ranges = {f"t{i}": (1.0 + i, 1.0 + i) for i in range(20)}  # a cluster on the diagonal
    ranges |= {"clipped_most": (0.5, 5.0), "clipped": (2.0, 4.0)}
    methods = {name: ("entropy" if name.startswith("clipped") else "percentile") for name in ranges}
    assert plots_module.plot_ranges(ranges, tmp_path / "r.png", methods) == tmp_path / "r.png"
    scatter, bars = figures["r.png"].axes
    assert not scatter.texts  # no annotations to pile up on a cluster
    assert sorted(t.get_text() for t in scatter.get_legend().get_texts()) == [
        "amax = observed max", "entropy (2)", "percentile (20)"]
    labels = [t.get_text() for t in bars.get_yticklabels()]
    assert len(labels) == plots_module.LABELLED and labels[-2:] == ["clipped", "clipped_most"]  # worst on top
    colours = {tuple(p.get_facecolor()) for p in bars.patches[-2:]}
    assert len(colours) == 1 and colours != {tuple(bars.patches[0].get_facecolor())}


def test_long_names_are_shortened_in_the_middle():
    name = "backbone/stage_3/block_7/conv_2/BatchNormalization_output_0"
    short = plots_module.short(name)
    assert len(short) == plots_module.NAME_CHARS and short.startswith("backbone/") and short.endswith("output_0")


def test_a_plot_of_an_earlier_run_without_data_now_is_removed(tmp_path):
    pytest.importorskip("matplotlib")
    stale = tmp_path / "ranges.png"
    stale.write_bytes(b"an earlier run's picture")
    report = Report(command="build")  # a reused cache: no statistics, so no ranges
    report.comparison = _COMPARISON
    add_plots(report, tmp_path)
    assert not stale.exists() and "plot_ranges" not in report.artifacts
    assert report.info == [f"removed {stale} (chosen ranges vs observed max) of an earlier run: no calibration "
                           "statistics in this run (the cache was reused)"]


def test_nothing_plottable_gives_no_file(tmp_path):
    pytest.importorskip("matplotlib")
    assert plot_ranges({"x": (0.0, 0.0)}, tmp_path / "r.png") is None
    assert plot_output_errors({"y": {"sqnr_db": "inf"}}, tmp_path / "o.png") is None
    assert plot_output_errors({"y": {"sqnr_db": 12.0}}, tmp_path / "o.png") is None  # one bar, no gate
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
