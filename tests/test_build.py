"""`trtq build --calib DATA MODEL` end to end on CPU: the real PP-OCR classifier and real photos."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import jsonschema
import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from tests import assets
from tests.qdq.helpers import session
from trtq.cli import main
from trtq.errors import EXIT_BAD_INPUT, EXIT_GATE_FAILED, EXIT_MISSING_DEPENDENCY
from trtq.pipeline.engine_stage import engine_unavailable_reason
from trtq.qdq import lint_model
from trtq.report.report import SCHEMA_PATH

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

CLS = ["-c", "ppocr", "--height", "48", "--width", "192", "--batch-size", "4"]


@pytest.fixture()
def workdir(tmp_path, ocr_classifier):
    """A copy of the classifier and 10 real photos in a fresh folder."""
    shutil.copy(ocr_classifier, tmp_path / "cls.onnx")
    photos = tmp_path / "photos"
    photos.mkdir()
    for path in assets.color_photos()[:10]:
        shutil.copy(path, photos / path.name)
    return tmp_path


def _build(workdir, *extra: str):
    return CliRunner().invoke(main, ["-q", "build", str(workdir / "cls.onnx"), "--calib", str(workdir / "photos"),
                                     *CLS, *extra])


def _report(out) -> dict:
    data = json.loads((out / "report.json").read_text())
    jsonschema.Draft202012Validator(json.loads(SCHEMA_PATH.read_text())).validate(data)
    return data


def engine_here() -> bool:
    """True where TensorRT and a GPU exist: the build then makes and compares an engine."""
    return engine_unavailable_reason() is None


def _check_build(result, out, *, stages=("data", "calibrate", "quantize", "compare")) -> dict:
    """The outcome of a build on either kind of machine: the engine branch where it can be built."""
    data = _report(out)
    if engine_here():
        assert "skipped engine:" not in result.stdout
        assert {s["name"] for s in data["stages"]} == {*stages, "engine"}
        assert not any(s["step"] == "engine" for s in data["skipped"])
        engine = Path(data["artifacts"]["engine"])
        assert engine.is_file() and Path(f"{engine}.json").is_file()
        assert data["comparison"]["candidate"] == str(engine) and data["comparison"]["candidate_kind"] == "engine"
    else:
        assert "skipped engine:" in result.stdout
        assert {s["name"] for s in data["stages"]} == set(stages)
        assert data["skipped"][0]["step"] == "engine" and data["skipped"][0]["reason"]
        assert "engine" not in data["artifacts"]
        assert data["comparison"]["candidate"].endswith(".qdq.onnx")
    return data


def test_build_writes_cache_qdq_model_engine_where_possible_and_report(workdir):
    result = _build(workdir, "--method", "mse")
    assert result.exit_code == 0, result.output
    out = workdir / "cls_trtq"
    data = _check_build(result, out)
    # 10 photos, default eval fraction 0.2: 2 held out and compared, 8 calibrated.
    assert data["provenance"]["calibration_samples"] == 8
    assert data["comparison"]["samples"] == 2
    assert (out / "cls.cache").read_text().startswith("TRT-")
    qdq = onnx.load(str(out / "cls.qdq.onnx"))
    assert sum(n.op_type == "QuantizeLinear" for n in qdq.graph.node) > 50
    assert not [f for f in lint_model(qdq) if f.severity == "error"]
    # The report's SQNR is the SQNR of the Q/DQ model's outputs on the held-out samples.
    x = np.random.default_rng(0).uniform(-1, 1, (2, 3, 48, 192)).astype(np.float32)
    assert np.isfinite(session(qdq).run(None, {"x": x})[0]).all()
    sqnr = next(iter(data["comparison"]["outputs"].values()))["sqnr_db"]
    assert sqnr > 10
    assert data["ranges"] and all(r["amax"] <= r["observed_max"] * (1 + 1e-6) for r in data["ranges"].values())


def test_second_build_reuses_the_cache(workdir):
    assert _build(workdir).exit_code == 0
    cache = workdir / "cls_trtq" / "cls.cache"
    before = cache.read_bytes()
    again = _build(workdir)
    assert again.exit_code == 0, again.output
    data = _report(workdir / "cls_trtq")
    assert data["provenance"]["cache_reused"] is True
    assert "calibrate" in {s["name"] for s in data["stages"]}
    assert cache.read_bytes() == before


def test_failed_gate_exits_1_and_still_writes_the_report(workdir):
    result = _build(workdir, "--min-sqnr", "200", "-o", str(workdir / "out"))
    assert result.exit_code == EXIT_GATE_FAILED
    assert "sqnr" in result.stderr.lower() and "200" in result.stderr
    data = _report(workdir / "out")
    assert data["status"] == "failed" and data["gates"]["failures"]


def test_require_engine_fails_before_any_work_where_no_engine_can_be_built(workdir):
    result = _build(workdir, "--require-engine")
    if engine_here():
        assert result.exit_code == 0, result.output
        _check_build(result, workdir / "cls_trtq")
        return
    assert result.exit_code == EXIT_MISSING_DEPENDENCY
    assert result.stderr.startswith("error: --require-engine") and "Traceback" not in result.output
    assert not (workdir / "cls_trtq").exists()


def test_no_held_out_samples_skips_compare(workdir):
    result = _build(workdir, "--eval-fraction", "0")
    assert result.exit_code == 0, result.output
    data = _report(workdir / "cls_trtq")
    assert data["comparison"] is None
    assert any(s["step"] == "compare" and "--eval" in s["reason"] for s in data["skipped"])


def test_fp16_writes_the_engine_twin_and_checks_the_fp32_one(workdir):
    result = _build(workdir, "--fp16")
    assert result.exit_code == 0, result.output
    out = workdir / "cls_trtq"
    fp16 = onnx.load(str(out / "cls.qdq.fp16.onnx"))
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in fp16.graph.initializer)
    data = _check_build(result, out)
    if not engine_here():  # on CPU the FP32 Q/DQ model is checked; on a GPU the engine built from the twin
        assert data["comparison"]["candidate"].endswith("cls.qdq.onnx")
    else:
        assert json.loads(Path(data["artifacts"]["engine"] + ".json").read_text())["source_model"]["path"] \
            .endswith("cls.qdq.fp16.onnx")


def test_labels_from_class_folders_give_accuracy(workdir):
    data_dir = workdir / "classes"
    photos = sorted((workdir / "photos").iterdir())
    for i, path in enumerate(photos):
        target = data_dir / ("upright" if i % 2 else "rotated")
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target / path.name)
    result = CliRunner().invoke(main, ["-q", "build", str(workdir / "cls.onnx"), "--calib", str(data_dir), *CLS,
                                       "--labels", "folders", "--eval-fraction", "0.5"])
    assert result.exit_code == 0, result.output
    output = next(iter(_report(workdir / "cls_trtq")["comparison"]["outputs"].values()))
    assert output["labeled_samples"] == 5
    assert output["reference_top1_accuracy"] is not None


def test_corrupt_image_exits_4_without_outputs(workdir):
    (workdir / "photos" / "broken.jpg").write_bytes(b"not a jpeg")
    result = _build(workdir)
    assert result.exit_code == EXIT_BAD_INPUT
    assert "broken.jpg" in result.stderr and "--skip-bad-files" in result.stderr
    assert not (workdir / "cls_trtq" / "cls.qdq.onnx").exists()
    assert not (workdir / "cls_trtq" / "report.json").exists()


def test_interrupt_while_writing_the_qdq_model_exits_130_and_leaves_no_partial_file(workdir, monkeypatch):
    import trtq.onnx_model.model

    def half_written(model, path, *args, **kwargs):
        with open(path, "wb") as f:
            f.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(trtq.onnx_model.model.onnx, "save_model", half_written)
    result = _build(workdir)
    assert result.exit_code == 130
    assert "interrupted" in result.stderr
    out = workdir / "cls_trtq"
    assert (out / "cls.cache").exists()  # finished before the interrupt, complete
    assert sorted(p.name for p in out.iterdir()) == ["cls.cache", "cls.cache.json"]


# ---- the same checks on a simulated GPU machine (issue 16 item 2) ----

@pytest.fixture()
def simulated_gpu(monkeypatch):
    """TensorRT 11 and a T4 as stand-ins: the build takes the engine branch; the "engine" runs as its Q/DQ model."""
    from polygraphy.backend.onnxrt import OnnxrtRunner

    from tests.fake_trt import FakeCudart, fake_trt
    from trtq.engine import runner

    monkeypatch.setitem(sys.modules, "tensorrt", fake_trt("11.4.0.106"))
    monkeypatch.setitem(sys.modules, "cuda.bindings.runtime", FakeCudart(devices=(("Tesla T4", 7, 5),)))

    def stand_in(engine_path, name=None):
        qdq = Path(json.loads(Path(f"{engine_path}.json").read_text())["source_model"]["path"])
        return OnnxrtRunner(session(onnx.load(str(qdq))), name=name)

    monkeypatch.setattr(runner, "trt_runner", stand_in)
    assert engine_here()


def test_the_build_checks_hold_on_a_gpu_machine(workdir, simulated_gpu):
    result = _build(workdir, "--require-engine")
    assert result.exit_code == 0, result.output
    data = _check_build(result, workdir / "cls_trtq")
    assert Path(data["artifacts"]["engine"]).read_bytes() == b"ENGINE:0"
    assert data["comparison"]["samples"] == 2


def test_per_layer_names_the_layers_as_the_sensitivity_ranking_does(tmp_path):
    # The conv model's nodes have no names: trtq names them (<op>_<index>) on the model it quantizes,
    # after SmoothQuant added a Mul before the Gemm, so the names come from the Q/DQ model, not the FP32 file.
    from PIL import Image

    from tests.image_models import conv_classifier, image_args, save

    model = save(conv_classifier(), tmp_path / "conv.onnx")
    assert not any(node.name for node in onnx.load(str(model)).graph.node)
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(8):
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(images / f"{i}.png")
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["-q", "build", str(model), "--calib", str(images), *image_args(), "-o", str(out),
                                       "--eval-fraction", "0.5", "--per-layer", "--smoothquant", "auto"])
    assert result.exit_code == 0, result.output
    data = _report(out)
    ranked = {r["op_type"]: r["node"] for r in data["accuracy"]["sensitivity"]}
    layers = {la["op_type"]: la["node"] for la in data["comparison"]["per_layer"]}
    assert layers == ranked and all(layers.values())
    assert any(line.split()[1:3] == ["Gemm", ranked["Gemm"]] for line in result.stdout.splitlines())


def test_build_reads_and_hashes_the_model_once_and_calibrates_from_its_file(workdir, monkeypatch):
    """Calibration takes the model `trtq build` loaded and fingerprinted (no second parse or weight hash),
    and its session is made from the model file's bytes; the cache is the one `trtq calibrate` makes."""
    from trtq.calibration import collect
    from trtq.onnx_model import model as model_io

    counts = {"load": 0, "fingerprint": 0, "sources": []}
    load, fingerprint, session = model_io.load_model_by_reference, model_io.fingerprint, collect.collection_session

    def counted_load(*args, **kwargs):
        counts["load"] += 1
        return load(*args, **kwargs)

    def counted_fingerprint(*args, **kwargs):
        counts["fingerprint"] += 1
        return fingerprint(*args, **kwargs)

    def recorded_session(*args, **kwargs):
        counts["sources"].append(args[4] if len(args) > 4 else kwargs.get("source"))
        return session(*args, **kwargs)

    monkeypatch.setattr(model_io, "load_model_by_reference", counted_load)
    monkeypatch.setattr(model_io, "fingerprint", counted_fingerprint)
    monkeypatch.setattr(collect, "collection_session", recorded_session)
    result = _build(workdir, "--eval-fraction", "0")
    assert result.exit_code == 0, result.output
    assert (counts["load"], counts["fingerprint"]) == (1, 1)
    assert counts["sources"] == [workdir / "cls.onnx"]
    monkeypatch.undo()
    alone = CliRunner().invoke(main, ["-q", "calibrate", str(workdir / "cls.onnx"), "--calib", str(workdir / "photos"),
                                      *CLS, "--tensors", "qdq", "--cache", str(workdir / "alone.cache")])
    assert alone.exit_code == 0, alone.output
    assert (workdir / "alone.cache").read_bytes() == (workdir / "cls_trtq" / "cls.cache").read_bytes()
