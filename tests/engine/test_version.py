"""TensorRT version helpers."""

from __future__ import annotations

import sys

import pytest

from tests.fake_trt import fake_trt
from trtq.engine.version import has_implicit_quantization, parse_version, trt_version
from trtq.errors import ConfigError


@pytest.mark.parametrize(("text", "parts"), [
    ("10.16.1", (10, 16, 1)),
    ("10.16.1.11", (10, 16, 1, 11)),
    ("11.4.0.106", (11, 4, 0, 106)),
    ("8.6.1.post1", (8, 6, 1)),
    ("10.0.0b6", (10, 0, 0)),
    (" v11", (11,)),
])
def test_parse_version(text, parts):
    assert parse_version(text) == parts


@pytest.mark.parametrize("text", ["", "latest", "x10.1"])
def test_parse_version_rejects_non_versions(text):
    with pytest.raises(ConfigError, match="is not a version number"):
        parse_version(text)


def test_implicit_quantization_ends_with_trt11():
    assert has_implicit_quantization("8.6.1")
    assert has_implicit_quantization("10.16.1.11")
    assert has_implicit_quantization((10, 16))
    assert not has_implicit_quantization("11.0.0")
    assert not has_implicit_quantization("11.4.0.106")


def test_trt_version(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    assert trt_version() is None
    monkeypatch.setitem(sys.modules, "tensorrt", fake_trt("10.16.1.11"))
    assert trt_version() == "10.16.1.11"
