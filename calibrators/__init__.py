"""trtq.calibrators: observers, range algorithms and TensorRT calibrator subclasses.

The bottom of the house: it imports numpy (and TensorRT lazily), never the
modules of trtq above it (trtq.errors excepted).

    stats = TensorStats()               # histogram of |x| + moving-average min/max
    for batch in activations:
        stats.update(batch)
    amax = compute_amax("entropy", stats)
"""

from trtq.calibrators.algorithms import estimate_error, round_to_power_of_two, round_to_power_of_two_scale
from trtq.calibrators.auto import choose_method
from trtq.calibrators.channels import ChannelObserver
from trtq.calibrators.histogram import HistogramObserver
from trtq.calibrators.observers import (
    EmaMinMaxObserver,
    MinMaxObserver,
    Observer,
    count_nonfinite,
    finite_values,
)
from trtq.calibrators.registry import (
    AlgorithmInfo,
    algorithm,
    auto_candidates,
    available_methods,
    compute_amax,
    method_parameters,
    register_algorithm,
)
from trtq.calibrators.stats import TensorStats
from trtq.calibrators.storage import load_observers, merge_observer_sets, save_observers

__all__ = [
    "AlgorithmInfo",
    "ChannelObserver",
    "EmaMinMaxObserver",
    "HistogramObserver",
    "MinMaxObserver",
    "Observer",
    "TensorStats",
    "algorithm",
    "auto_candidates",
    "available_methods",
    "choose_method",
    "compute_amax",
    "count_nonfinite",
    "estimate_error",
    "finite_values",
    "load_observers",
    "merge_observer_sets",
    "method_parameters",
    "register_algorithm",
    "round_to_power_of_two",
    "round_to_power_of_two_scale",
    "save_observers",
]
