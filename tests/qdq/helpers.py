"""Running test models on ONNX Runtime CPU, measuring amax and SQNR."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

from trtq.onnx_model.model import MAX_IR_VERSION
from trtq.runtime.qdq_options import QDQ_SESSION_ENTRIES, ort_optimization_level


def session(model: onnx.ModelProto) -> ort.InferenceSession:
    model = onnx.ModelProto.FromString(model.SerializeToString())
    model.ir_version = min(model.ir_version, MAX_IR_VERSION)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    opts.log_severity_level = 3
    if ort_optimization_level(model) == "basic":  # FP8 Q/DQ: see trtq.runtime.qdq_options
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    for key, value in QDQ_SESSION_ENTRIES.items():  # exact fake quantization on every CPU
        opts.add_session_config_entry(key, value)
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def run(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    return session(model).run(None, feeds)


def activation_amax(model: onnx.ModelProto, feeds_list: list[dict[str, np.ndarray]]) -> dict[str, float]:
    """max |x| of every float activation and graph input over `feeds_list`, from the FP32 model itself."""
    exposed = onnx.ModelProto.FromString(model.SerializeToString())
    inferred = onnx.shape_inference.infer_shapes(exposed)
    float_tensors = {vi.name for vi in (*inferred.graph.value_info, *inferred.graph.output)
                     if vi.type.tensor_type.elem_type == TensorProto.FLOAT}
    present = {o.name for o in exposed.graph.output}
    for node in exposed.graph.node:
        for out in node.output:
            if out in float_tensors and out not in present and node.op_type != "Constant":
                exposed.graph.output.append(helper.make_tensor_value_info(out, TensorProto.FLOAT, None))
                present.add(out)
    sess = session(exposed)
    names = [o.name for o in sess.get_outputs()]
    amax: dict[str, float] = {}
    for feeds in feeds_list:
        values = dict(zip(names, sess.run(None, feeds), strict=True))
        values.update(feeds)
        for name, value in values.items():
            if value.dtype == np.float32 and value.size:
                amax[name] = max(amax.get(name, 0.0), float(np.abs(value).max()))
    return amax


def build_report(folder: Path, out: str, *extra: str) -> dict[str, Any]:
    """`trtq build` of folder/m.onnx on folder/calib.npy with folder/eval.npy held out (minmax ranges),
    into folder/out; asserts exit 0 and returns its report.json."""
    from click.testing import CliRunner

    from trtq.cli import main

    args = ["-q", "build", str(folder / "m.onnx"), "--calib", str(folder / "calib.npy"), "--eval",
            str(folder / "eval.npy"), "--method", "minmax", "-o", str(folder / out), *extra]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    report: dict[str, Any] = json.loads((folder / out / "report.json").read_text())
    return report


def sqnr_db(reference: np.ndarray, test: np.ndarray) -> float:
    """10 log10(sum ref^2 / sum (ref - test)^2), in dB."""
    ref = reference.astype(np.float64)
    noise = np.sum((ref - test.astype(np.float64)) ** 2)
    return float(10 * np.log10(np.sum(ref**2) / max(noise, 1e-30)))


def random_feeds(model: onnx.ModelProto, seed: int, count: int = 1) -> list[dict[str, np.ndarray]]:
    """Standard-normal inputs for every graph input (all test models have static float inputs)."""
    rng = np.random.default_rng(seed)
    feeds = []
    for _ in range(count):
        feed = {}
        for vi in model.graph.input:
            shape = [d.dim_value for d in vi.type.tensor_type.shape.dim]
            feed[vi.name] = rng.standard_normal(shape).astype(np.float32)
        feeds.append(feed)
    return feeds


def qdq_nodes(model: onnx.ModelProto) -> dict[str, list[onnx.NodeProto]]:
    """Q nodes keyed by the tensor they quantize."""
    out: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        if node.op_type == "QuantizeLinear":
            out.setdefault(node.input[0], []).append(node)
    return out


def dq_inputs_of(model: onnx.ModelProto, node_name: str) -> list[str | None]:
    """For each input of `node_name`: the tensor quantized through Q->DQ (or a DQ'd initializer), else None."""
    producers = {o: n for n in model.graph.node for o in n.output}
    node = next(n for n in model.graph.node if n.name == node_name)
    result: list[str | None] = []
    for name in node.input:
        dq = producers.get(name)
        if dq is None or dq.op_type != "DequantizeLinear":
            result.append(None)
            continue
        q = producers.get(dq.input[0])
        result.append(q.input[0] if q is not None and q.op_type == "QuantizeLinear" else dq.input[0])
    return result
