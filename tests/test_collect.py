"""Statistics collection (trtq.calibration.collect) through `trtq calibrate`, on real photos and models built in code.

NaN/Inf activations, models with external data, and batch-size invariance of the caches.
Every test runs in an empty working directory and checks that nothing lands there.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from tests import assets
from tests.image_models import SIZE, conv_classifier, image_args, image_input, save
from trtq.cache import read_cache
from trtq.calibration.collect import collect_statistics
from trtq.calibrators.stats import TensorStats
from trtq.cli import main
from trtq.config import load_config
from trtq.data import Batch, make_readers
from trtq.errors import EXIT_BAD_INPUT
from trtq.onnx_model.model import graph_inputs


@pytest.fixture()
def cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working directory; tests assert it stays empty (no temporary files land there)."""
    folder = tmp_path / "cwd"
    folder.mkdir()
    monkeypatch.chdir(folder)
    return folder


def _sqrt_model(threshold: float) -> onnx.ModelProto:
    """y = x * sqrt(mean(x) - threshold) per sample: NaN for the samples darker than `threshold`."""
    nodes = [
        helper.make_node("ReduceMean", ["x"], ["m"], axes=[1, 2, 3], keepdims=1),
        helper.make_node("Sub", ["m", "t"], ["d"]),
        helper.make_node("Sqrt", ["d"], ["r"]),
        helper.make_node("Mul", ["x", "r"], ["y"]),
    ]
    graph = helper.make_graph(nodes, "sqrt", [image_input()],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3, SIZE, SIZE])],
                              [numpy_helper.from_array(np.array(threshold, np.float32), "t")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _args(model: Path, data: Path, cache: Path, *extra: str) -> list[str]:
    return ["-q", "calibrate", str(model), "--calib", str(data), "--cache", str(cache), *image_args(), *extra]


def _photo_samples(photo_dir: Path) -> tuple[list[str], np.ndarray]:
    """(keys, inputs [n, 3, SIZE, SIZE]) of the photos, as the data readers preprocess them."""
    config = load_config([], {"calib": str(photo_dir), "resize": "exact", "height": SIZE, "width": SIZE,
                              "batch_size": 64, "workers": 0})
    batches = list(make_readers(config, graph_inputs(_sqrt_model(0.0))).calib)
    return [k for b in batches for k in b.keys], np.concatenate([b.feeds["x"] for b in batches])


def _darkest_threshold(x: np.ndarray) -> tuple[float, np.ndarray]:
    """A threshold between the darkest and the second darkest photo's mean, and the mask of the others."""
    means = x.reshape(len(x), -1).mean(axis=1, dtype=np.float64)
    low, second = np.sort(means)[:2]
    assert second - low > 1e-3, "two photos with the same mean brightness"
    return float((low + second) / 2), means > (low + second) / 2


def test_nan_activation_fails_naming_tensor_and_photo(photo_dir, tmp_path, cwd):
    keys, x = _photo_samples(photo_dir)
    threshold, good = _darkest_threshold(x)
    darkest = keys[int(np.argmin(good))]
    model = save(_sqrt_model(threshold), tmp_path / "sqrt.onnx")
    cache = tmp_path / "sqrt.cache"
    assert keys.index(darkest) % 3 != 0  # in batches of 3 it is not the first sample of its batch
    result = CliRunner().invoke(main, _args(model, photo_dir, cache, "--batch-size", "3"))
    assert result.exit_code == EXIT_BAD_INPUT, result.output
    # 'r' (one value per sample) is the first non-finite activation in graph order.
    assert "activation 'r' has 1 NaN/Inf values" in result.output
    assert f"sample {darkest}" in result.output and "--nan-policy ignore" in result.output
    assert not cache.exists() and not Path(f"{cache}.json").exists()
    assert list(cwd.iterdir()) == []


def test_nan_policy_ignore_counts_and_skips_the_values(photo_dir, tmp_path, cwd):
    _, x = _photo_samples(photo_dir)
    threshold, good = _darkest_threshold(x)
    model = save(_sqrt_model(threshold), tmp_path / "sqrt.onnx")
    cache = tmp_path / "sqrt.cache"
    result = CliRunner().invoke(main, _args(model, photo_dir, cache, "--batch-size", "4", "--nan-policy", "ignore",
                                            "--method", "minmax"))
    assert result.exit_code == 0, result.output
    # One bad photo: one NaN in r, and all 3*SIZE*SIZE values of y.
    # One warning line for both tensors, most values first (no line per tensor).
    assert f"warning: NaN/Inf values ignored (--nan-policy ignore) in 2 tensors: y ({3 * SIZE * SIZE}), r (1);" \
        in result.output
    assert result.output.count("warning:") == 1
    amax = read_cache(cache).amax
    r = np.sqrt(x[good].reshape(int(good.sum()), -1).mean(axis=1, dtype=np.float64) - threshold)
    assert amax["r"] == pytest.approx(r.max(), rel=1e-5)
    assert amax["y"] == pytest.approx(np.abs(x[good] * r[:, None, None, None]).max(), rel=1e-5)
    assert amax["x"] == pytest.approx(np.abs(x).max(), rel=1e-6)  # the NaN photo's input is finite
    assert list(cwd.iterdir()) == []


def _affine_model() -> onnx.ModelProto:
    """z = relu(x * w + b) with per-channel w, b as initializers."""
    w = numpy_helper.from_array(np.array([0.5, -2.0, 3.0], np.float32).reshape(1, 3, 1, 1), "w")
    b = numpy_helper.from_array(np.array([0.25, -0.5, -1.0], np.float32).reshape(1, 3, 1, 1), "b")
    nodes = [helper.make_node("Mul", ["x", "w"], ["a"]), helper.make_node("Add", ["a", "b"], ["y"]),
             helper.make_node("Relu", ["y"], ["z"])]
    graph = helper.make_graph(nodes, "affine", [image_input()],
                              [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["N", 3, SIZE, SIZE])], [w, b])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _photo_crops() -> np.ndarray:
    """Top-left SIZE x SIZE crops of the real photos, in 0..1, NCHW float32."""
    crops = []
    for path in assets.color_photos():
        with Image.open(path) as image:
            crops.append(np.asarray(image.convert("RGB"))[:SIZE, :SIZE])
    return (np.stack(crops).astype(np.float32) / 255.0).transpose(0, 3, 1, 2).copy()


def test_model_with_external_data_calibrates_on_its_weights(tmp_path, cwd):
    folder = tmp_path / "model"
    folder.mkdir()
    model = save(_affine_model(), folder / "affine.onnx", save_as_external_data=True,
                  all_tensors_to_one_file=True, location="affine.onnx.data", size_threshold=0)
    assert onnx.load(str(model), load_external_data=False).graph.initializer[0].data_location == \
        TensorProto.EXTERNAL
    x = _photo_crops()
    np.savez(tmp_path / "crops.npz", x=x)
    cache = tmp_path / "affine.cache"
    result = CliRunner().invoke(main, ["-q", "calibrate", str(model), "--calib", str(tmp_path / "crops.npz"),
                                       "--cache", str(cache), "--method", "minmax", "--batch-size", "5"])
    assert result.exit_code == 0, result.output
    table = read_cache(cache)
    w = np.array([0.5, -2.0, 3.0], np.float32).reshape(1, 3, 1, 1)
    b = np.array([0.25, -0.5, -1.0], np.float32).reshape(1, 3, 1, 1)
    a = x * w
    y = a + b
    expected = {"x": np.abs(x).max(), "a": np.abs(a).max(), "y": np.abs(y).max(), "z": np.maximum(y, 0).max()}
    assert list(table.amax) == ["x", "a", "y", "z"]
    for name, value in expected.items():
        assert table.amax[name] == pytest.approx(float(value), rel=1e-6), name
    assert table.provenance is not None and table.provenance.num_samples == len(x)
    assert sorted(p.name for p in folder.iterdir()) == ["affine.onnx", "affine.onnx.data"]
    assert list(cwd.iterdir()) == []


@pytest.mark.parametrize("method", ["entropy", "percentile"])
def test_cache_does_not_depend_on_batch_size(photo_dir, tmp_path, cwd, method):
    model = save(conv_classifier(), tmp_path / "conv.onnx")
    caches = []
    for batch in (1, 7, 32):
        cache = tmp_path / f"b{batch}.cache"
        result = CliRunner().invoke(main, _args(model, photo_dir, cache, "--batch-size", str(batch),
                                                "--method", method))
        assert result.exit_code == 0, result.output
        caches.append(cache)
    first = caches[0].read_bytes()
    assert read_cache(caches[0]).provenance.num_samples == len(list(photo_dir.iterdir()))
    assert len(read_cache(caches[0]).amax) == 8 and all(v > 0 for v in read_cache(caches[0]).amax.values())
    for cache in caches[1:]:
        assert cache.read_bytes() == first, cache.name
        assert Path(f"{cache}.json").read_bytes() == Path(f"{caches[0]}.json").read_bytes()
    assert list(cwd.iterdir()) == []


def test_classifier_cache_does_not_depend_on_batch_size(ocr_classifier, photo_dir, tmp_path, cwd):
    caches = []
    for batch in (1, 7, 32):
        cache = tmp_path / f"cls{batch}.cache"
        result = CliRunner().invoke(main, ["-q", "calibrate", str(ocr_classifier), "--calib", str(photo_dir),
                                           "--cache", str(cache), "-c", "ppocr", "--height", "48", "--width", "192",
                                           "--batch-size", str(batch), "--method", "percentile"])
        assert result.exit_code == 0, result.output
        caches.append(cache.read_bytes())
    assert caches[1] == caches[0] and caches[2] == caches[0]
    assert list(cwd.iterdir()) == []


def test_interrupt_mid_stream_propagates_and_ends_the_observer_thread(tmp_path):
    x = _photo_crops()
    model = conv_classifier()
    model.ir_version = 10
    seen: list[int] = []

    def batches():
        for i in range(0, len(x), 2):
            if i == 4:  # Ctrl-C while the third batch is being read
                raise KeyboardInterrupt
            yield Batch({"x": x[i : i + 2]}, [f"s{i}", f"s{i + 1}"])
            seen.append(i)

    with pytest.raises(KeyboardInterrupt):
        collect_statistics(model, tmp_path, ["x", "c", "r"], batches(), lambda: TensorStats(2048, None),
                           providers=["CPUExecutionProvider"], show_progress=False)
    assert seen == [0, 2]
    assert not [t for t in threading.enumerate() if t.name.startswith("trtq-observer")]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("external", [False, True])
def test_session_from_the_model_file_is_the_exposed_model(tmp_path, external):
    """collection_session(source=...) appends the exposed outputs to the file's bytes instead of copying and
    serializing the model: the bytes parse to expose_tensors' model (IR version clamped), and the session
    returns the same activations as the one made from the copy."""
    from trtq.calibration.collect import collection_session, expose_tensors, exposed_file_bytes
    from trtq.onnx_model.model import MAX_IR_VERSION, load_model_by_reference

    model = _affine_model()
    model.ir_version = MAX_IR_VERSION + 2  # newer than ONNX Runtime reads: the session clamps it
    options = dict(save_as_external_data=True, all_tensors_to_one_file=True, location="affine.onnx.data",
                   size_threshold=0) if external else {}
    onnx.save_model(model, str(tmp_path / "affine.onnx"), **options)
    loaded, _ = load_model_by_reference(tmp_path / "affine.onnx")
    names = ["a", "z", "y"]  # z is a graph output already
    merged = onnx.ModelProto.FromString(exposed_file_bytes(loaded, tmp_path / "affine.onnx", names))
    expected = expose_tensors(onnx.load(str(tmp_path / "affine.onnx"), load_external_data=False), names)
    expected.ir_version = MAX_IR_VERSION
    assert merged == expected
    assert [o.name for o in merged.graph.output] == ["z", "a", "y"]
    x = _photo_crops()[:2]
    with collection_session(loaded, tmp_path, names, ["CPUExecutionProvider"], tmp_path / "affine.onnx") as fast, \
            collection_session(loaded, tmp_path, names, ["CPUExecutionProvider"]) as copied:
        assert [o.name for o in fast.get_outputs()] == [o.name for o in copied.get_outputs()] == ["z", "a", "y"]
        for got, want in zip(fast.run(None, {"x": x}), copied.run(None, {"x": x}), strict=True):
            np.testing.assert_array_equal(got, want)
