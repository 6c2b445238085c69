"""--memory-budget: batches split into micro-batches give byte-identical caches and statistics."""

from __future__ import annotations

import logging

import numpy as np
from click.testing import CliRunner

from trtq.calibration.microbatch import MIB, MicroBatcher
from trtq.calibrators import load_observers
from trtq.cli import main
from trtq.data import Batch


def _calibrate(model, photos, out, *extra):
    args = ["-q", "calibrate", str(model), "--calib", str(photos), "--cache", str(out / "c.cache"),
            "--save-stats", str(out / "s.npz"), "-c", "ppocr", "--height", "48", "--width", "192", *extra]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    return (out / "c.cache").read_bytes(), load_observers(out / "s.npz")[0]


def test_micro_batches_and_batch_sizes_give_identical_results(ocr_classifier, photo_dir, tmp_path, caplog):
    # ema: its moving average is the one statistic that sees batches; the histograms behind every
    # other method are in the saved statistics, so equal statistics mean equal caches for all methods.
    runs = {}
    for label, extra in {"batch 5": ("--batch-size", "5"), "batch 1": ("--batch-size", "1"),
                         "batch 5, budget 1 MiB": ("--batch-size", "5", "--memory-budget", "1")}.items():
        out = tmp_path / label.replace(" ", "_").replace(",", "")
        out.mkdir()
        with caplog.at_level(logging.INFO, logger="trtq.calibration.microbatch"):
            caplog.clear()
            runs[label] = _calibrate(ocr_classifier, photo_dir, out, "--method", "ema", *extra)
            split = any("micro-batches of 1" in r.getMessage() for r in caplog.records)
        assert split == label.endswith("MiB"), label  # only the small budget splits, and says so
    cache, stats = runs["batch 5"]
    assert runs["batch 5, budget 1 MiB"][0] == cache
    for label, (_, other_stats) in runs.items():
        assert list(other_stats) == list(stats)
        for name in stats:
            mine, theirs = stats[name].to_dict(), other_stats[name].to_dict()
            if label == "batch 1":  # the moving average depends on the batches by design
                mine, theirs = ({k: v for k, v in d.items() if not k.startswith("ema.")} for d in (mine, theirs))
            assert mine.keys() == theirs.keys()
            for key in mine:
                np.testing.assert_array_equal(mine[key], theirs[key], err_msg=f"{label} {name} {key}")


def test_part_sizes_follow_the_measured_bytes_per_sample():
    feeds = {"x": np.zeros((10, 3), dtype=np.float32)}
    batch = Batch(feeds, [f"s{i}" for i in range(10)])
    parts = MicroBatcher(8 * MIB)
    first = next(parts.split(batch))
    assert len(first.batch.keys) == 1 and not first.batch_end  # the first sample measures
    parts.measured([np.zeros(MIB // 4, dtype=np.uint8)], 1)  # 256 KiB per sample: at most 8 per part, 4 alive
    sizes = [(len(p.batch.keys), p.batch_end) for p in parts.split(batch)]
    assert sizes == [(5, False), (5, True)]  # even parts
    assert [len(p.batch.keys) for p in MicroBatcher(None).split(batch)] == [10]
    assert [p.batch.feeds["x"].shape[0] for p in parts.split(Batch(feeds, []))] == [5, 5]
    parts.measured([np.zeros(MIB, dtype=np.uint8)], 1)  # larger samples later: smaller parts
    assert [len(p.batch.keys) for p in parts.split(batch)] == [2, 2, 2, 2, 2]
