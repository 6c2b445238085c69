"""tests/check_report.py, which the GPU workflow runs on the quick-start build, tells good reports from bad."""

from __future__ import annotations

import json

from tests import check_report


def _write(folder, *, engine: bool, status="passed", sqnr=10.2):
    folder.mkdir(parents=True, exist_ok=True)
    artifacts = {"qdq_model": str(folder / "m.qdq.onnx")}
    if engine:
        (folder / "m.engine").write_bytes(b"ENGINE")
        (folder / "m.engine.json").write_text("{}")
        artifacts["engine"] = str(folder / "m.engine")
    data = {"status": status, "artifacts": artifacts,
            "skipped": [] if engine else [{"step": "engine", "reason": "TensorRT is not installed"}],
            "comparison": {"candidate": artifacts.get("engine", artifacts["qdq_model"]),
                           "candidate_kind": "engine" if engine else "onnx", "outputs": {"y": {"sqnr_db": sqnr}}}}
    (folder / "report.json").write_text(json.dumps(data))
    return folder


def test_engine_report_passes_and_cpu_report_fails_the_engine_check(tmp_path, capsys):
    assert check_report.main([str(_write(tmp_path / "gpu", engine=True)), "--engine"]) == 0
    assert "report ok" in capsys.readouterr().out
    cpu = _write(tmp_path / "cpu", engine=False)
    assert check_report.main([str(cpu)]) == 0
    found = check_report.problems(cpu, engine=True)
    assert any("no engine artifact" in p for p in found) and any("skipped" in p for p in found)


def test_missing_verdict_sidecar_or_sqnr_fail(tmp_path):
    unchecked = _write(tmp_path / "a", engine=True, status="unchecked", sqnr=float("nan"))
    found = check_report.problems(unchecked, engine=True)
    assert any("'unchecked'" in p for p in found) and any("not finite" in p for p in found)
    no_sidecar = _write(tmp_path / "b", engine=True)
    (no_sidecar / "m.engine.json").unlink()
    assert any("no sidecar" in p for p in check_report.problems(no_sidecar, engine=True))
    missing = tmp_path / "none"
    assert check_report.problems(missing, engine=True) == [f"{missing / 'report.json'} does not exist"]
