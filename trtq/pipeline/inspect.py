"""`trtq inspect`: what a model looks like to trtq."""

from __future__ import annotations

import collections
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trtq.onnx_model import model as model_io
from trtq.onnx_model.tensors import activation_tensors


@dataclass(frozen=True)
class ModelSummary:
    """Facts about an ONNX model relevant to calibration and quantization."""

    path: str
    ir_version: int
    opset: int
    producer: str
    inputs: list[model_io.TensorSpec]
    outputs: list[model_io.TensorSpec]
    op_counts: list[tuple[str, int]]
    calibrated_all: list[str]
    calibrated_quantizable: list[str]
    external_data: list[str]
    has_qdq: bool

    def to_dict(self) -> dict[str, Any]:
        def spec(s: model_io.TensorSpec) -> dict[str, Any]:
            return {"name": s.name, "shape": list(s.shape) if s.shape is not None else None,
                    "dtype": str(s.dtype)}

        return {
            "path": self.path, "ir_version": self.ir_version, "opset": self.opset,
            "producer": self.producer, "inputs": [spec(s) for s in self.inputs],
            "outputs": [spec(s) for s in self.outputs], "op_counts": dict(self.op_counts),
            "calibrated_tensors": {"all": self.calibrated_all, "quantizable": self.calibrated_quantizable},
            "external_data": self.external_data, "has_qdq": self.has_qdq,
        }


def inspect_model(path: str | Path) -> ModelSummary:
    """Summarise the model at `path` (weights are not loaded).

    Raises:
        ModelError: the model is missing or unreadable.
    """
    model = model_io.load_model(path, load_weights=False)
    ops = collections.Counter(node.op_type for node in model.graph.node)
    return ModelSummary(
        path=str(path),
        ir_version=model.ir_version,
        opset=model_io.opset_version(model),
        producer=f"{model.producer_name} {model.producer_version}".strip(),
        inputs=model_io.graph_inputs(model),
        outputs=model_io.graph_outputs(model),
        op_counts=ops.most_common(),
        calibrated_all=activation_tensors(model, "all"),
        calibrated_quantizable=activation_tensors(model, "quantizable"),
        external_data=model_io.external_data_files(model),
        has_qdq=bool(ops.get("QuantizeLinear") or ops.get("DequantizeLinear")),
    )


def shape_text(spec: model_io.TensorSpec) -> str:
    """`1x3x224x224` for fixed shapes; with a symbolic dim, `[N, 3, 224, 224]` (as Polygraphy prints shapes),
    since `x` between names such as `p2o.DynamicDimension.0` cannot be read back."""
    if spec.shape is None or all(isinstance(d, int) for d in spec.shape):
        return spec.shape_str()
    return "[" + ", ".join(str(d) for d in spec.shape) + "]"


def render_summary(summary: ModelSummary, list_tensors: bool = False) -> str:
    """Human-readable text of a ModelSummary."""
    lines = [
        f"model     {summary.path}",
        f"format    IR {summary.ir_version}, opset {summary.opset}, producer {summary.producer or '-'}",
        "inputs",
        *(f"  {s.name:<32} {shape_text(s):<24} {s.dtype}" for s in summary.inputs),
        "outputs",
        *(f"  {s.name:<32} {shape_text(s):<24} {s.dtype}" for s in summary.outputs),
        f"nodes     {sum(n for _, n in summary.op_counts)}",
        *(f"  {op:<24} {n}" for op, n in summary.op_counts),
        f"calibrated tensors  {len(summary.calibrated_all)} (all float activations), "
        f"{len(summary.calibrated_quantizable)} (inputs of quantizable ops)",
    ]
    if list_tensors:
        lines += [f"  {name}" for name in summary.calibrated_all]
    lines.append(f"external data  {', '.join(summary.external_data) or 'none'}")
    if summary.has_qdq:
        lines.append("note      the model already has Q/DQ nodes (explicitly quantized)")
    return "\n".join(lines)
