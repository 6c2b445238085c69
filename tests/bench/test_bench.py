"""`trtq bench`: one row per (model, backend, batch) with latency percentiles and throughput; JSON/Markdown."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from click.testing import CliRunner

from tests.accuracy_models import conv_chain, image_batches
from tests.qdq.helpers import activation_amax
from trtq.cli import main
from trtq.errors import ConfigError
from trtq.onnx_model.model import graph_inputs, save_model
from trtq.pipeline import bench as bench_stage
from trtq.qdq import quantize_model
from trtq.runtime.bench_inputs import random_batch, real_batch

FIELDS = {"model", "kind", "backend", "batch", "median_ms", "p90_ms", "p99_ms", "mean_ms", "min_ms", "max_ms",
          "throughput", "runs", "warmup", "vs_fp32"}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bench")
    fp32 = conv_chain()
    qdq = quantize_model(fp32, activation_amax(fp32, image_batches(0, (3, 12, 12), 4, 2))).model
    save_model(fp32, folder / "m.onnx")
    save_model(qdq, folder / "m.qdq.onnx")
    return folder


def _bench(*args: str):
    return CliRunner().invoke(main, ["-q", "bench", *args])


def test_cli_rows_have_every_field_and_json_and_markdown_match(models):
    out_json, out_md = models / "b.json", models / "b.md"
    result = _bench(str(models / "m.onnx"), str(models / "m.qdq.onnx"), "--batch", "1,3", "--runs", "7",
                    "--warmup", "2", "--provider", "cpu", "--json", str(out_json), "--markdown", str(out_md))
    assert result.exit_code == 0, result.output
    data = json.loads(out_json.read_text())
    rows = data["rows"]
    assert [(r["kind"], r["batch"]) for r in rows] == [("fp32", 1), ("fp32", 3), ("qdq", 1), ("qdq", 3)]
    for r in rows:
        assert set(r) >= FIELDS and r["backend"] == "ort-cpu" and r["runs"] == 7 and r["warmup"] == 2
        assert 0 < r["min_ms"] <= r["median_ms"] <= r["p90_ms"] <= r["p99_ms"] <= r["max_ms"]
        assert r["throughput"] == pytest.approx(r["batch"] / (r["median_ms"] / 1e3), rel=1e-3)
    fp32_1, qdq_1 = rows[0], rows[2]
    assert fp32_1["vs_fp32"] == 1.0
    assert qdq_1["vs_fp32"] == pytest.approx(qdq_1["median_ms"] / fp32_1["median_ms"], rel=1e-3)
    md = out_md.read_text()
    assert "| median ms | p90 ms | p99 ms | samples/s |" in md and md.count("| `m.qdq.onnx` | qdq |") == 2
    table = result.output.splitlines()
    assert table[0].split()[:4] == ["model", "kind", "backend", "batch"] and len(table) >= 5


def test_a_time_budget_and_real_data(models):
    np.save(models / "x.npy", image_batches(3, (3, 12, 12), 5, 1)[0]["x"])
    result = bench_stage.run_bench([models / "m.onnx"], bench_stage.BenchOptions((2,), 1, None, 0.05, None, "cpu"))
    assert result.rows[0].stats.runs >= 3 and result.rows[0].stats.seconds >= 0.05
    import trtq

    real = trtq.bench([models / "m.onnx"], batches=(8,), runs=3, warmup=0, data=models / "x.npy", providers="cpu")
    assert real.inputs.startswith("real samples from") and real.rows[0].stats.batch == 8


def test_an_fp16_model_is_timed_as_fp16_and_compared_with_fp32(models):
    from trtq.qdq.fp16 import convert_to_fp16

    save_model(convert_to_fp16(conv_chain()), models / "m.fp16.onnx")
    result = bench_stage.run_bench([models / "m.onnx", models / "m.fp16.onnx"], bench_stage.BenchOptions((1,), 1, 3,
                                                                                                        providers="cpu"))
    fp32, fp16 = result.rows
    assert (fp32.target.kind, fp16.target.kind) == ("fp32", "fp16")
    assert fp16.vs_fp32 == pytest.approx(fp16.stats.median_ms / fp32.stats.median_ms)


def test_random_and_real_batches_have_the_asked_shapes():
    inputs = graph_inputs(conv_chain())  # x: N x 3 x 12 x 12
    assert random_batch(inputs, 4)["x"].shape == (4, 3, 12, 12)
    feeds = image_batches(0, (3, 12, 12), 3, 2)
    tiled = real_batch(feeds, 8)["x"]
    assert tiled.shape == (8, 3, 12, 12)
    np.testing.assert_array_equal(tiled[6:8], feeds[0]["x"][:2])  # 6 samples, repeated from the first
    with pytest.raises(ConfigError, match="fixes dim 1 to 3"):
        random_batch(inputs, 1, "x:1x4x12x12")
    with pytest.raises(ConfigError, match="has no input 'y'"):
        random_batch(inputs, 1, "y:1x3")


def test_dynamic_dims_need_a_shape(tmp_path):
    model = conv_chain()
    model.graph.input[0].type.tensor_type.shape.dim[2].dim_param = "H"
    save_model(model, tmp_path / "dyn.onnx")
    result = _bench(str(tmp_path / "dyn.onnx"), "--runs", "2")
    assert result.exit_code == 2 and "error: input 'x' has a dynamic dim 2" in result.output
    assert "--shape x:1x3x224x12" in result.output and "Traceback" not in result.output
    ok = _bench(str(tmp_path / "dyn.onnx"), "--runs", "2", "--shape", "x:1x3x20x12", "--batch", "2")
    assert ok.exit_code == 0, ok.output


def test_bad_options_are_one_error_line(models):
    for args in (["--batch", "0"], ["--batch", "a"], ["--runs", "3", "--seconds", "1"]):
        result = _bench(str(models / "m.onnx"), *args)
        assert result.exit_code == 2 and "Traceback" not in result.output, (args, result.output)
    missing = _bench(str(models / "nope.onnx"), "--runs", "2")
    assert missing.exit_code == 4 and "does not exist" in missing.output


class _SlowRunner:
    """A Runner (trtq.runtime.runner) standing in for Polygraphy's TrtRunner: 3 ms per inference."""

    name = "fake-trt"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    def infer(self, feed_dict):
        time.sleep(0.003)
        return {"y": np.zeros((feed_dict["x"].shape[0], 4, 12, 12), np.float32)}


def test_an_engine_is_timed_through_the_engine_runner_where_a_gpu_is(models, monkeypatch):
    engine = models / "m.engine"
    engine.write_bytes(b"ENGINE:fake")
    skipped = bench_stage.run_bench([models / "m.onnx", engine], bench_stage.BenchOptions((1,), 0, 3))
    assert [r.target.backend for r in skipped.rows] == ["ort-cpu"] and "m.engine" in skipped.skipped[0]
    import trtq.engine.device
    import trtq.runtime.runners

    monkeypatch.setattr(trtq.engine.device, "gpu_available", lambda: (True, "fake GPU"))
    monkeypatch.setattr(trtq.runtime.runners, "engine_runner", lambda path: _SlowRunner())
    result = bench_stage.run_bench([models / "m.onnx", engine], bench_stage.BenchOptions((1,), 1, 5, providers="cpu"))
    trt = [r for r in result.rows if r.target.backend == "tensorrt"]
    assert len(trt) == 1 and trt[0].target.kind == "engine" and trt[0].stats.median_ms >= 3.0
    assert trt[0].vs_fp32 is None  # no FP32 row on a GPU backend to compare with
