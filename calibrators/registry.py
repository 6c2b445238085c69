"""The one registry of range algorithms, with the metadata everything else derives from.

Each algorithm is registered once, with what it needs: the statistics it reads ("histogram", or
"ema" for the moving-average observer), whether its result depends on the histogram's bin count,
its keyword parameters (types and defaults, read from its signature), the calibration settings
it takes from the config, whether `auto` may choose it, and the TensorRT cache header it maps to.
Config and CLI choices, settings validation, the cache-reuse keys, auto's candidates and the
cache header's calibrator name are all read from here, so a method registered from user code
works everywhere:

    @register_algorithm("p999", uses_bins=True)
    def p999(stats: TensorStats, *, keep: float = 99.9) -> float: ...

Packages register theirs through the entry-point group `trtq.algorithms` (an entry point names a
module or a function; loading it registers; a plain function is registered under the entry
point's name). Entry points are loaded on the first lookup.

The built-in algorithms register themselves in algorithms.py and auto.py; importing any module of
trtq.calibrators runs the package's __init__, which imports both, so the registry is never seen
without them.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

log = logging.getLogger(__name__)

Algorithm = Callable[..., float]
F = TypeVar("F", bound=Algorithm)
ENTRY_POINT_GROUP = "trtq.algorithms"
STATISTICS = ("histogram", "ema")
# Config settings an algorithm may take (CalibrationConfig fields); each is recorded in the cache's
# provenance, and passed to the function when it has a keyword parameter of that name.
CONFIG_SETTINGS = ("percentile", "ema_constant")


@dataclass(frozen=True)
class Parameter:
    """A keyword parameter of an algorithm: its name, annotated type (a string under postponed
    annotations, as written) and default."""

    name: str
    type: str
    default: object


@dataclass(frozen=True)
class AlgorithmInfo:
    """A registered algorithm and its metadata (see the module docstring)."""

    name: str
    function: Algorithm
    statistics: str
    uses_bins: bool
    parameters: tuple[Parameter, ...]
    config: tuple[str, ...]
    auto_candidate: bool
    auto_priority: int
    header: str | None

    @property
    def defaults(self) -> dict[str, object]:
        """parameter -> default."""
        return {p.name: p.default for p in self.parameters}

    @property
    def passed_settings(self) -> tuple[str, ...]:
        """The config settings passed to the function (those it has a parameter for)."""
        return tuple(s for s in self.config if s in self.defaults)


_REGISTRY: dict[str, AlgorithmInfo] = {}
_plugins_loaded = False


def register_algorithm(name: str, *, statistics: str = "histogram", uses_bins: bool = True,
                       config: tuple[str, ...] = (), auto_candidate: bool = False, auto_priority: int = 100,
                       header: str | None = None, replace: bool = False) -> Callable[[F], F]:
    """Decorator registering `function(stats, *, params...) -> amax` as the range algorithm `name`.

    Args:
        name: the method name (config `calibration.method`, `--method`, the cache's provenance).
        statistics: "histogram" (TensorStats.hist, always collected) or "ema" (the moving-average
            observer, collected only for such methods).
        uses_bins: the result depends on the histogram's bins (a cache made with another
            --num-bins is then not reused).
        config: CalibrationConfig settings the method takes (see CONFIG_SETTINGS).
        auto_candidate: `auto` may choose it (it must read the histogram only).
        auto_priority: order among auto's candidates (lower first; it breaks exact ties).
        header: the TensorRT cache header calibrator, e.g. "MinMaxCalibration"; None: the default.
        replace: allow replacing an algorithm of the same name.

    Raises:
        ValueError: a bad name or metadata, or the name is taken (without replace).
    """
    def decorate(function: F) -> F:
        _check(name, statistics, config, auto_candidate, replace)
        _REGISTRY[name] = AlgorithmInfo(name, function, statistics, uses_bins, _parameters(function),
                                        tuple(config), auto_candidate, auto_priority, header)
        return function

    return decorate


def _check(name: str, statistics: str, config: tuple[str, ...], auto_candidate: bool, replace: bool) -> None:
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"an algorithm name must be an identifier, got {name!r}")
    if name in _REGISTRY and not replace:
        raise ValueError(f"algorithm '{name}' is already registered (pass replace=True to replace it)")
    if statistics not in STATISTICS:
        raise ValueError(f"statistics must be one of {', '.join(STATISTICS)}, got {statistics!r}")
    unknown = sorted(set(config) - set(CONFIG_SETTINGS))
    if unknown:
        raise ValueError(f"unknown config setting(s) {', '.join(unknown)} (valid: {', '.join(CONFIG_SETTINGS)})")
    if auto_candidate and statistics != "histogram":
        raise ValueError("auto compares histogram methods only: an auto candidate needs statistics='histogram'")


def _parameters(function: Algorithm) -> tuple[Parameter, ...]:
    params = []
    for p in inspect.signature(function).parameters.values():
        if p.kind is p.KEYWORD_ONLY:
            if p.default is p.empty:
                raise ValueError(f"parameter '{p.name}' of {function.__name__} needs a default")
            annotation = p.annotation if p.annotation is not p.empty else "object"
            params.append(Parameter(p.name, str(getattr(annotation, "__name__", annotation)), p.default))
    return tuple(params)


def unregister_algorithm(name: str) -> None:
    """Remove a registered algorithm (for tests and plugins that replace themselves)."""
    _REGISTRY.pop(name, None)


def load_plugins() -> None:
    """Load the `trtq.algorithms` entry points once (a broken plugin is logged and skipped)."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            loaded = ep.load()
        except Exception as exc:  # a plugin's import error must not break trtq
            log.warning("trtq.algorithms entry point %s cannot be loaded: %s", ep.name, exc)
            continue
        if callable(loaded) and ep.name not in _REGISTRY:
            register_algorithm(ep.name)(loaded)


def algorithm(name: str) -> AlgorithmInfo:
    """The registered algorithm `name`.

    Raises:
        ValueError: no such algorithm.
    """
    load_plugins()
    if name not in _REGISTRY:
        raise ValueError(f"unknown calibration method '{name}' (valid: {', '.join(_REGISTRY)})")
    return _REGISTRY[name]


def registered() -> Mapping[str, AlgorithmInfo]:
    """name -> metadata of every algorithm, in registration order."""
    load_plugins()
    return dict(_REGISTRY)


def available_methods() -> list[str]:
    """Names of the registered algorithms, in registration order."""
    return list(registered())


def auto_candidates() -> tuple[str, ...]:
    """The methods `auto` compares, in their priority order (ties broken by registration order)."""
    infos = [i for i in registered().values() if i.auto_candidate]
    return tuple(i.name for i in sorted(infos, key=lambda i: i.auto_priority))


def method_parameters(method: str) -> dict[str, object]:
    """Keyword parameters of `method` and their defaults."""
    return algorithm(method).defaults


def compute_amax(method: str, stats: Any, **params: object) -> float:
    """Run the algorithm `method` on one tensor's statistics (a TensorStats).

    Args:
        method: one of available_methods().
        stats: the tensor's observers.
        **params: the method's keyword parameters (see method_parameters); unknown ones are errors.

    Returns:
        Symmetric amax >= 0 in the tensor's units (0.0 for all-zero or empty statistics).

    Raises:
        ValueError: unknown method or parameter, bad parameter value, or `ema` without its observer.
    """
    info = algorithm(method)
    valid = info.defaults
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise ValueError(f"method '{method}' has no parameter {', '.join(unknown)} "
                         f"(valid: {', '.join(valid) or 'none'})")
    return float(info.function(stats, **params))


def header_calibrators() -> dict[str, str]:
    """method -> TensorRT cache header calibrator, for the methods that have their own."""
    return {name: i.header for name, i in registered().items() if i.header}

