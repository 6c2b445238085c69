"""Magnitude pruning of Conv/Gemm/MatMul weights before quantization: unstructured, or 2:4 structured.

    result = prune_model(model, PruneSettings(pattern="2:4"))
    result = prune_model(model, PruneSettings(sparsity=0.5, scope="global"))

- `magnitude=T`: every weight with |w| < T becomes 0.
- `sparsity=S`: the fraction S of the smallest-magnitude weights becomes 0, per layer (`scope="layer"`:
  each layer loses S of its weights) or over all layers at once (`scope="global"`: one threshold, so
  layers with many small weights lose more; Han et al. 2015, "Learning both Weights and Connections").
- `pattern="2:4"`: in every group of 4 consecutive input-channel weights the 2 largest magnitudes stay
  (trtq.onnx_model.sparsity says which axis; what TensorRT's sparse kernels run, BuilderFlag.SPARSE_WEIGHTS).
  Layers with fewer than 4 input channels per group (depthwise convolutions, an RGB stem) are left dense:
  TensorRT runs them dense whatever their zeros.

Ties are broken by position (np.argsort is stable), so a pruned model is byte-identical run after run.
Pruning without fine-tuning costs accuracy: `trtq prune --data` and `trtq build --prune` measure it.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from trtq.errors import ConfigError
from trtq.onnx_model.sparsity import (
    GROUP,
    KEEP,
    WeightUse,
    constant_tensors,
    groups_view,
    is_two_four_sparse,
    weight_uses,
)

PATTERNS = ("2:4",)
SCOPES = ("layer", "global")


@dataclass(frozen=True)
class PruneSettings:
    """Exactly one of magnitude, sparsity and pattern.

    Attributes:
        magnitude: zero every weight with |w| below this.
        sparsity: fraction in [0, 1) of the weights to zero (smallest magnitudes first).
        pattern: "2:4" structured sparsity along the input channels.
        scope: "layer" or "global" for `sparsity`.
        exclude_nodes: node names whose weights stay dense.
    """

    magnitude: float | None = None
    sparsity: float | None = None
    pattern: str | None = None
    scope: str = "layer"
    exclude_nodes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        given = [n for n in ("magnitude", "sparsity", "pattern") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ConfigError(f"pruning needs exactly one of --magnitude, --sparsity and --pattern, got "
                              f"{', '.join('--' + g for g in given) or 'none'}",
                              hint="e.g. --pattern 2:4, --sparsity 0.5 or --magnitude 1e-3")
        if self.magnitude is not None and not (math.isfinite(self.magnitude) and self.magnitude >= 0):
            raise ConfigError(f"--magnitude must be a finite number >= 0, got {self.magnitude}", hint="e.g. 1e-3")
        if self.sparsity is not None and not 0.0 <= self.sparsity < 1.0:
            raise ConfigError(f"--sparsity must be in [0, 1), got {self.sparsity}", hint="e.g. 0.5 zeroes half")
        if self.pattern is not None and self.pattern not in PATTERNS:
            raise ConfigError(f"pruning pattern {self.pattern!r} is not supported", hint="use --pattern 2:4")
        if self.scope not in SCOPES:
            raise ConfigError(f"pruning scope {self.scope!r} is not supported", hint="use layer or global")

    def describe(self) -> str:
        if self.pattern:
            return f"{self.pattern} structured"
        if self.magnitude is not None:
            return f"magnitude < {self.magnitude:g}"
        return f"{self.sparsity:g} sparsity ({self.scope})"


@dataclass(frozen=True)
class LayerSparsity:
    """One weight after pruning: how many of its values are zero, and whether it is 2:4."""

    node: str
    op_type: str
    weight: str
    shape: tuple[int, ...]
    zeros: int
    size: int
    two_four: bool
    pruned: bool  # False: left dense (excluded, or too few input channels for 2:4)

    @property
    def sparsity(self) -> float:
        return self.zeros / self.size if self.size else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"node": self.node, "op_type": self.op_type, "weight": self.weight, "shape": list(self.shape),
                "zeros": self.zeros, "size": self.size, "sparsity": round(self.sparsity, 6),
                "two_four": self.two_four, "pruned": self.pruned}


@dataclass(frozen=True)
class PruneResult:
    """The pruned model (a copy) and what happened to each weight."""

    model: onnx.ModelProto
    settings: PruneSettings
    layers: tuple[LayerSparsity, ...] = field(default_factory=tuple)

    @property
    def sparsity(self) -> float:
        """Zeros over all prunable weights (pruned or not)."""
        size = sum(layer.size for layer in self.layers)
        return sum(layer.zeros for layer in self.layers) / size if size else 0.0

    def summary(self) -> str:
        pruned = [layer for layer in self.layers if layer.pruned]
        two_four = sum(layer.two_four for layer in self.layers)
        return (f"pruned ({self.settings.describe()}): {len(pruned)} of {len(self.layers)} Conv/Gemm/MatMul weights, "
                f"{self.sparsity:.1%} of their values are zero, {two_four} layer(s) 2:4 sparse")

    def table(self) -> str:
        """One line per weight: node, shape, sparsity, 2:4."""
        width = max([len(layer.node) for layer in self.layers] + [4])
        lines = [f"{'node':<{width}}  {'op':<6} {'shape':<18} {'sparsity':>8}  2:4"]
        for layer in self.layers:
            shape = "x".join(map(str, layer.shape))
            mark = "yes" if layer.two_four else ("-" if layer.pruned else "dense")
            lines.append(f"{layer.node:<{width}}  {layer.op_type:<6} {shape:<18} {layer.sparsity:>8.1%}  {mark}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"settings": self.settings.describe(), "sparsity": round(self.sparsity, 6),
                "layers": [layer.to_dict() for layer in self.layers]}


def two_four_mask(weight: np.ndarray, in_axis: int) -> np.ndarray:
    """Boolean mask keeping the 2 largest |w| of every group of 4 consecutive input-channel weights."""
    groups = np.abs(groups_view(weight, in_axis))
    order = np.argsort(-groups, axis=-1, kind="stable")  # largest first; ties: the first position wins
    keep = np.zeros(groups.shape, bool)
    np.put_along_axis(keep, order[..., :KEEP], True, axis=-1)
    moved = np.moveaxis(weight, in_axis, -1)
    flat = keep.reshape(*keep.shape[:-2], -1)[..., : moved.shape[-1]]
    return np.moveaxis(flat, -1, in_axis)


def _smallest_mask(values: np.ndarray, count: int) -> np.ndarray:
    """Boolean mask (flat) that is False for the `count` smallest |values| (ties by position)."""
    keep = np.ones(values.size, bool)
    if count > 0:
        keep[np.argsort(np.abs(values).reshape(-1), kind="stable")[:count]] = False
    return keep


def _masks(weights: dict[str, np.ndarray], uses: list[WeightUse], settings: PruneSettings) -> dict[str, np.ndarray]:
    """initializer -> keep mask for each weight to prune."""
    if settings.pattern:
        return {u.initializer: two_four_mask(weights[u.initializer], u.in_axis) for u in uses
                if weights[u.initializer].shape[u.in_axis] >= GROUP}
    if settings.magnitude is not None:
        return {u.initializer: np.abs(weights[u.initializer]) >= settings.magnitude for u in uses}
    assert settings.sparsity is not None
    if settings.scope == "layer":
        return {u.initializer: _smallest_mask(w := weights[u.initializer], int(settings.sparsity * w.size))
                .reshape(w.shape) for u in uses}
    flat = np.concatenate([weights[u.initializer].reshape(-1) for u in uses]) if uses else np.zeros(0)
    keep = _smallest_mask(flat, int(settings.sparsity * flat.size))
    masks, start = {}, 0
    for u in uses:
        w = weights[u.initializer]
        masks[u.initializer] = keep[start:start + w.size].reshape(w.shape)
        start += w.size
    return masks


def prune_model(model: onnx.ModelProto, settings: PruneSettings) -> PruneResult:
    """Zero weights of a copy of `model` as `settings` say; `model` is not changed.

    Raises:
        ConfigError: an excluded node name is not in the model.
    """
    work = copy.deepcopy(model)
    all_uses = weight_uses(work)
    unknown = sorted(set(settings.exclude_nodes) - {u.node for u in all_uses})
    if unknown:
        raise ConfigError(f"--exclude-nodes names {unknown[0]!r}, which is no Conv/Gemm/MatMul with a constant weight",
                          hint="`trtq prune MODEL --pattern 2:4` lists the layers it can prune")
    uses = [u for u in all_uses if u.node not in settings.exclude_nodes]
    inits = constant_tensors(work)
    weights = {u.initializer: numpy_helper.to_array(inits[u.initializer]) for u in all_uses}
    masks = _masks(weights, uses, settings)
    for name, keep in masks.items():
        pruned = np.where(keep, weights[name], np.zeros((), weights[name].dtype)).astype(weights[name].dtype)
        weights[name] = pruned
        inits[name].CopyFrom(numpy_helper.from_array(pruned, inits[name].name))
    layers = tuple(
        LayerSparsity(u.node, u.op_type, u.initializer, tuple(weights[u.initializer].shape),
                      int(weights[u.initializer].size - np.count_nonzero(weights[u.initializer])),
                      int(weights[u.initializer].size), is_two_four_sparse(weights[u.initializer], u.in_axis),
                      u.initializer in masks)
        for u in all_uses)
    return PruneResult(work, settings, layers)


def settings_from_spec(spec: str, scope: str = "layer", exclude_nodes: tuple[str, ...] = ()) -> PruneSettings:
    """PruneSettings from `trtq build --prune`'s value: "2:4", "sparsity=S" or "magnitude=T".

    Raises:
        ConfigError: the value is none of those, or its number is out of range.
    """
    text = spec.strip()
    if text in PATTERNS:
        return PruneSettings(pattern=text, scope=scope, exclude_nodes=exclude_nodes)
    kind, _, number = text.partition("=")
    try:
        value = float(number)
    except ValueError:
        value = None
    if kind.strip() not in ("sparsity", "magnitude") or value is None:
        raise ConfigError(f"--prune {spec!r} is not a pruning setting",
                          hint="use --prune 2:4, --prune sparsity=0.5 or --prune magnitude=1e-3")
    return PruneSettings(**{kind.strip(): value}, scope=scope, exclude_nodes=exclude_nodes)  # type: ignore[arg-type]
