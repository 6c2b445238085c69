"""The configured range algorithm applied to every tensor's statistics, and the checks of its settings.

The registry (trtq.calibrators) knows each algorithm's function and keyword parameters; here the
calibration section of the config picks the method and its parameters, every tensor's amax is
computed (on all cores), and power-of-two rounding is applied. What a cache's provenance records
of those settings (recorded_params) is what cache reuse compares.

    amax = ranges_from_stats(stats, config.calibration)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from trtq.calibrators import TensorStats, compute_amax, method_parameters, round_to_power_of_two
from trtq.calibrators.auto import choose_method, method_counts
from trtq.config import CalibrationConfig
from trtq.errors import ConfigError

T = TypeVar("T")

# Methods whose ranges depend on the histogram's bins (minmax reads the exact max, ema its own observer).
HISTOGRAM_METHODS = ("entropy", "percentile", "mse", "auto")


def method_params(cal: CalibrationConfig) -> dict[str, object]:
    """Parameters the chosen method takes from the config: the percentile of `percentile`, and of
    `auto` (its percentile candidate)."""
    return {"percentile": cal.percentile} if cal.method in ("percentile", "auto") else {}


def recorded_params(cal: CalibrationConfig) -> dict[str, object]:
    """The algorithm parameters the provenance records: every parameter the method ran with (the
    config's and the algorithm's defaults), ema's averaging constant, and power-of-two rounding when on.

    A cache whose record differs was made with other settings and is not reused.
    """
    params = {**method_parameters(cal.method), **method_params(cal)}
    if cal.method == "ema":
        params["ema_constant"] = cal.ema_constant
    if cal.power_of_two:
        params["power_of_two"] = True
    return params


def ranges_from_stats(stats: Mapping[str, TensorStats], cal: CalibrationConfig) -> dict[str, float]:
    """tensor -> amax with the configured method (and power-of-two rounding)."""
    return ranges_and_counts(stats, cal)[0]


def ranges_and_counts(stats: Mapping[str, TensorStats],
                      cal: CalibrationConfig) -> tuple[dict[str, float], dict[str, int]]:
    """(tensor -> amax, and for `auto` how many tensors each candidate method won)."""
    params = method_params(cal)
    counts: dict[str, int] = {}
    try:
        if cal.method == "auto":  # the choices themselves, to count them (the amax compute_amax gives)
            choices = _per_tensor(stats, lambda s: choose_method(s, percentile=cal.percentile))
            amax, counts = {name: c.amax for name, c in choices.items()}, method_counts(choices)
        else:
            amax = _per_tensor(stats, lambda s: compute_amax(cal.method, s, **params))
    except _TensorFailed as failed:  # a bad parameter value, or ema without its observer
        raise ConfigError(f"cannot compute the {cal.method} range of tensor '{failed.name}': "
                          f"{failed.error}") from None
    if cal.power_of_two:
        amax = {name: round_to_power_of_two(value) for name, value in amax.items()}
    return amax, counts


class _TensorFailed(Exception):
    def __init__(self, name: str, error: ValueError) -> None:
        self.name, self.error = name, error


def _per_tensor(stats: Mapping[str, TensorStats], fn: Callable[[TensorStats], T]) -> dict[str, T]:
    """`fn` of every tensor's statistics, in the mapping's order, on all cores.

    The range searches (mse's O(bins^2) error table, entropy's KL sweep) are numpy work that
    releases the GIL, so threads scale; each tensor is independent, so the result is the same.
    """
    def run(item: tuple[str, TensorStats]) -> T:
        try:
            return fn(item[1])
        except ValueError as exc:
            raise _TensorFailed(item[0], exc) from exc

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        return dict(zip(stats, pool.map(run, stats.items()), strict=True))


def check_settings(cal: CalibrationConfig) -> None:
    """Refuse calibration settings the observers or the method would reject, before any work is done."""
    if cal.num_bins < 2:
        raise ConfigError(f"--num-bins must be at least 2, got {cal.num_bins}", hint="2048 is TensorRT's choice")
    if cal.method in ("percentile", "auto") and not 0.0 < cal.percentile <= 100.0:
        raise ConfigError(f"--percentile must be in (0, 100], got {cal.percentile}", hint="e.g. 99.99")
    if cal.method == "ema" and not 0.0 < cal.ema_constant <= 1.0:
        raise ConfigError(f"--ema-constant must be in (0, 1], got {cal.ema_constant}", hint="e.g. 0.01")
    if cal.save_stats and Path(cal.save_stats).is_dir():
        raise ConfigError(f"--save-stats {cal.save_stats} is a folder", hint="give a file name, e.g. stats.npz")
