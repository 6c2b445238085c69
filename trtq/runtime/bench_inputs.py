"""Inputs for a latency benchmark: random arrays of the model's input shapes, or real samples tiled to a batch.

Latency does not depend on the values for the models trtq handles (dense Conv/Gemm/MatMul graphs
without data-dependent control flow), so random data is the default; `real_batch` takes samples
from calibration data for models where it does (e.g. NMS, early exits).

Shapes: a fixed dim is the model's; a dynamic dim comes from `--shape name:1x3x224x224` (the
notation of --min/--opt/--max-shapes, trtq.engine.profiles.parse_shapes). The first (batch) dim is
then replaced by each benchmarked batch size, unless the model fixes it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from trtq.engine.profiles import Shape, parse_shapes
from trtq.errors import ConfigError, DataError
from trtq.onnx_model.model import TensorSpec

FeedDict = dict[str, np.ndarray]


def sample_shape(spec: TensorSpec, given: Mapping[str, Shape], batch: int) -> Shape:
    """The shape `spec` is fed with at `batch`.

    Raises:
        ConfigError: a dynamic dim (other than the batch dim) has no value in `given`, the given
            shape has the wrong rank or contradicts a fixed dim, or the model fixes another batch size.
    """
    if spec.shape is None:
        raise ConfigError(f"input '{spec.name}' has no shape in the model", hint=f"give --shape {spec.name}:DIMS")
    shape = given.get(spec.name)
    if shape is not None and len(shape) != len(spec.shape):
        raise ConfigError(f"--shape: input '{spec.name}' has rank {len(spec.shape)} ({spec.shape_str()}), "
                          f"got {'x'.join(map(str, shape))}", hint=f"give {len(spec.shape)} dims")
    dims: list[int] = []
    for axis, fixed in enumerate(spec.shape):
        is_fixed = isinstance(fixed, int) and fixed > 0
        wanted = shape[axis] if shape is not None else None
        if axis == 0 and not is_fixed:
            dims.append(batch)
        elif is_fixed:
            if wanted is not None and wanted != fixed:
                raise ConfigError(f"--shape: input '{spec.name}' fixes dim {axis} to {fixed}, got {wanted}")
            if axis == 0 and fixed != batch:
                raise ConfigError(f"input '{spec.name}' has a fixed batch size {fixed}; cannot benchmark batch {batch}",
                                  hint=f"use --batch {fixed}")
            dims.append(int(fixed))
        elif wanted is not None:
            dims.append(wanted)
        else:
            example = "x".join(str(d) if isinstance(d, int) and d > 0 else ("1" if i == 0 else "224")
                               for i, d in enumerate(spec.shape))
            raise ConfigError(f"input '{spec.name}' has a dynamic dim {axis} ({spec.shape_str()})",
                              hint=f"give numbers for its dynamic dims, e.g. --shape {spec.name}:{example}")
    return tuple(dims)


def random_batch(inputs: Sequence[TensorSpec], batch: int, shapes: str | None = None, seed: int = 0) -> FeedDict:
    """Random feeds for every input at `batch`: standard normal floats, integers 0..9, random bools.

    Args:
        inputs: the model's inputs (trtq.onnx_model.model.graph_inputs).
        batch: the batch size.
        shapes: "--shape" text, e.g. "x:1x3x320x320" (its batch dim is replaced by `batch`).
        seed: the generator's seed.
    """
    given = parse_shapes(shapes, "shape")
    unknown = set(given) - {s.name for s in inputs}
    if unknown:
        raise ConfigError(f"--shape: the model has no input '{sorted(unknown)[0]}'",
                          hint=f"its inputs are {', '.join(s.name for s in inputs)}")
    rng = np.random.default_rng(seed)
    feed: FeedDict = {}
    for spec in inputs:
        shape = sample_shape(spec, given, batch)
        if np.issubdtype(spec.dtype, np.floating):
            feed[spec.name] = rng.standard_normal(shape).astype(spec.dtype)
        elif spec.dtype == np.bool_:
            feed[spec.name] = rng.integers(0, 2, shape).astype(np.bool_)
        else:
            feed[spec.name] = rng.integers(0, 10, shape).astype(spec.dtype)
    return feed


def real_batch(batches: Iterable[Mapping[str, np.ndarray]], batch: int) -> FeedDict:
    """`batch` real samples: the first ones of `batches`, repeated when there are fewer.

    Raises:
        DataError: `batches` is empty, or its batches have different shapes beyond the batch axis.
    """
    parts: list[Mapping[str, np.ndarray]] = []
    have = 0
    for feed in batches:
        parts.append(feed)
        have += int(next(iter(feed.values())).shape[0])
        if have >= batch:
            break
    if not parts:
        raise DataError("the benchmark data holds no samples", hint="check the --data path")
    try:
        joined = {name: np.concatenate([np.asarray(p[name]) for p in parts]) for name in parts[0]}
    except ValueError as exc:
        raise DataError(f"the benchmark data has batches of different shapes ({exc})",
                        hint="benchmark data of one shape, or random inputs with --shape") from None
    reps = -(-batch // have)
    return {name: np.concatenate([a] * reps)[:batch] if reps > 1 else a[:batch] for name, a in joined.items()}
