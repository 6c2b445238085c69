"""The public API (trtq.build/calibrate/quantize/compare) with the data sources people already have:
feed dicts, a function yielding them, an ONNX Runtime CalibrationDataReader and a loader script."""

from __future__ import annotations

import dataclasses
import textwrap

import numpy as np
import pytest
from click.testing import CliRunner
from onnxruntime.quantization import CalibrationDataReader

import trtq
from tests.image_models import SIZE, conv_classifier, save
from trtq.cache import read_cache
from trtq.cli import main
from trtq.config import CalibrationConfig, Config, apply_mapping
from trtq.errors import DataError

RNG_SEED = 5


def _feeds(count: int = 4, batch: int = 2, seed: int = RNG_SEED) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [{"x": rng.normal(0, 1, (batch, 3, SIZE, SIZE)).astype(np.float32)} for _ in range(count)]


class _Reader(CalibrationDataReader):
    """An ONNX Runtime calibration reader over fixed batches, as users write them for quantize_static."""

    def __init__(self, feeds):
        self.feeds, self.pos, self.rewinds = feeds, 0, 0

    def get_next(self):
        if self.pos == len(self.feeds):
            return None
        self.pos += 1
        return self.feeds[self.pos - 1]

    def rewind(self):
        self.pos, self.rewinds = 0, self.rewinds + 1


@pytest.fixture()
def model(tmp_path):
    return save(conv_classifier(), tmp_path / "conv.onnx")


def _config(tmp_path, method: str = "minmax") -> Config:
    return Config(calibration=CalibrationConfig(method=method, cache=str(tmp_path / "conv.cache")))


def test_calibrate_takes_feed_dicts_and_their_ranges_are_exact(model, tmp_path):
    feeds = _feeds()
    outcome = trtq.calibrate(model, _config(tmp_path), data=feeds)
    table = read_cache(tmp_path / "conv.cache")
    assert not outcome.reused and outcome.cache_path == tmp_path / "conv.cache"
    assert table.provenance.num_samples == 8
    # minmax of the input is max |x| over every batch (float32 in the cache).
    assert table.amax["x"] == pytest.approx(max(float(np.abs(f["x"]).max()) for f in feeds), rel=1e-6)
    # A stream cannot be checked against the cache before it is read: the cache is remade, saying why.
    again = trtq.calibrate(model, _config(tmp_path), data=feeds)
    assert not again.reused and "stream" in again.not_reused
    assert read_cache(tmp_path / "conv.cache").amax == table.amax


def test_an_onnxruntime_reader_and_a_function_give_the_same_cache_as_the_feed_dicts(model, tmp_path):
    trtq.calibrate(model, _config(tmp_path / "a"), data=_feeds())
    reader = _Reader(_feeds())
    trtq.calibrate(model, _config(tmp_path / "b"), data=reader)
    calls = []

    def load():
        calls.append(1)
        yield from _feeds()

    trtq.calibrate(model, _config(tmp_path / "c"), data=load)
    a, b, c = (read_cache(tmp_path / d / "conv.cache").amax for d in "abc")
    assert a == b == c and len(calls) == 1


def test_quantize_and_compare_through_the_api(model, tmp_path):
    trtq.calibrate(model, _config(tmp_path, "entropy"), data=_feeds())
    out = tmp_path / "conv.qdq.onnx"
    result = trtq.quantize(model, _config(tmp_path, "entropy"), output=out)
    assert result.path == out and out.is_file()
    comparison = trtq.compare(model, out, _feeds(2, seed=9))
    assert comparison.samples == 4
    assert 10 < comparison.outputs["prob"].sqnr_db < 80


def test_build_takes_a_reader_and_held_out_feed_dicts(model, tmp_path):
    config = dataclasses.replace(_config(tmp_path), out_dir=str(tmp_path / "out"))
    reader = _Reader(_feeds())
    outcome = trtq.build(model, config, data=reader, eval_data=_feeds(2, seed=11))
    assert outcome.qdq_path.is_file() and outcome.cache_path.is_file()
    assert outcome.comparison is not None and outcome.comparison.samples == 4
    report = outcome.report.to_dict()
    assert report["provenance"]["data"].startswith("calibration: calibration data (_Reader)")
    assert (tmp_path / "out" / "report.json").is_file()


LOADER = '''
import numpy as np

def load_data():
    rng = np.random.default_rng(5)
    for _ in range(4):
        yield {"x": rng.normal(0, 1, (2, 3, 32, 32)).astype(np.float32)}
'''


def test_a_loader_script_works_from_the_cli_and_the_api(model, tmp_path):
    script = tmp_path / "loader.py"
    script.write_text(textwrap.dedent(LOADER))
    cache = tmp_path / "cli.cache"
    result = CliRunner().invoke(main, ["-q", "calibrate", str(model), "--calib", str(script), "--cache", str(cache),
                                       "--method", "minmax"])
    assert result.exit_code == 0, result.output
    trtq.calibrate(model, _config(tmp_path), data=_feeds())  # the same batches as feed dicts
    assert read_cache(cache).amax == read_cache(tmp_path / "conv.cache").amax
    api = trtq.calibrate(model, apply_mapping(_config(tmp_path / "api"), {"data": {"calib": str(script)}}))
    assert read_cache(api.cache_path).amax == read_cache(cache).amax


def test_bad_data_sources_are_one_clear_error(model, tmp_path):
    with pytest.raises(DataError, match="cannot read data from a int"):
        trtq.calibrate(model, _config(tmp_path), data=3)
    with pytest.raises(DataError, match="not a feed dict"):
        trtq.calibrate(model, _config(tmp_path), data=[np.zeros(3)])
    script = tmp_path / "empty.py"
    script.write_text("x = 1\n")
    result = CliRunner().invoke(main, ["calibrate", str(model), "--calib", str(script), "--cache",
                                       str(tmp_path / "c.cache")])
    assert result.exit_code != 0 and result.output.startswith("error:") and "load_data()" in result.output
    assert not (tmp_path / "c.cache").exists()
