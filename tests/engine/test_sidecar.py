"""The engine's JSON sidecar."""

from __future__ import annotations

import json
from pathlib import Path

from trtq._version import __version__
from trtq.engine import DeviceInfo, EngineInfo, ShapeRange, sidecar_dict, sidecar_path, write_sidecar
from trtq.onnx_model.model import ModelFingerprint


def _info(tmp_path: Path, **changes) -> EngineInfo:
    fields = dict(
        engine_path=tmp_path / "model.engine", source_model=tmp_path / "model.qdq.onnx", trt_version="10.16.1.11",
        mode="implicit", precision="int8", build_seconds=12.34567,
        profiles=(ShapeRange("x", (1, 3, 8, 8), (4, 3, 8, 8), (8, 3, 8, 8)),),
        fingerprint=ModelFingerprint("g" * 64, "w" * 64), device=DeviceInfo("Tesla T4", "7.5"),
        fp16_fallback=True, workspace_mb=2048, timing_cache=tmp_path / "timing.cache", timing_cache_loaded=True,
        calibration={"kind": "entropy", "batches": 0, "batches_skipped": 0, "cache_used": True,
                     "cache_written": False},
    )
    fields.update(changes)
    return EngineInfo(**fields)


def test_sidecar_path_keeps_the_engine_name():
    assert sidecar_path("out/model.engine") == Path("out/model.engine.json")
    assert sidecar_path(Path("m.plan")).name == "m.plan.json"


def test_sidecar_dict_records_what_the_engine_depends_on(tmp_path):
    d = sidecar_dict(_info(tmp_path))
    assert d == {
        "engine": "model.engine",
        "trtq_version": __version__,
        "tensorrt_version": "10.16.1.11",
        "device": {"name": "Tesla T4", "compute_capability": "7.5"},
        "mode": "implicit",
        "precision": "int8",
        "fp16_fallback": True,
        "sparse_weights": False,
        "source_model": {"path": str(tmp_path / "model.qdq.onnx"),
                         "fingerprint": {"graph": "g" * 64, "weights": "w" * 64}},
        "calibration": {"kind": "entropy", "batches": 0, "batches_skipped": 0, "cache_used": True,
                        "cache_written": False},
        "timing_cache": {"path": str(tmp_path / "timing.cache"), "loaded": True},
        "workspace_mb": 2048,
        "build_seconds": 12.346,
        "profiles": [{"input": "x", "min": [1, 3, 8, 8], "opt": [4, 3, 8, 8], "max": [8, 3, 8, 8]}],
    }


def test_sidecar_without_optional_parts(tmp_path):
    d = sidecar_dict(_info(tmp_path, fingerprint=None, device=None, timing_cache=None, calibration=None, profiles=()))
    assert d["source_model"]["fingerprint"] is None and d["device"] is None
    assert d["timing_cache"] is None and d["calibration"] is None and d["profiles"] == []


def test_write_sidecar_is_json_next_to_the_engine(tmp_path):
    info = _info(tmp_path)
    path = write_sidecar(info)
    assert path == tmp_path / "model.engine.json"
    assert json.loads(path.read_text()) == sidecar_dict(info)
    assert [p.name for p in tmp_path.iterdir()] == ["model.engine.json"]  # no temp file left
