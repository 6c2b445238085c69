"""How much nearest rounding of the weights alone costs a model: per-channel symmetric INT8 weights
(scale max|w|/127 per output channel, round to nearest), activations left in float.

    python benchmarks/weight_only_error.py MODEL.onnx --case mnv2 [--eval 64] [--per-layer 8]

Prints the output SQNR and top-1 agreement against FP32 on held-out photo crops with every weight
rounded, and with `--per-layer N` the N layers whose weights alone cost the most (only that layer's
weights rounded), with each weight tensor's own SQNR. Where learned rounding has the most to win.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parent))

import accuracy_data as data

from trtq.onnx_model.model import graph_inputs, load_model

WEIGHTED = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def nearest(w: np.ndarray, axis: int) -> np.ndarray:
    """w with per-channel (along `axis`) symmetric INT8 nearest rounding applied."""
    reduce = tuple(i for i in range(w.ndim) if i != axis)
    amax = np.max(np.abs(w), axis=reduce, keepdims=True)
    scale = np.where(amax > 0, amax / 127.0, 1.0)
    return (np.clip(np.round(w / scale), -128, 127) * scale).astype(w.dtype)


def weight_layers(model: onnx.ModelProto) -> list[tuple[str, str, str, int]]:
    """(node name, op type, weight initializer, channel axis) of each weighted layer."""
    inits = {i.name for i in model.graph.initializer}
    out = []
    for node in model.graph.node:
        if node.op_type in WEIGHTED and len(node.input) > 1 and node.input[1] in inits:
            trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
            axis = {"Conv": 0, "ConvTranspose": 1}.get(node.op_type, 0 if trans_b else 1)
            out.append((node.name, node.op_type, node.input[1], axis))
    return out


def run(model: onnx.ModelProto, name: str, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return np.concatenate([sess.run(None, {name: x[i:i + 16]})[0] for i in range(0, len(x), 16)])


def sqnr(ref: np.ndarray, out: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(ref.astype(np.float64) ** 2) / max(np.sum((ref - out) ** 2.0), 1e-30)))


def with_weights(model: onnx.ModelProto, replaced: dict[str, np.ndarray]) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for init in out.graph.initializer:
        if init.name in replaced:
            init.CopyFrom(numpy_helper.from_array(replaced[init.name], init.name))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--eval", type=int, default=64)
    parser.add_argument("--per-layer", type=int, default=0)
    args = parser.parse_args()
    model = load_model(Path(args.model))
    spec = graph_inputs(model)[0]
    x = data.imagenet_samples(spec, 1, args.eval, data.imagenet_preprocess(256), "").eval
    ref = run(model, spec.name, x)
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    layers = weight_layers(model)
    rounded = {w: nearest(inits[w], axis) for _, _, w, axis in layers}
    out = run(with_weights(model, rounded), spec.name, x)
    top1 = float(np.mean(ref.argmax(1) == out.argmax(1)))
    print(f"{Path(args.model).name}: {len(layers)} weighted layers, {len(x)} held-out crops; all weights nearest "
          f"INT8, activations float: output SQNR {sqnr(ref, out):.2f} dB, top-1 agreement {top1:.3f}; weight "
          f"tensors' own SQNR min {min(sqnr(inits[w], rounded[w]) for w in rounded):.1f} dB")
    if args.per_layer:
        rows = []
        for node, op, w, _ in layers:
            one = run(with_weights(model, {w: rounded[w]}), spec.name, x)
            rows.append((sqnr(ref, one), node, op, sqnr(inits[w], rounded[w]), inits[w].shape))
        for db, node, op, own, shape in sorted(rows)[:args.per_layer]:
            print(f"  only {node} ({op} {list(shape)}) rounded: output {db:.2f} dB (weights' own SQNR {own:.1f} dB)")


if __name__ == "__main__":
    main()
