"""The engine step of `trtq build` with the TensorRT stand-in: profiles from the data, explicit and implicit."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from tests.engine.models import conv_classifier
from tests.fake_trt import FakeCudart, fake_trt
from trtq.cache import CalibrationTable, write_cache
from trtq.config import load_config
from trtq.data import DataReader
from trtq.data.source import Source
from trtq.onnx_model.model import fingerprint, graph_inputs, save_model
from trtq.pipeline.engine_stage import build_pipeline_engine, observed_shapes


class _Arrays(Source):
    """Five 3x16x16 samples in memory."""

    def __init__(self) -> None:
        rng = np.random.default_rng(0)
        self.samples = [rng.standard_normal((3, 16, 16)).astype(np.float32) for _ in range(5)]

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def keys(self) -> list[str]:
        return [f"s{i}" for i in range(len(self.samples))]

    @property
    def description(self) -> str:
        return "5 arrays"

    def load(self, index: int) -> dict[str, np.ndarray]:
        return {"x": self.samples[index]}


@pytest.fixture()
def setup(tmp_path, monkeypatch):
    model = conv_classifier()
    path = tmp_path / "m.onnx"
    save_model(model, path)
    reader = DataReader(_Arrays(), None, batch_size=4, workers=0)
    cache = tmp_path / "m.cache"
    write_cache(CalibrationTable(amax={"x": 3.0}, algorithm="entropy"), cache, "10.16.1")
    monkeypatch.setitem(sys.modules, "cuda.bindings.runtime", FakeCudart())
    return model, path, reader, cache


def test_profile_covers_batch_one_to_the_batch_size(setup):
    model, _, reader, _ = setup
    shapes = observed_shapes(reader, graph_inputs(model))  # nothing read yet: one decoding pass records them
    # five samples in batches of 4: shapes 4 and 1 from the data (batch 1 is there already)
    assert sorted(shapes["x"]) == [(1, 3, 16, 16), (4, 3, 16, 16)]


def test_dynamic_batch_axis_gets_batch_one_even_when_the_data_has_none(setup):
    model, _, _, _ = setup
    reader = DataReader(_Arrays(), None, batch_size=5, workers=0)
    list(reader)  # as calibration would
    assert sorted(observed_shapes(reader, graph_inputs(model))["x"]) == [(1, 3, 16, 16), (5, 3, 16, 16)]


def test_explicit_build_uses_the_qdq_model_and_the_derived_profile(setup, monkeypatch, tmp_path):
    model, path, reader, cache = setup
    trt = fake_trt("11.4.0.106")
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    info = build_pipeline_engine(load_config(), path, path, tmp_path / "m.engine", inputs=graph_inputs(model),
                                 calib=reader, cache_path=cache, fingerprint=fingerprint(model))
    _, config = trt.built[0]
    assert config.profiles[0].shapes == {"x": ((1, 3, 16, 16), (4, 3, 16, 16), (4, 3, 16, 16))}  # min, opt, max
    assert info.mode == "explicit" and (tmp_path / "m.engine").exists()


def test_implicit_build_hands_trtq_cache_to_tensorrt(setup, monkeypatch, tmp_path):
    model, path, reader, cache = setup
    trt = fake_trt("10.16.1.11")
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    before = cache.read_bytes()
    info = build_pipeline_engine(load_config(overrides={"implicit": True}), path, path, tmp_path / "m.engine",
                                 inputs=graph_inputs(model), calib=reader, cache_path=cache,
                                 fingerprint=fingerprint(model))
    assert info.mode == "implicit"
    assert info.calibration["cache_used"] and info.calibration["batches"] == 0
    assert cache.read_bytes() == before
