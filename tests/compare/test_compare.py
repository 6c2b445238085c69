"""compare_models on real ONNX Runtime CPU runs, checked against plain onnxruntime sessions and numpy."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from PIL import Image

from tests import assets
from tests.compare import models
from tests.qdq.helpers import activation_amax, session
from trtq._lazy import is_available
from trtq.accuracy import compare_models
from trtq.errors import ConfigError, DataError, MissingDependencyError, ModelError
from trtq.onnx_model.model import save_model
from trtq.qdq import quantize_model

EVAL_SIZES = (4, 4, 2)  # ragged last batch


@pytest.fixture(scope="module")
def fp32() -> onnx.ModelProto:
    return models.branchy_classifier()


@pytest.fixture(scope="module")
def qdq(fp32) -> onnx.ModelProto:
    return models.quantized(fp32, models.batches(0, (8,)))


def _outputs(model: onnx.ModelProto, batches: list[dict[str, np.ndarray]]) -> np.ndarray:
    sess = session(model)
    return np.concatenate([sess.run(None, feed)[0] for feed in batches])


def test_metrics_equal_numpy_on_plain_onnxruntime_outputs(fp32, qdq):
    batches = models.batches(1, EVAL_SIZES)
    result = compare_models(fp32, qdq, batches, progress=False)
    ref, cand = _outputs(fp32, batches).astype(np.float64), _outputs(qdq, batches).astype(np.float64)
    err = np.abs(cand - ref)
    m = result.outputs["prob"]
    assert (result.samples, result.batches, m.samples, m.elements) == (10, 3, 10, ref.size)
    assert result.candidate_kind == "onnx"
    assert m.max_abs_error == pytest.approx(err.max(), rel=1e-6)
    assert m.mean_abs_error == pytest.approx(err.mean(), rel=1e-6)
    assert m.max_rel_error == pytest.approx((err / np.abs(ref)).max(), rel=1e-6)
    assert m.sqnr_db == pytest.approx(10 * np.log10(np.sum(ref**2) / np.sum((ref - cand) ** 2)), rel=1e-6)
    assert m.cosine == pytest.approx(np.sum(ref * cand) / np.linalg.norm(ref) / np.linalg.norm(cand), rel=1e-6)
    assert m.p99_abs_error == pytest.approx(np.quantile(err, 0.99, method="inverted_cdf"), rel=0.012)
    assert m.top1_agreement == pytest.approx(np.mean(ref.argmax(1) == cand.argmax(1)))
    top5 = np.argsort(-cand, axis=1)[:, :5]
    assert m.top5_agreement == pytest.approx(np.mean((top5 == ref.argmax(1)[:, None]).any(1)))
    assert 0 < m.sqnr_db < 80  # INT8 really changed the outputs, and not beyond recognition
    assert result.per_layer == ()


def test_a_clipped_input_range_lowers_top1_agreement_as_numpy_says(fp32):
    broken = models.quantized(fp32, models.batches(0, (8,)), shrink={"x": 0.05})
    batches = models.batches(2, (8, 8, 8))
    result = compare_models(fp32, broken, batches, progress=False)
    ref, cand = _outputs(fp32, batches), _outputs(broken, batches)
    expected = np.mean(ref.argmax(1) == cand.argmax(1))
    assert expected < 0.95  # the clipping really flips classes
    assert result.outputs["prob"].top1_agreement == pytest.approx(expected)


def test_labels_give_the_top1_accuracy_of_both_models(fp32, qdq):
    batches = models.batches(3, (5, 5))
    keys = [f"img{i}.png" for i in range(10)]
    ref, cand = _outputs(fp32, batches), _outputs(qdq, batches)
    labels = {k: int(c) for k, c in zip(keys, ref.argmax(1), strict=True)}
    labels["img0.png"] = (labels["img0.png"] + 1) % models.CLASSES  # one label the reference gets wrong
    del labels["img9.png"]  # one unlabeled sample
    result = compare_models(fp32, qdq, batches, labels=labels, keys=keys, progress=False)
    m = result.outputs["prob"]
    truth = np.array([labels.get(k, -1) for k in keys])
    known = truth >= 0
    assert m.labeled_samples == 9
    assert m.reference_top1_accuracy == pytest.approx(8 / 9)
    assert m.candidate_top1_accuracy == pytest.approx(np.mean(cand.argmax(1)[known] == truth[known]))


def test_per_layer_names_the_deliberately_broken_layer_worst(fp32):
    # rb (conv_c's input) gets 2 % of its real range, so conv_c's output cc is clipped garbage,
    # while its small contribution is diluted in the Add that follows.
    broken = models.quantized(fp32, models.batches(0, (8,)), shrink={"rb": 0.02})
    result = compare_models(fp32, broken, models.batches(4, EVAL_SIZES), per_layer=True, progress=False)
    worst = result.per_layer[0]
    assert (worst.tensor, worst.op_type) == ("cc", "Conv")
    assert worst.sqnr_db < 10 < result.per_layer[1].sqnr_db
    sqnrs = [layer.sqnr_db for layer in result.per_layer]
    assert sqnrs == sorted(sqnrs)
    assert {layer.tensor for layer in result.per_layer} == {"ca", "cb", "cc", "sum", "gap", "logits"}


def test_per_layer_sqnr_matches_numpy_on_the_marked_tensor(fp32, qdq, tmp_path):
    batches = models.batches(5, (3, 3))
    result = compare_models(fp32, qdq, batches, per_layer=True, progress=False)
    marked = {}
    for name, model in (("ref", fp32), ("cand", qdq)):
        exposed = onnx.ModelProto()
        exposed.CopyFrom(model)
        exposed.graph.output.append(onnx.helper.make_tensor_value_info("sum", onnx.TensorProto.FLOAT, None))
        sess = session(exposed)
        marked[name] = np.concatenate([sess.run(["sum"], f)[0] for f in batches]).astype(np.float64)
    noise = np.sum((marked["ref"] - marked["cand"]) ** 2)
    layer = next(la for la in result.per_layer if la.tensor == "sum")
    assert layer.sqnr_db == pytest.approx(10 * np.log10(np.sum(marked["ref"] ** 2) / noise), rel=1e-5)


def test_fp8_candidate_runs_at_the_basic_optimization_level(fp32):
    fp8 = models.quantized(fp32, models.batches(0, (8,)), precision="fp8")
    result = compare_models(fp32, fp8, models.batches(6, (4,)), per_layer=True, progress=False)
    assert 10 < result.outputs["prob"].sqnr_db < 80
    assert result.per_layer


def test_tolerances_run_through_polygraphy(fp32, qdq):
    batches = models.batches(7, EVAL_SIZES)
    ref, cand = _outputs(fp32, batches), _outputs(qdq, batches)
    per_batch_max = [np.abs(c - r).max() for r, c in zip(np.split(ref, [4, 8]), np.split(cand, [4, 8]), strict=True)]
    atol = float(np.median(per_batch_max))  # between the batches' max errors: some batches pass, some fail
    check = compare_models(fp32, qdq, batches, atol=atol, progress=False).outputs["prob"].tolerance
    assert check is not None and (check.atol, check.rtol, check.batches) == (atol, 0.0, 3)
    assert check.failed_batches == sum(e > atol for e in per_batch_max)
    assert 0 < check.failed_batches < 3
    assert check.max_abs_error == pytest.approx(max(per_batch_max), rel=1e-6)
    loose = compare_models(fp32, qdq, batches, atol=1.0, progress=False).outputs["prob"].tolerance
    assert loose is not None and loose.passed


def test_paths_work_like_model_protos(fp32, qdq, tmp_path):
    save_model(fp32, tmp_path / "fp32.onnx")
    save_model(qdq, tmp_path / "qdq.onnx")
    batches = models.batches(8, (4,))
    by_path = compare_models(str(tmp_path / "fp32.onnx"), tmp_path / "qdq.onnx", batches, progress=False)
    in_memory = compare_models(fp32, qdq, batches, progress=False)
    assert by_path.reference == str(tmp_path / "fp32.onnx")
    assert by_path.outputs["prob"].sqnr_db == pytest.approx(in_memory.outputs["prob"].sqnr_db, rel=1e-9)


def test_identical_models_have_infinite_sqnr(fp32):
    m = compare_models(fp32, fp32, models.batches(9, (3,)), progress=False).outputs["prob"]
    assert m.sqnr_db == float("inf") and m.max_abs_error == 0.0 and m.top1_agreement == 1.0


def test_bad_inputs_are_data_errors_naming_the_batch(fp32, qdq):
    good = models.batches(10, (2,))[0]
    with pytest.raises(DataError, match="batch 1 has no array for model input 'x'"):
        compare_models(fp32, qdq, [good, {"image": good["x"]}], progress=False)
    with pytest.raises(DataError, match=r"input 'x' of batch 0 has shape 2x8x8x3, the model expects Nx3x8x8"):
        compare_models(fp32, qdq, [{"x": good["x"].transpose(0, 2, 3, 1)}], progress=False)
    with pytest.raises(DataError, match="input 'x' of batch 0 is int64"):
        compare_models(fp32, qdq, [{"x": good["x"].astype(np.int64)}], progress=False)
    with pytest.raises(DataError, match="no data"):
        compare_models(fp32, qdq, [], progress=False)
    as_float64 = compare_models(fp32, qdq, [{"x": good["x"].astype(np.float64)}], progress=False)
    assert as_float64.samples == 2  # floats are cast to the model's dtype


def test_model_errors(fp32, qdq, tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        compare_models(fp32, str(tmp_path / "missing.onnx"), models.batches(0, (1,)), progress=False)
    renamed = onnx.ModelProto()
    renamed.CopyFrom(qdq)
    renamed.graph.node[-1].output[0] = "probabilities"
    renamed.graph.output[0].name = "probabilities"
    with pytest.raises(ModelError, match="the candidate has no output named 'prob'"):
        compare_models(fp32, renamed, models.batches(0, (1,)), progress=False)
    with pytest.raises(ConfigError, match="labels were given without sample keys"):
        compare_models(fp32, qdq, models.batches(0, (1,)), labels={"a": 1}, progress=False)


def test_engine_candidate_without_tensorrt_is_a_missing_dependency(fp32, tmp_path):
    if is_available("tensorrt"):
        pytest.skip("TensorRT is installed; engines are compared by the GPU tests")
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"not an engine")
    with pytest.raises(MissingDependencyError, match="tensorrt"):
        compare_models(fp32, engine, models.batches(0, (1,)), progress=False)
    with pytest.raises(ModelError, match="does not exist"):
        compare_models(fp32, tmp_path / "missing.plan", models.batches(0, (1,)), progress=False)


def _ocr_input(name: str) -> np.ndarray:
    """A real photo as the PP-OCR direction classifier wants it: 3x48x192 BGR, (x/255 - 0.5) / 0.5."""
    image = Image.open(assets.photo(name)).convert("RGB").resize((192, 48), Image.BILINEAR)
    x = np.asarray(image, np.float32)[:, :, ::-1] / 255.0
    return np.ascontiguousarray(((x - 0.5) / 0.5).transpose(2, 0, 1))


def test_real_ocr_classifier_end_to_end(ocr_classifier):
    model = onnx.load(str(ocr_classifier))
    photos = [_ocr_input(p.name) for p in assets.color_photos()[:8]]
    amax = activation_amax(model, [{"x": np.stack(photos[:4])}])
    qdq = quantize_model(model, amax).model  # opset 11 -> 13
    batches = [{"x": np.stack(photos[i:i + 3])} for i in (0, 3, 6)]  # 3 + 3 + 2 samples
    result = compare_models(str(ocr_classifier), qdq, batches, per_layer=True, progress=False)
    output = model.graph.output[0].name
    ref, cand = _outputs(model, batches).astype(np.float64), _outputs(qdq, batches).astype(np.float64)
    m = result.outputs[output]
    assert (result.samples, m.shape) == (8, (2, 2))
    assert m.sqnr_db == pytest.approx(10 * np.log10(np.sum(ref**2) / np.sum((ref - cand) ** 2)), rel=1e-4)
    assert m.top1_agreement == pytest.approx(np.mean(ref.argmax(1) == cand.argmax(1)))
    assert m.top5_agreement is None  # two classes
    assert m.sqnr_db > 15
    assert len(result.per_layer) > 10
    assert {layer.op_type for layer in result.per_layer} >= {"Conv"}
