"""The registry of range algorithms: name -> function, their keyword parameters, and one entry point.

algorithms.py holds the single-method functions, auto.py the per-tensor choice among them; this
module sits above both, so neither imports the other through the registry.

    amax = compute_amax("percentile", stats, percentile=99.9)
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

from trtq.calibrators.algorithms import ema, entropy, minmax, mse, percentile
from trtq.calibrators.auto import auto
from trtq.calibrators.stats import TensorStats

Algorithm = Callable[..., float]

ALGORITHMS: dict[str, Algorithm] = {
    "entropy": entropy,
    "minmax": minmax,
    "percentile": percentile,
    "mse": mse,
    "ema": ema,
    "auto": auto,
}


def available_methods() -> list[str]:
    """Names of the registered algorithms, in registration order."""
    return list(ALGORITHMS)


def method_parameters(method: str) -> dict[str, object]:
    """Keyword parameters of `method` and their defaults."""
    signature = inspect.signature(_lookup(method))
    return {name: p.default for name, p in signature.parameters.items() if p.kind is p.KEYWORD_ONLY}


def compute_amax(method: str, stats: TensorStats, **params: object) -> float:
    """Run the algorithm `method` on one tensor's statistics.

    Args:
        method: one of available_methods().
        stats: the tensor's observers.
        **params: the method's keyword parameters (see method_parameters); unknown ones are errors.

    Returns:
        Symmetric amax >= 0 in the tensor's units (0.0 for all-zero or empty statistics).

    Raises:
        ValueError: unknown method or parameter, bad parameter value, or `ema` without its observer.
    """
    algorithm = _lookup(method)
    valid = method_parameters(method)
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise ValueError(f"method '{method}' has no parameter {', '.join(unknown)} "
                         f"(valid: {', '.join(valid) or 'none'})")
    return float(algorithm(stats, **params))


def _lookup(method: str) -> Algorithm:
    if method not in ALGORITHMS:
        raise ValueError(f"unknown calibration method '{method}' (valid: {', '.join(ALGORITHMS)})")
    return ALGORITHMS[method]
