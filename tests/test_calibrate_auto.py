"""`--method auto` through calibration: its parameters, the cache header and the sidecar's method counts."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from trtq.cache import ALGORITHMS, Provenance, read_cache
from trtq.calibration import ranges as ranges_module
from trtq.calibration.stats_files import load_stats
from trtq.calibrators import available_methods, compute_amax
from trtq.calibrators.auto import AUTO_CANDIDATES
from trtq.cli import main
from trtq.errors import EXIT_USAGE, CacheError
from trtq.onnx_model.model import fingerprint, load_model


def _args(model, photos, cache, *extra):
    return ["-q", "calibrate", str(model), "--calib", str(photos), "--cache", str(cache),
            "-c", "ppocr", "--height", "48", "--width", "192", "--batch-size", "4", *extra]


def test_every_method_has_a_cache_algorithm_name():
    assert set(available_methods()) <= set(ALGORITHMS)


def test_auto_cache_has_an_entropy2_header_and_records_what_won(ocr_classifier, photo_dir, tmp_path):
    cache, stats = tmp_path / "cls.cache", tmp_path / "cls.npz"
    result = CliRunner().invoke(main, _args(ocr_classifier, photo_dir, cache, "--method", "auto",
                                            "--percentile", "99.9", "--save-stats", str(stats)))
    assert result.exit_code == 0, result.output
    table = read_cache(cache)
    counts = ", ".join(f"{method} {n}" for method, n in table.provenance.method_counts.items())
    assert f"wrote {cache} ({len(table.amax)} tensors, auto ({counts}))" in result.output
    # TensorRT 10 reads a cache only under the header of the calibrator reading it; trtq's implicit
    # builds hand auto's cache to an IInt8EntropyCalibrator2.
    assert cache.read_text().startswith("TRT-101601-EntropyCalibration2\n")
    assert table.algorithm == "auto"
    prov = table.provenance
    assert prov.algorithm_params == {"percentile": 99.9, "tolerance": 0.02}
    assert sum(prov.method_counts.values()) == len(table.amax)
    assert set(prov.method_counts) <= set(AUTO_CANDIDATES)
    sidecar = json.loads(cache.with_name("cls.cache.json").read_text())
    assert sidecar["provenance"]["method_counts"] == prov.method_counts
    shown = CliRunner().invoke(main, ["cache", "show", str(cache)])
    assert "auto chose " + ", ".join(f"{m} for {n}" for m, n in prov.method_counts.items()) in shown.output
    assert f"statistics saved in {stats.resolve()}" in shown.output
    # The ranges are auto's with the configured percentile (float32 in the TensorRT cache).
    observers = load_stats([stats], list(table.amax), fingerprint=fingerprint(load_model(ocr_classifier))).stats
    for name, amax in table.amax.items():
        assert amax == pytest.approx(compute_amax("auto", observers[name], percentile=99.9), rel=1e-6)


def test_auto_is_given_the_configured_percentile(ocr_classifier, photo_dir, tmp_path, monkeypatch):
    seen = []
    real = ranges_module.choose_method

    def spy(stats, **kwargs):
        seen.append(kwargs)
        return real(stats, **kwargs)

    monkeypatch.setattr(ranges_module, "choose_method", spy)
    result = CliRunner().invoke(main, _args(ocr_classifier, photo_dir, tmp_path / "c.cache", "--method", "auto",
                                            "--percentile", "99.5"))
    assert result.exit_code == 0, result.output
    assert len(seen) == len(read_cache(tmp_path / "c.cache").amax) and all(k == {"percentile": 99.5} for k in seen)


def test_auto_refuses_a_bad_percentile_before_running(ocr_classifier, photo_dir, tmp_path):
    cache = tmp_path / "c.cache"
    result = CliRunner().invoke(main, _args(ocr_classifier, photo_dir, cache, "--method", "auto", "--percentile", "0"))
    assert result.exit_code == EXIT_USAGE
    assert result.output.startswith("error: --percentile must be in (0, 100], got 0.0")
    assert not cache.exists()


def test_method_counts_must_be_counts():
    base = Provenance("g", "w", "n", "auto", 1, method_counts={"mse": 3}).to_dict()
    assert Provenance.from_dict(base).method_counts == {"mse": 3}
    for bad in ({"mse": -1}, {"mse": 1.5}, {"mse": True}, [1]):
        with pytest.raises(CacheError, match="'method_counts' must be an object of counts"):
            Provenance.from_dict({**base, "method_counts": bad})

