"""ACIQ: analytical clipping for integer quantization, as a trtq range algorithm.

Banner, Nahshan and Soudry, "Post training 4-bit quantization of convolutional networks for
rapid-deployment" (NeurIPS 2019), section 3: if the values are Laplace(0, b), the clipping value
that minimizes the expected squared error of M-bit uniform quantization (clipping + rounding) is
alpha* = c_M * b, with c_M = 2.83, 3.89, 5.03, 6.20, 7.41, 8.64, 9.89 for M = 2..8. b is the mean
absolute deviation; trtq's statistics are a histogram of |x| (symmetric ranges), so b = E|x|.

Registered through the entry-point group `trtq.algorithms` (see pyproject.toml): after
`pip install ./examples/trtq-aciq`, `trtq calibrate --method aciq` works, `--compare-methods`
compares it, and `--method auto` weighs it per tensor with the built-in candidates.
"""

from __future__ import annotations

import numpy as np

from trtq.calibrators import TensorStats, register_algorithm

LAPLACE_8BIT = 9.89  # c_8: alpha* / b for 8 bits (the paper's Laplace clipping values)


@register_algorithm("aciq", auto_candidate=True, auto_priority=50)
def aciq(stats: TensorStats, *, ratio: float = LAPLACE_8BIT) -> float:
    """amax = ratio * E|x| (capped at max |x|), E|x| from the |x| histogram's bin centres.

    Exact zeros sit at 0, not at the first bin's centre, so they lower E|x| as they should.
    """
    hist = stats.hist
    if hist.count == 0 or hist.exponent is None:
        return 0.0
    counts = hist.bins.astype(np.float64)
    counts[0] -= hist.zero_count
    centres = (np.arange(hist.num_bins) + 0.5) * hist.bin_width
    mean_abs = float(counts @ centres) / hist.count
    return float(min(ratio * mean_abs, hist.amax))
