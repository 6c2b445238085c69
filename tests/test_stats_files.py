"""trtq.calibration.stats_files: statistics files with their record, checked against a model and merged."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from trtq.calibration.stats_files import StatsRecord, load_stats, merge_records, save_stats
from trtq.calibrators import HistogramObserver, TensorStats, load_observers, save_observers
from trtq.errors import CacheError, ConfigError
from trtq.onnx_model.model import ModelFingerprint

FP = ModelFingerprint(graph="g" * 64, weights="w" * 64)
NAMES = ["x", "conv/out:0", "y"]


def _batches(seed: int, scale: float = 1.0) -> dict[str, list[np.ndarray]]:
    """Three seeded batches per tensor, each tensor with its own spread."""
    rng = np.random.default_rng(seed)
    return {name: [rng.normal(0, scale * (i + 1), (4, 10)).astype(np.float32) for _ in range(3)]
            for i, name in enumerate(NAMES)}


def _stats(seed: int, scale: float = 1.0, ema: float | None = None) -> dict[str, TensorStats]:
    stats = {}
    for name, batches in _batches(seed, scale).items():
        stats[name] = TensorStats(num_bins=64, ema_constant=ema)
        for batch in batches:
            stats[name].update(batch)
    return stats


def _record(n: int, data: str | None = "d" * 64) -> StatsRecord:
    return StatsRecord(num_samples=n, data_sha256=data, model_graph_sha256=FP.graph, model_weights_sha256=FP.weights,
                       onnxruntime_version="1.31.0")


def test_record_round_trips_through_the_file(tmp_path):
    path = tmp_path / "sub" / "s.npz"
    save_stats(path, _stats(0), _record(12))
    loaded = load_stats([path], NAMES, fingerprint=FP)
    assert loaded.record == _record(12)
    assert loaded.num_bins == 64 and loaded.warnings == []
    assert list(loaded.stats) == NAMES
    assert [p.name for p in path.parent.iterdir()] == ["s.npz"]  # no temporary file left


def test_merge_sums_counts_and_is_order_independent(tmp_path):
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    save_stats(a, _stats(1), _record(5, "1" * 64))
    save_stats(b, _stats(2, scale=3.0), _record(7, "2" * 64))
    ab = load_stats([a, b], NAMES, fingerprint=FP)
    ba = load_stats([b, a], NAMES, fingerprint=FP)
    assert ab.record.num_samples == 12 == ba.record.num_samples
    assert ab.record.data_sha256 == ba.record.data_sha256 == hashlib.sha256(
        ("1" * 64 + "\n" + "2" * 64).encode()).hexdigest()
    first, second = _batches(1), _batches(2, scale=3.0)
    for name in NAMES:
        # The merged histogram is the one of all values seen in one pass.
        one_pass = HistogramObserver(64)
        one_pass.update(np.concatenate([*first[name], *second[name]]))
        assert np.array_equal(ab.stats[name].hist.bins, one_pass.bins)
        assert np.array_equal(ba.stats[name].hist.bins, one_pass.bins)
        assert ab.stats[name].hist.exponent == one_pass.exponent
        assert ab.stats[name].count == 2 * 3 * 40


def test_file_without_metadata_loads_with_a_warning(tmp_path):
    # Written by save_observers directly (or an older trtq): no record at all.
    path = tmp_path / "bare.npz"
    save_observers(path, _stats(0))
    loaded = load_stats([path], NAMES, fingerprint=FP)
    assert loaded.record.num_samples is None and loaded.record.data_sha256 is None
    assert loaded.warnings == [f"statistics file {path} does not record its sample count; "
                               "the provenance counts it as 0"]


def test_unknown_count_of_one_file_makes_the_sum_unknown():
    record, warnings = merge_records([_record(3), StatsRecord()], ["a", "b"])
    assert record.num_samples is None and record.data_sha256 is None
    assert len(warnings) == 1 and "statistics file b" in warnings[0]


def test_names_are_checked_both_ways(tmp_path):
    path = tmp_path / "s.npz"
    save_stats(path, _stats(0), _record(1))
    with pytest.raises(CacheError, match=r"lacks 1 of the model's 4 calibrated tensors: 'z'"):
        load_stats([path], [*NAMES, "z"], fingerprint=FP)
    with pytest.raises(CacheError, match=r"1 of its 3 tensors are not calibrated in the model: 'conv/out:0'"):
        load_stats([path], ["x", "y"], fingerprint=FP)


def test_bad_files_are_cache_errors_naming_the_file(tmp_path):
    not_stats = tmp_path / "plain.npz"
    np.savez(not_stats, a=np.zeros(3))
    with pytest.raises(CacheError, match=f"statistics file {not_stats} is malformed"):
        load_stats([not_stats], NAMES, fingerprint=FP)
    histograms = tmp_path / "hist.npz"
    save_observers(histograms, {name: s.hist for name, s in _stats(0).items()})
    with pytest.raises(CacheError, match="holds a HistogramObserver for tensor 'x'"):
        load_stats([histograms], NAMES, fingerprint=FP)
    bad_count = tmp_path / "count.npz"
    save_observers(bad_count, _stats(0), {"num_samples": "-3"})
    with pytest.raises(CacheError, match="num_samples '-3'"):
        load_stats([bad_count], NAMES, fingerprint=FP)
    with pytest.raises(ConfigError):
        load_stats([], NAMES, fingerprint=FP)


def test_files_that_cannot_merge_are_refused(tmp_path):
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    save_stats(a, _stats(0), _record(1))
    save_stats(b, _stats(0, ema=0.01), _record(1))
    with pytest.raises(CacheError, match=f"statistics file {b} cannot be merged with {a}"):
        load_stats([a, b], NAMES, fingerprint=FP)


def test_other_model_is_refused_unless_forced(tmp_path):
    path = tmp_path / "s.npz"
    save_stats(path, _stats(0), _record(1))
    other = ModelFingerprint(graph=FP.graph, weights="v" * 64)
    with pytest.raises(CacheError, match=r"collected on another model \(its weights changed\)"):
        load_stats([path], NAMES, fingerprint=other)
    forced = load_stats([path], NAMES, fingerprint=other, force=True)
    assert any("used anyway (--force)" in w for w in forced.warnings)


def test_saved_file_is_a_plain_observer_file(tmp_path):
    path = tmp_path / "s.npz"
    save_stats(path, _stats(0), _record(9))
    observers, meta = load_observers(path)
    assert list(observers) == NAMES
    assert meta["num_samples"] == "9" and meta["random_data"] == "false"
