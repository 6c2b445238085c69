"""trt_runner's errors before any GPU is touched."""

from __future__ import annotations

import sys

import pytest

from trtq.engine import trt_runner
from trtq.errors import MissingDependencyError, ModelError


def test_missing_engine_file(tmp_path):
    with pytest.raises(ModelError, match=r"engine file .*nope\.engine does not exist"):
        trt_runner(tmp_path / "nope.engine")


def test_without_tensorrt(monkeypatch, tmp_path):
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"not used")
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(MissingDependencyError) as info:
        trt_runner(engine)
    assert info.value.hint == "pip install 'trtq[tensorrt]'"
