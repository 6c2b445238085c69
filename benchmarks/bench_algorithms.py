"""Speed of trtq.calibrators: range algorithms per 2048-bin histogram and observer update throughput.

    python benchmarks/bench_algorithms.py [--elements 16000000] [--repeat 20]

Prints, for histograms of real-looking activations (Gaussian, Laplacian, ReLU,
Gaussian with outliers), the median milliseconds per tensor of each range
algorithm; then the seconds and throughput of HistogramObserver.update and
TensorStats.update on one float32 tensor of --elements values, in one call and
in batches of 1M (same result, checked).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np

from trtq.calibrators import HistogramObserver, TensorStats, available_methods, compute_amax, estimate_error


def median_ms(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def activations(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    return {
        "gaussian": rng.standard_normal(n),
        "laplacian": rng.laplace(size=n),
        "relu": np.maximum(rng.standard_normal(n), 0.0),
        "outliers": np.concatenate([rng.standard_normal(n), rng.uniform(20, 60, 50)]),
    }


def bench_algorithms(repeat: int) -> None:
    print(f"range algorithms, median ms per tensor over {repeat} runs (2048-bin histogram of 1M values)")
    methods = [*available_methods(), "estimate_error"]
    print(f"{'data':<10} {'bins used':>9} " + " ".join(f"{m:>14}" for m in methods))
    for name, x in activations(np.random.default_rng(0), 1_000_000).items():
        stats = TensorStats()
        stats.update(x)
        used = int(np.flatnonzero(stats.hist.bins)[-1]) + 1
        cells = [median_ms(lambda m=m, s=stats: compute_amax(m, s), repeat) for m in methods[:-1]]
        cells.append(median_ms(lambda s=stats: estimate_error(s.hist.amax, s.hist), repeat))
        print(f"{name:<10} {used:>9} " + " ".join(f"{c:>14.3f}" for c in cells))


def bench_update(elements: int) -> None:
    x = np.random.default_rng(1).standard_normal(elements, dtype=np.float32)
    print(f"\nobserver update on one float32 tensor of {elements:,} values")
    for label, make in (("HistogramObserver", HistogramObserver), ("TensorStats (hist + ema)", TensorStats)):
        whole = make()
        start = time.perf_counter()
        whole.update(x)
        seconds = time.perf_counter() - start
        print(f"  {label:<26} one call   {seconds:7.3f} s  {elements / seconds / 1e6:8.1f} M values/s")
        batched = make()
        start = time.perf_counter()
        for i in range(0, elements, 1 << 20):
            batched.update(x[i : i + (1 << 20)])
        seconds = time.perf_counter() - start
        hist_a = whole if isinstance(whole, HistogramObserver) else whole.hist
        hist_b = batched if isinstance(batched, HistogramObserver) else batched.hist
        same = np.array_equal(hist_a.bins, hist_b.bins) and hist_a.exponent == hist_b.exponent
        print(f"  {label:<26} 1M batches {seconds:7.3f} s  {elements / seconds / 1e6:8.1f} M values/s"
              f"  (identical histogram: {same})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--elements", type=int, default=16_000_000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    bench_algorithms(args.repeat)
    bench_update(args.elements)


if __name__ == "__main__":
    main()
