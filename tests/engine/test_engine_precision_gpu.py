"""Did TensorRT do what our quantization says? Layer precisions and TensorRT's own entropy ranges (GPU only).

Matching FP32 outputs (test_engine_gpu.py) also passes if TensorRT ignored the Q/DQ nodes and ran FP32/FP16,
so these tests look inside: TensorRT's engine inspector must show INT8 inputs on every Conv the Q/DQ model
quantized, and TensorRT 10's own EntropyCalibration2 cache (the implicit path, same batches) is the one
independent reference for trtq's entropy implementation: the per-tensor ratio of trtq's amax to TensorRT's
is printed (run with -s to see it) and its median must be near 1.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from tests.engine.models import conv_classifier
from trtq.cache import parse_table
from trtq.calibrators import TensorStats, compute_amax
from trtq.calibrators.trt_calibrators import make_trt_calibrator
from trtq.config import QuantizeConfig
from trtq.engine import ShapeRange, build_engine, has_implicit_quantization, trt_version
from trtq.engine.layers import engine_layers
from trtq.onnx_model.model import save_model
from trtq.qdq import quantize_model

pytestmark = [pytest.mark.trt, pytest.mark.gpu]

SHAPE = (4, 3, 16, 16)
RANGE = ShapeRange("x", (1, 3, 16, 16), SHAPE, (8, 3, 16, 16))


def _batches(count: int, seed: int) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [{"x": rng.standard_normal(SHAPE).astype(np.float32)} for _ in range(count)]


def _activations(model: onnx.ModelProto, batches: list[dict[str, np.ndarray]]) -> dict[str, list[np.ndarray]]:
    """Every float tensor's values per batch, on ONNX Runtime FP32."""
    exposed = onnx.ModelProto()
    exposed.CopyFrom(model)
    names = ["x", *[out for node in model.graph.node for out in node.output]]
    known = {o.name for o in exposed.graph.output}
    exposed.graph.output.extend(onnx.helper.make_empty_tensor_value_info(n) for n in names if n not in known)
    session = ort.InferenceSession(exposed.SerializeToString(), providers=["CPUExecutionProvider"])
    values: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for batch in batches:
        for name, value in zip(names, session.run(names, batch), strict=True):
            values[name].append(value)
    return values


def test_every_conv_the_qdq_model_quantized_runs_in_int8(tmp_path):
    model = conv_classifier(batch="N")
    values = _activations(model, _batches(4, seed=1))
    amax = {name: float(max(np.abs(v).max() for v in batches)) for name, batches in values.items()}
    result = quantize_model(model, amax, QuantizeConfig())
    quantized = {q.name for q in result.report.quantized}
    quantized_convs = [n.name for n in model.graph.node if n.op_type == "Conv" and n.name in quantized]
    assert quantized_convs, "the test model must get Q/DQ nodes on its convolutions"
    save_model(result.model, tmp_path / "m.qdq.onnx")
    build_engine(tmp_path / "m.qdq.onnx", tmp_path / "m.engine", profiles=[RANGE], detailed_profile=True)
    layers = engine_layers(tmp_path / "m.engine")
    print("\n".join(f"{layer.layer_type:<20} {layer.name}: in {layer.input_types} out {layer.output_types}"
                    for layer in layers))
    for conv in quantized_convs:
        running = [layer for layer in layers if conv in layer.name]
        assert running, f"no engine layer carries {conv}"
        assert any("int8" in layer.input_types for layer in running), (conv, running)


def test_trtq_entropy_ranges_match_tensorrt_s_own_entropy_calibration(tmp_path):
    if not has_implicit_quantization(trt_version()):
        pytest.skip("TensorRT's own calibrator exists only in TensorRT 10.x")
    model = conv_classifier(batch="N")
    save_model(model, tmp_path / "m.onnx")
    batches = _batches(8, seed=5)
    store: dict[str, bytes] = {}
    with make_trt_calibrator("entropy", batches, lambda: None, lambda data: store.update(cache=data), ["x"],
                             shapes={"x": SHAPE}) as calib:
        build_engine(tmp_path / "m.onnx", tmp_path / "m.engine", mode="implicit", profiles=[RANGE], calibrator=calib)
    assert calib.error is None and store["cache"].startswith(b"TRT-")
    theirs, _ = parse_table(store["cache"])
    assert theirs.algorithm == "entropy"  # the header said EntropyCalibration2
    ratios = {}
    for name, per_batch in _activations(model, batches).items():
        stats = TensorStats()
        for value in per_batch:
            stats.update(value)
        ours = compute_amax("entropy", stats, flatten_zero_bin=False)  # the algorithm as TensorRT publishes it
        if theirs.amax.get(name, 0.0) > 0 and ours > 0:
            ratios[name] = ours / theirs.amax[name]
    assert len(ratios) >= 5, f"too few tensors in common with TensorRT's cache: {sorted(theirs.amax)}"
    values = np.array(list(ratios.values()))
    print(f"\ntrtq/TensorRT entropy amax over {len(values)} tensors: median {np.median(values):.3f}, "
          f"min {values.min():.3f}, max {values.max():.3f}; " + ", ".join(f"{k} {v:.3f}" for k, v in ratios.items()))
    assert 0.8 <= float(np.median(values)) <= 1.25
    assert float(values.min()) >= 0.5 and float(values.max()) <= 2.0
