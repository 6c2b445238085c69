"""Optimization-profile shapes for dynamic model inputs (pure CPU logic).

TensorRT needs, for every input with a dynamic dim, the smallest (MIN), the
tuned-for (OPT) and the largest (MAX) shape the engine will accept. trtq takes
them from the shapes of the data it actually fed the model during calibration,
unless the user overrides them (BuildConfig.min_shapes/opt_shapes/max_shapes,
e.g. "x:1x3x224x224,y:1x10").

Derived from observed shapes:
    MIN = elementwise minimum, MAX = elementwise maximum,
    OPT = the most common shape (ties: the largest by volume).
OPT is the mode rather than MAX because TensorRT tunes its kernels for OPT and,
with implicit calibration, calibrates at OPT only (calibration batches must have
the OPT shape): the mode is the shape most batches have, e.g. the full batch
size rather than the smaller last batch, and the typical image width of an OCR
recognizer rather than its widest sample.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from trtq.errors import ConfigError, DataError
from trtq.onnx_model.model import TensorSpec

Shape = tuple[int, ...]
KINDS = ("min", "opt", "max")


@dataclass(frozen=True)
class ShapeRange:
    """MIN/OPT/MAX shapes of one dynamic input; one optimization profile holds one per input."""

    name: str
    min: Shape
    opt: Shape
    max: Shape

    def to_dict(self) -> dict[str, object]:
        return {"input": self.name, "min": list(self.min), "opt": list(self.opt), "max": list(self.max)}


def _flag(option: str) -> str:
    return "--" + option.replace("_", "-")


def parse_shapes(text: str | None, option: str = "shapes") -> dict[str, Shape]:
    """Parse "x:1x3x224x224,y:1x10" into {"x": (1, 3, 224, 224), "y": (1, 10)}.

    Input names may contain ":" (e.g. "input:0"); the dims follow the last one.

    Args:
        text: the option value; None or "" gives {}.
        option: the config field it came from (min_shapes, ...), named in errors.

    Raises:
        ConfigError: an entry is malformed, a dim is not a positive integer, or a name repeats.
    """
    shapes: dict[str, Shape] = {}
    for entry in (text or "").split(","):
        entry = entry.strip()
        if not entry:
            continue
        name, sep, dims = entry.rpartition(":")
        name = name.strip()
        if not sep or not name or not dims.strip():
            raise ConfigError(f"{_flag(option)}: {entry!r} is not of the form name:dims",
                              hint=f"write e.g. {_flag(option)} x:1x3x224x224,y:1x10")
        try:
            shape = tuple(int(d) for d in dims.strip().lower().split("x"))
        except ValueError:
            shape = ()
        if not shape or any(d < 1 for d in shape):
            raise ConfigError(f"{_flag(option)}: input '{name}' has dims {dims.strip()!r}; "
                              "they must be positive integers joined by x", hint="write e.g. 1x3x224x224")
        if name in shapes:
            raise ConfigError(f"{_flag(option)}: input '{name}' is given twice")
        shapes[name] = shape
    return shapes


def record_shapes(observed: dict[str, list[Shape]], batch: Mapping[str, np.ndarray]) -> None:
    """Append the shape of each input of one feed dict to `observed` (name -> shapes)."""
    for name, array in batch.items():
        observed.setdefault(name, []).append(tuple(int(d) for d in np.shape(array)))


def opt_shape(shapes: Sequence[Shape]) -> Shape:
    """The most common shape; ties go to the largest by volume, then lexicographically."""
    counts = Counter(tuple(s) for s in shapes)
    return max(counts, key=lambda s: (counts[s], int(np.prod(s, dtype=np.int64)), s))


def _check_shape(spec: TensorSpec, shape: Shape, what: str, error: type[ConfigError | DataError]) -> None:
    """Raise `error` if `shape` has the wrong rank or changes a fixed dim of `spec`."""
    if spec.shape is None:
        return
    if len(shape) != len(spec.shape):
        raise error(f"{what}: input '{spec.name}' gets {len(shape)} dims ({'x'.join(map(str, shape))}) but the "
                    f"model's input has rank {len(spec.shape)} ({spec.shape_str()})",
                    hint=f"give {len(spec.shape)} dims for '{spec.name}'")
    for axis, (fixed, dim) in enumerate(zip(spec.shape, shape, strict=True)):
        if isinstance(fixed, int) and fixed > 0 and dim != fixed:
            raise error(f"{what}: input '{spec.name}' gets {dim} in dim {axis} but the model fixes it to "
                        f"{fixed} ({spec.shape_str()})", hint=f"keep dim {axis} of '{spec.name}' at {fixed}")


def _overrides(inputs: Sequence[TensorSpec], texts: Mapping[str, str | None]) -> dict[str, dict[str, Shape]]:
    """Parse and check the user's shapes: kind -> {input name -> shape}."""
    by_name = {spec.name: spec for spec in inputs}
    parsed = {}
    for kind in KINDS:
        option = f"{kind}_shapes"
        shapes = parse_shapes(texts.get(kind), option)
        for name, shape in shapes.items():
            if name not in by_name:
                raise ConfigError(f"{_flag(option)}: the model has no input '{name}'",
                                  hint=f"its inputs are {', '.join(by_name) or 'none'}")
            _check_shape(by_name[name], shape, _flag(option), ConfigError)
        parsed[kind] = shapes
    return parsed


def _range(spec: TensorSpec, seen: Sequence[Shape], given: Mapping[str, Shape | None]) -> ShapeRange:
    """MIN/OPT/MAX of one input from its observed shapes and the user's overrides."""
    for shape in seen:
        _check_shape(spec, shape, "calibration data", DataError)
    if seen:
        if len({len(s) for s in seen}) > 1:
            raise DataError(f"calibration data: input '{spec.name}' was fed arrays of different ranks")
        derived = {"min": tuple(np.min(seen, axis=0).tolist()), "opt": opt_shape(seen),
                   "max": tuple(np.max(seen, axis=0).tolist())}
    else:
        # Nothing observed: the missing kinds take the given ones (OPT first, it sits in between).
        fallback = given["opt"] or given["max"] or given["min"]
        if fallback is None:
            raise ConfigError(f"input '{spec.name}' has a dynamic shape ({spec.shape_str()}) and no data fixed it",
                              hint="pass --min-shapes, --opt-shapes and --max-shapes, e.g. "
                                   f"--opt-shapes {spec.name}:1x3x224x224")
        derived = {"min": given["min"] or given["opt"] or fallback, "opt": fallback,
                   "max": given["max"] or given["opt"] or fallback}
    shapes = {kind: tuple(int(d) for d in (given[kind] or derived[kind])) for kind in KINDS}
    if len({len(s) for s in shapes.values()}) > 1:
        raise ConfigError(f"input '{spec.name}': min/opt/max shapes have different ranks ({_describe(shapes)})")
    if not all(a <= b <= c for a, b, c in zip(shapes["min"], shapes["opt"], shapes["max"], strict=True)):
        raise ConfigError(f"input '{spec.name}': shapes must satisfy min <= opt <= max in every dim, got "
                          f"{_describe(shapes)}", hint="fix --min-shapes/--opt-shapes/--max-shapes")
    return ShapeRange(spec.name, shapes["min"], shapes["opt"], shapes["max"])


def _describe(shapes: Mapping[str, Shape]) -> str:
    return ", ".join(f"{kind} {'x'.join(map(str, shapes[kind]))}" for kind in KINDS)


def derive_profiles(inputs: Sequence[TensorSpec], observed: Mapping[str, Sequence[Sequence[int]]],
                    min_shapes: str | None = None, opt_shapes: str | None = None,
                    max_shapes: str | None = None) -> list[ShapeRange]:
    """One optimization profile: a ShapeRange for every dynamic input of the model.

    Args:
        inputs: the model's inputs (trtq.onnx_model.model.graph_inputs); fixed inputs need no range.
        observed: input name -> shapes of the arrays fed to it (e.g. from record_shapes).
        min_shapes, opt_shapes, max_shapes: user overrides like "x:1x3x224x224,y:1x10";
            each given shape replaces the derived one for that input.

    Returns:
        Ranges in model input order, empty when every input has a fixed shape.

    Raises:
        ConfigError: an override is malformed, names an unknown input, has the wrong rank,
            contradicts a fixed dim, or breaks min <= opt <= max; or a dynamic input has
            neither data nor overrides.
        DataError: observed shapes contradict the model's input.
    """
    overrides = _overrides(inputs, {"min": min_shapes, "opt": opt_shapes, "max": max_shapes})
    ranges = []
    for spec in inputs:
        if not spec.is_dynamic:
            continue
        seen = [tuple(int(d) for d in s) for s in observed.get(spec.name, ())]
        given = {kind: overrides[kind].get(spec.name) for kind in KINDS}
        ranges.append(_range(spec, seen, given))
    return ranges
