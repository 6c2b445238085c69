"""Issue 13, mutation-check holes: planted bugs in the entropy threshold, percentile interpolation,
entropy tie-breaking and the model fingerprint must each fail a test here."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.cache.helpers import provenance_for
from trtq.cache.table import CalibrationTable
from trtq.cache.validate import validate_table
from trtq.calibrators import TensorStats, compute_amax
from trtq.calibrators.entropy import entropy_bin
from trtq.errors import CacheError
from trtq.onnx_model.model import fingerprint
from trtq.onnx_model.tensors import activation_tensors


def _reference_entropy_bin(bins: np.ndarray, num_levels: int = 128, start_bin: int = 128) -> int:
    """Plain-numpy port of pytorch-quantization's `_compute_amax_entropy` (NVIDIA/TensorRT,
    tools/pytorch-quantization/pytorch_quantization/calib/histogram.py), loop for loop: bin 0 set to
    bin 1, candidates start_bin..len(bins), np.digitize levels over linspace(0, i, L + 1), Q spread over
    the non-empty bins of each level, outliers added to P's last bin, scipy's entropy (normalized
    KL, inf where Q is 0 and P is not), and the last argmin. Returns the chosen i."""
    bins = np.array(bins, dtype=np.float64)
    bins[0] = bins[1]
    divergences = []
    for i in range(start_bin, len(bins) + 1):
        digitized = np.digitize(np.arange(i), np.linspace(0, i, num=num_levels + 1)) - 1
        digitized[bins[:i] == 0] = -1
        level_mass = np.zeros(num_levels)
        level_bins = np.zeros(num_levels)
        for idx, level in enumerate(digitized):
            if level != -1:
                level_mass[level] += bins[idx]
                level_bins[level] += 1
        q = np.array([level_mass[d] / level_bins[d] if d != -1 else 0.0 for d in digitized])
        p = bins[:i].copy()
        p[-1] += bins[i:].sum()
        p, q = p / p.sum(), q / q.sum()
        mask = p > 0
        if np.any(q[mask] == 0):
            divergences.append(np.inf)
        else:
            divergences.append(float(np.sum(p[mask] * np.log(p[mask] / q[mask]))))
    divergences = np.array(divergences)
    last_argmin = len(divergences) - 1 - int(np.argmin(divergences[::-1]))
    return start_bin + last_argmin


def _histograms() -> list[np.ndarray]:
    """Seeded 400-bin histograms (last bin occupied, so both searches see the same candidates)."""
    rng = np.random.default_rng(13)
    shapes = [np.abs(rng.laplace(0, 30, 20000)), np.abs(rng.normal(0, 60, 20000)),
              np.concatenate([np.abs(rng.normal(0, 20, 20000)), rng.uniform(100, 399, 40)]),
              np.maximum(rng.normal(10, 50, 20000), 0)]
    result = []
    for values in shapes:
        bins = np.bincount(np.minimum(values.astype(np.int64), 399), minlength=400)
        bins[-1] = max(bins[-1], 1)
        result.append(bins)
    return result


@pytest.mark.parametrize("index", range(4))
def test_entropy_bin_matches_an_independent_reference(index):
    bins = _histograms()[index]
    assert entropy_bin(bins) == _reference_entropy_bin(bins)


def _laplace_stats() -> TensorStats:
    stats = TensorStats(num_bins=2048, ema_constant=None)
    stats.update(np.random.default_rng(3).laplace(0, 1, 200_000).astype(np.float32))
    return stats


def test_entropy_amax_is_the_upper_edge_of_the_chosen_bin():
    stats = _laplace_stats()
    best = entropy_bin(stats.hist.bins)
    assert best is not None and (best + 2) * stats.hist.bin_width < stats.hist.amax  # the cap cannot hide a shift
    assert compute_amax("entropy", stats) == best * stats.hist.bin_width


def test_percentile_interpolates_inside_the_crossing_bin_exactly():
    # bin width 1 (max 7.5 < 8 bins x 2**0): 10 values in bin 0, 8 in bin 2, 2 in bin 7; none exactly zero.
    stats = TensorStats(num_bins=8, ema_constant=None)
    stats.update(np.array([0.5] * 10 + [2.5] * 8 + [7.5] * 2, dtype=np.float32))
    assert stats.hist.bin_width == 1.0 and stats.hist.bins.tolist() == [10, 0, 8, 0, 0, 0, 0, 2]
    # 60 % of 20 = 12 values: 10 lie below edge 2, the other 2 are a quarter of bin 2's 8.
    assert compute_amax("percentile", stats, percentile=60.0) == 2.25
    assert compute_amax("percentile", stats, percentile=50.0) == 1.0  # exactly the 10 of bin 0: its upper edge
    assert compute_amax("percentile", stats, percentile=92.5) == 7.25  # 18.5 values: a quarter into bin 7


def test_entropy_ties_go_to_the_largest_candidate():
    # Bin 127 is the only occupied bin below 128, and bins 128..255 come in equal pairs: keeping 128 bins
    # (P and Q both all on bin 127) and keeping all 256 (Q's pairs equal P) both give KL exactly 0.
    bins = np.zeros(256, dtype=np.int64)
    bins[127] = 1
    bins[128:] = np.repeat(np.arange(1, 65), 2)
    assert entropy_bin(bins) == 256 == _reference_entropy_bin(bins)
    # The small case by hand: [0, 1, 2, 2] into 2 levels: i = 2 (P = [0, 5] ~ Q = [0, 1]) ties i = 4 (Q = P).
    assert entropy_bin(np.array([0, 1, 2, 2]), num_levels=2, start_bin=2, flatten_zero_bin=False) == 4


def _model(stride: int = 1, axis: int = 1, size: int = 4, const: float = 0.5):
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((3, 2, 1, 1)).astype(np.float32), "w")
    nodes = [helper.make_node("Constant", [], ["k"], value=numpy_helper.from_array(np.array([const], np.float32))),
             helper.make_node("Mul", ["x", "k"], ["xk"]),
             helper.make_node("Conv", ["xk", "w"], ["c"], strides=[stride, stride]),
             helper.make_node("Softmax", ["c"], ["y"], axis=axis)]
    out = (size - 1) // stride + 1
    graph = helper.make_graph(nodes, "fp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, size, size])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, out, out])], [w])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize(("changed", "what"), [
    ({"stride": 2}, "graph"), ({"axis": 2}, "graph"), ({"size": 8}, "graph"), ({"const": 0.25}, "weights")])
def test_the_fingerprint_covers_attributes_shapes_and_constant_weights(changed, what):
    base, other = _model(), _model(**changed)
    fp_base, fp_other = fingerprint(base), fingerprint(other)
    assert (fp_base.graph != fp_other.graph) == (what == "graph")
    assert (fp_base.weights != fp_other.weights) == (what == "weights")
    names = activation_tensors(base)
    table = CalibrationTable({n: 1.0 for n in names}, provenance=provenance_for(fp_base, names))
    with pytest.raises(CacheError, match=f"the {what} changed"):
        validate_table(table, fingerprint=fp_other, tensor_names=activation_tensors(other))
