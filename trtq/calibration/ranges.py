"""The configured range algorithm applied to every tensor's statistics, and the checks of its settings.

The registry (trtq.calibrators.registry) knows each algorithm's function, parameters and settings; here the
calibration section of the config picks the method and its parameters, every tensor's amax is
computed (on all cores), and power-of-two rounding is applied. What a cache's provenance records
of those settings (recorded_params) is what cache reuse compares.

    amax = ranges_from_stats(stats, config.calibration)
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from trtq.calibrators import TensorStats, compute_amax, round_to_power_of_two, round_to_power_of_two_scale
from trtq.calibrators.auto import choose_method
from trtq.calibrators.registry import AlgorithmInfo, algorithm, available_methods
from trtq.config import CalibrationConfig
from trtq.errors import ConfigError, DataError
from trtq.qdq.scales import AMAX_FLOOR

T = TypeVar("T")

def method_info(method: str) -> AlgorithmInfo:
    """The registry's metadata of `method`.

    Raises:
        ConfigError: no algorithm of that name is registered (the hint names the closest one).
    """
    try:
        return algorithm(method)
    except ValueError:
        names = available_methods()
        close = difflib.get_close_matches(method, names, n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"choose one of {', '.join(names)}"
        raise ConfigError(f"unknown calibration method '{method}'", hint=hint) from None


def uses_bins(method: str) -> bool:
    """True if the method's ranges depend on the histogram's bins (not minmax: the exact max; not ema)."""
    return method_info(method).uses_bins


def needs_ema(method: str) -> bool:
    """True if the method reads the moving-average observer, which is collected only for such methods."""
    return method_info(method).statistics == "ema"


def method_params(cal: CalibrationConfig) -> dict[str, object]:
    """Parameters the chosen method takes from the config (e.g. the percentile of `percentile`, and of
    `auto` for its percentile candidate): the registered settings it has a parameter for."""
    return {name: getattr(cal, name) for name in method_info(cal.method).passed_settings}


def recorded_params(cal: CalibrationConfig, pow2: bool = False) -> dict[str, object]:
    """The algorithm parameters the provenance records: every parameter the method ran with (the
    config's and the algorithm's defaults), ema's averaging constant, and power-of-two rounding when on
    (`power_of_two`: amax = 2^k; `pow2`, QuantizeConfig.pow2: scale = amax / 127 = 2^k).

    A cache whose record differs was made with other settings and is not reused.
    """
    info = method_info(cal.method)
    params = {**info.defaults, **method_params(cal)}
    for name in info.config:  # settings recorded though not passed (ema's averaging constant)
        params.setdefault(name, getattr(cal, name))
    if cal.power_of_two:
        params["power_of_two"] = True
    if pow2:
        params["pow2"] = True
    return params


def ranges_from_stats(stats: Mapping[str, TensorStats], cal: CalibrationConfig,
                      pow2: bool = False) -> dict[str, float]:
    """tensor -> amax with the configured method (and power-of-two rounding)."""
    return ranges_and_counts(stats, cal, pow2)[0]


def ranges_and_counts(stats: Mapping[str, TensorStats], cal: CalibrationConfig,
                      pow2: bool = False) -> tuple[dict[str, float], dict[str, int]]:
    """(tensor -> amax, and for `auto` how many tensors each candidate method won).

    `pow2` (QuantizeConfig.pow2) rounds every amax up to 127 * 2^k, so that the INT8 scale is 2^k.

    Raises:
        ConfigError: a range cannot be computed, or both power-of-two roundings are asked for.
    """
    amax, methods = ranges_and_methods(stats, cal, pow2)
    return amax, method_counts_of(methods) if cal.method == "auto" else {}


def method_counts_of(methods: Mapping[str, str]) -> dict[str, int]:
    """How many tensors each method made the range of, most first (as calibrators.auto.method_counts)."""
    counts: dict[str, int] = {}
    for method in methods.values():
        counts[method] = counts.get(method, 0) + 1
    return dict(sorted(counts.items(), key=lambda item: -item[1]))


def ranges_and_methods(stats: Mapping[str, TensorStats], cal: CalibrationConfig,
                       pow2: bool = False) -> tuple[dict[str, float], dict[str, str]]:
    """(tensor -> amax, tensor -> the method that made it: auto's per-tensor choice, else the method).

    Raises:
        ConfigError: as ranges_and_counts.
    """
    check_pow2(cal, pow2)
    params = method_params(cal)
    try:
        if cal.method == "auto":  # the choices themselves, to name them (the amax compute_amax gives)
            choices = _per_tensor(stats, lambda s: choose_method(s, percentile=cal.percentile))
            amax = {name: c.amax for name, c in choices.items()}
            methods = {name: c.method for name, c in choices.items()}
        else:
            amax = _per_tensor(stats, lambda s: compute_amax(cal.method, s, **params))
            methods = dict.fromkeys(amax, cal.method)
    except _TensorFailed as failed:  # a bad parameter value, or ema without its observer
        raise ConfigError(f"cannot compute the {cal.method} range of tensor '{failed.name}': "
                          f"{failed.error}") from None
    if cal.power_of_two:
        amax = {name: round_to_power_of_two(value) for name, value in amax.items()}
    # The floor first, so that a dead tensor's scale is a power of two too.
    amax = {name: value if value > 0 else AMAX_FLOOR for name, value in amax.items()}
    if pow2:
        amax = {name: round_to_power_of_two_scale(value) for name, value in amax.items()}
    # A tensor that was constant zero gets amax 0, but a zero scale can never be written or applied
    # (TensorRT rejects it); any positive scale quantizes its zeros exactly, so take the Q/DQ floor.
    return {name: value if value > 0 else AMAX_FLOOR for name, value in amax.items()}, methods


def range_warnings(stats: Mapping[str, TensorStats], nonfinite: Mapping[str, int]) -> list[str]:
    """Say which tensors got the floor range; refuse tensors that had no finite value at all.

    Raises:
        DataError: a tensor's every value was NaN/Inf (ignored with --nan-policy ignore): it has no range.
    """
    empty = [name for name, s in stats.items() if s.count == 0 and nonfinite.get(name)]
    if empty:
        more = f"; {len(empty) - 1} more tensor(s) too" if len(empty) > 1 else ""
        raise DataError(f"tensor {empty[0]!r} had no finite value during calibration (all {nonfinite[empty[0]]} "
                        f"values were NaN/Inf{more}): it has no range",
                        hint="check the model and the data; --nan-policy ignore skips some NaN/Inf values, "
                             "it cannot make a range from none")
    zero = [name for name, s in stats.items() if s.hist.amax == 0]
    if not zero:
        return []
    what = "were constant zero" if all(stats[n].count for n in zero) else "were constant zero or saw no value"
    return [f"{len(zero)} tensor(s) {what} during calibration (first: {zero[0]!r}); their range is set to "
            f"amax {AMAX_FLOOR:g}, since a zero scale cannot be written or applied"]


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


def check_pow2(cal: CalibrationConfig, pow2: bool) -> None:
    """Refuse --pow2 together with --power-of-two (ConfigError): they round the ranges two different ways."""
    if pow2 and cal.power_of_two:
        raise ConfigError("--pow2 and --power-of-two round the ranges two different ways",
                          hint="--pow2 makes the scales powers of two (what accelerators need); drop --power-of-two")


def check_settings(cal: CalibrationConfig) -> None:
    """Refuse calibration settings the observers or the method would reject, before any work is done."""
    if cal.num_bins < 2:
        raise ConfigError(f"--num-bins must be at least 2, got {cal.num_bins}", hint="2048 is TensorRT's choice")
    settings = method_info(cal.method).config
    if "percentile" in settings and not 0.0 < cal.percentile <= 100.0:
        raise ConfigError(f"--percentile must be in (0, 100], got {cal.percentile}", hint="e.g. 99.99")
    if "ema_constant" in settings and not 0.0 < cal.ema_constant <= 1.0:
        raise ConfigError(f"--ema-constant must be in (0, 1], got {cal.ema_constant}", hint="e.g. 0.01")
    if cal.memory_budget < 1:
        raise ConfigError(f"--memory-budget must be at least 1 MiB, got {cal.memory_budget}",
                          hint="the default, 512, suits most machines")
    if cal.save_stats and Path(cal.save_stats).is_dir():
        raise ConfigError(f"--save-stats {cal.save_stats} is a folder", hint="give a file name, e.g. stats.npz")
