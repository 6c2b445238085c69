"""Issue 13.7, the accuracy paths on models over 2 GiB: --fallback, --per-layer, --bias-correction,
learned weight rounding, --activation-ranges layer-output and `compare --per-layer`.

As in test_large_models, the limit is lowered so that a small model takes the large-model path for real:
every evaluation session of a model with float weights gets a skeleton whose weights are files of
trtq.onnx_model.weight_files (written once, shared by the sessions), and the shipped Q/DQ model is
written with external data. Each path must give exactly what it gives under the real limit.
"""

from __future__ import annotations

import dataclasses
import errno
import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import numpy_helper

from tests.accuracy_models import image_batches, outlier_classifier
from trtq.accuracy import Gates
from trtq.accuracy.bias_correction import correct_biases
from trtq.accuracy.fallback import fallback
from trtq.cli import main
from trtq.errors import EXIT_OUTPUT, ModelError, OutputError
from trtq.onnx_model import large_models, weight_files
from trtq.onnx_model.model import load_model
from trtq.qdq import quantize_model
from trtq.runtime.session import cpu_session

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

# Wide enough that the graph is small next to the weights (the skeletons fit under the lowered limit).
CHANNELS = 32


def _workdir(folder: Path, external: bool) -> Path:
    model = outlier_classifier(channels=CHANNELS)
    if external:  # weights in a data file next to the model, as exporters write models over 2 GiB
        onnx.save_model(model, str(folder / "m.onnx"), save_as_external_data=True, location="m.data",
                        size_threshold=1024)
    else:
        onnx.save_model(model, folder / "m.onnx")
    data = folder / "data"
    data.mkdir()
    for i, feed in enumerate(image_batches(0, (3, 8, 8), 8, 6)):
        np.save(data / f"b{i}.npy", feed["x"])
    return folder


@pytest.fixture()
def workdir(tmp_path):
    return _workdir(tmp_path, external=False)


def _weight_bytes(model: onnx.ModelProto) -> int:
    """Bytes of the initializers weight_files writes out (those of at least its threshold)."""
    return sum(n for n in (large_models.tensor_bytes(t) for t in model.graph.initializer)
               if n >= large_models.EXTERNAL_THRESHOLD)


def _lower_limit(monkeypatch, model: onnx.ModelProto) -> weight_files.WeightFiles:
    """Make `model` (and every model with its float weights) count as over the limit; returns the fresh
    weight store the sessions then use."""
    monkeypatch.setattr(large_models, "LIMIT", large_models.inline_bytes(model) // 2)
    monkeypatch.setattr(large_models, "_MARGIN", 0)
    store = weight_files.WeightFiles()
    monkeypatch.setattr(weight_files, "shared", store)
    return store


def _without_times(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_times(v) for k, v in value.items() if k != "seconds"}
    if isinstance(value, list):
        return [_without_times(v) for v in value]
    return value


def _tensors(path: Path) -> tuple[list[tuple[str, list[str]]], dict[str, np.ndarray]]:
    model = load_model(path)
    return ([(n.op_type, list(n.input)) for n in model.graph.node],
            {t.name: numpy_helper.to_array(t) for t in model.graph.initializer})


def _build(workdir: Path, out: str, flags: list[str]) -> tuple[dict[str, Any], Path]:
    result = CliRunner().invoke(main, ["-q", "build", str(workdir / "m.onnx"), "--calib", str(workdir / "data"),
                                       "--batch-size", "8", "--method", "minmax", "--eval-fraction", "0.33",
                                       "--out-dir", str(workdir / out), *flags])
    assert result.exit_code == 0, result.output
    report = json.loads((workdir / out / "report.json").read_text())
    kept = {"accuracy": report["accuracy"], "outputs": report["comparison"]["outputs"],
            "per_layer": report["comparison"]["per_layer"], "status": report["status"]}
    return _without_times(kept), workdir / out / "m.qdq.onnx"


PATHS = {
    "fallback": ["--min-sqnr", "25", "--fallback", "--max-excluded", "3"],
    "per-layer": ["--per-layer"],
    "bias-correction always": ["--bias-correction", "always"],
    "bias-correction auto": ["--bias-correction", "auto"],
    "learned rounding": ["--weight-rounding", "learned"],
    "adaround": ["--weight-rounding", "adaround"],
    "layer-output ranges": ["--activation-ranges", "layer-output"],
}
# Paths that read the weights of a model over the limit from its own files (never copied anywhere).
BY_REFERENCE = ["fallback", "per-layer", "bias-correction always", "bias-correction auto"]


# The paths that load the weights whole take the same path whatever the file holds: tried once each.
CASES = [(path, "in the model file") for path in PATHS] + [(path, "in an external data file") for path in BY_REFERENCE]


@pytest.mark.parametrize(("path", "storage"), CASES, ids=[f"{p}, {s}" for p, s in CASES])
def test_build_accuracy_paths_run_over_the_limit_with_the_same_results(tmp_path, monkeypatch, path, storage):
    workdir = _workdir(tmp_path, external=storage != "in the model file")
    expected, expected_qdq = _build(workdir, "small", PATHS[path])
    store = _lower_limit(monkeypatch, outlier_classifier(channels=CHANNELS))
    found, found_qdq = _build(workdir, "large", PATHS[path])
    assert found == expected
    nodes, inits = _tensors(found_qdq)
    expected_nodes, expected_inits = _tensors(expected_qdq)
    assert nodes == expected_nodes and sorted(inits) == sorted(expected_inits)
    for name, array in inits.items():
        np.testing.assert_array_equal(array, expected_inits[name], err_msg=name)
    # Written with external data, as every stage writes a model over the limit.
    assert (found_qdq.parent / "m.qdq.onnx.data").is_file() and not (expected_qdq.parent / "m.qdq.onnx.data").exists()
    weights = _weight_bytes(outlier_classifier(channels=CHANNELS))
    if storage != "in the model file" and path in BY_REFERENCE:
        assert store.written == 0  # ONNX Runtime read the weights from the model's own data file
    else:  # loaded whole: the weights sessions read went to the shared files once, however many sessions
        assert 0 < store.written <= 2 * weights


def test_compare_per_layer_runs_over_the_limit_with_the_same_metrics(workdir, monkeypatch):
    model = outlier_classifier(channels=CHANNELS)
    amax = {"x": 6.0, "r1": 40.0, "r2": 4.0, "r3": 4.0, "flat": 2.0}
    onnx.save_model(quantize_model(model, amax).model, workdir / "q.onnx")

    def compare() -> str:
        result = CliRunner().invoke(main, ["-q", "compare", str(workdir / "m.onnx"), str(workdir / "q.onnx"),
                                           "--data", str(workdir / "data"), "--per-layer", "--json"])
        assert result.exit_code == 0, result.output
        return json.dumps(_without_times(json.loads(result.output)), sort_keys=True)

    expected = compare()
    store = _lower_limit(monkeypatch, model)
    assert compare() == expected and '"per_layer"' in expected
    assert store.written == _weight_bytes(model)  # both models read their files once


def test_fallback_sessions_share_the_weight_files(monkeypatch):
    """The API: the FP32 reference, the probe model and every candidate with float weights read one set of
    files; the candidates' own INT8 weights fit in memory."""
    model = outlier_classifier(channels=CHANNELS)
    feeds = image_batches(1, (3, 8, 8), 8, 2)
    amax = {"x": 6.0, "r1": 40.0, "r2": 4.0, "r3": 4.0, "flat": 2.0}
    expected = fallback(model, amax, feeds, None, Gates(min_sqnr=25.0), max_excluded=2)
    store = _lower_limit(monkeypatch, model)
    found = fallback(model, amax, feeds, None, Gates(min_sqnr=25.0), max_excluded=2)
    assert found.steps == expected.steps and found.sensitivity == expected.sensitivity
    assert found.model.SerializeToString() == expected.model.SerializeToString()
    assert store.written == _weight_bytes(model)
    assert not list(store.folder.glob(".*.partial"))


def test_bias_correction_over_the_limit_gives_the_same_model(monkeypatch):
    model = outlier_classifier(channels=CHANNELS)
    feeds = image_batches(2, (3, 8, 8), 8, 2)
    qdq = quantize_model(model, {"x": 6.0, "r1": 40.0, "r2": 4.0, "r3": 4.0, "flat": 2.0}).model
    expected, report = correct_biases(model, qdq, feeds)
    _lower_limit(monkeypatch, model)
    found, found_report = correct_biases(model, qdq, feeds)
    assert found.SerializeToString() == expected.SerializeToString()
    assert dataclasses.replace(found_report, seconds=0) == dataclasses.replace(report, seconds=0)
    assert [s.node for s in report.layers] == ["conv1", "conv2", "conv3", "fc"]


def test_an_evaluation_session_over_the_limit_reads_shared_files_and_leaves_the_model_unchanged(monkeypatch):
    model = outlier_classifier(channels=CHANNELS)
    feed = image_batches(3, (3, 8, 8), 4, 1)[0]
    expected = cpu_session(model, ["r1", "logits"]).run(["r1", "logits"], feed)
    store = _lower_limit(monkeypatch, model)
    before = model.SerializeToString()
    for _ in range(3):
        found = cpu_session(model, ["r1", "logits"]).run(["r1", "logits"], feed)
        for a, b in zip(found, expected, strict=True):
            np.testing.assert_array_equal(a, b)
    assert model.SerializeToString() == before
    assert store.written == _weight_bytes(model)  # three sessions, one copy of the weights on disk
    assert len(list(store.folder.glob("*.bin"))) == 4  # w1, w2, w3, fc_w: a file each


def test_a_graph_over_the_limit_without_its_initializers_is_a_one_line_model_error(monkeypatch):
    model = outlier_classifier(channels=CHANNELS)
    monkeypatch.setattr(large_models, "LIMIT", 100)  # not even the graph fits
    monkeypatch.setattr(large_models, "_MARGIN", 0)
    monkeypatch.setattr(weight_files, "shared", weight_files.WeightFiles())
    with pytest.raises(ModelError, match="even without its initializers") as caught:
        cpu_session(model)
    assert "\n" not in str(caught.value) and "Constant nodes into initializers" in (caught.value.hint or "")


def test_the_store_keeps_at_most_twice_the_latest_model():
    store = weight_files.WeightFiles()
    models = [outlier_classifier(seed=seed, channels=CHANNELS) for seed in range(3)]

    def files_of(model: onnx.ModelProto) -> set[str]:
        light = store.skeleton(model)
        return {e.value for t in light.graph.initializer for e in t.external_data if e.key == "location"}

    first, second = files_of(models[0]), files_of(models[1])
    assert {p.name for p in store.folder.glob("*.bin")} == first | second  # twice the latest model's bytes
    third = files_of(models[2])
    assert {p.name for p in store.folder.glob("*.bin")} == second | third  # the least recently used went
    assert files_of(models[2]) == third and store.written == 3 * _weight_bytes(models[0])
    assert files_of(models[0]) == first and store.written == 4 * _weight_bytes(models[0])  # written again


def test_a_full_temporary_folder_is_a_one_line_output_error(monkeypatch):
    store = weight_files.WeightFiles()

    def full(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", full)
    with pytest.raises(OutputError, match="No space left on device") as caught:
        store.skeleton(outlier_classifier(channels=CHANNELS))
    assert caught.value.exit_code == EXIT_OUTPUT and "TMPDIR" in (caught.value.hint or "")
    assert not list(store.folder.iterdir())  # no partial file left


def test_weights_left_in_files_without_their_folder_are_a_one_line_model_error(tmp_path):
    model = outlier_classifier(channels=CHANNELS)
    onnx.save_model(outlier_classifier(channels=CHANNELS), str(tmp_path / "m.onnx"), save_as_external_data=True,
                    location="m.data")  # (onnx moves the weights out of the model it saves)
    light = onnx.load(str(tmp_path / "m.onnx"), load_external_data=False)
    with pytest.raises(ModelError, match=r"external files \(m.data\)") as caught:
        cpu_session(light)
    assert "weights_dir" in (caught.value.hint or "")
    feed = image_batches(3, (3, 8, 8), 4, 1)[0]
    found = cpu_session(light, weights_dir=tmp_path).run(None, feed)[0]
    np.testing.assert_array_equal(found, cpu_session(model).run(None, feed)[0])
