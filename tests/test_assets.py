"""Tests that download are marked `network` by conftest; a failed download is one clear skip, tried once."""

from __future__ import annotations

import subprocess

import pytest

from tests import assets


def test_a_test_using_an_asset_fixture_is_marked_network(request, ocr_classifier):
    assert request.node.get_closest_marker("network") is not None


def test_a_test_without_downloads_is_not_marked(request):
    assert request.node.get_closest_marker("network") is None


def test_a_failed_download_skips_and_is_not_retried(tmp_path, monkeypatch):
    calls = []

    def offline(cmd, **kwargs):
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution found (offline)")

    monkeypatch.setattr(assets, "CACHE", tmp_path)
    monkeypatch.setattr(assets, "_FAILED", {})
    monkeypatch.setattr(assets.subprocess, "run", offline)
    for _ in range(2):
        with pytest.raises(assets.AssetsUnavailable, match=r"could not be downloaded.*offline") as info:
            assets.ocr_model(assets.OCR_CLASSIFIER)
        assert isinstance(info.value, pytest.skip.Exception)
    assert len(calls) == 1
