"""Choosing the INT8 grid point of every weight to minimise a layer's output error.

Each solver takes the weight as matrices W (G, O, K), the fixed scales s and the layer input's
second moments H (G, K, K) (trtq.qdq.layer_rows), and returns integers Q (G, O, K) in
[low, high]: by default [-127, 127], the symmetric INT8 range max|w| / 127 maps to. The scales
are per row (G, O), or per weight (G, O, K) for block-wise grids (INT4 weights: one scale per
block of inputs, expanded over the block, and [low, high] = [-8, 7]). The objective is the
output reconstruction error on the calibration inputs,

    E(Q) = sum_{g,o} (W - s Q)[g, o] H[g] (W - s Q)[g, o]^T,

which `row_errors` evaluates per row. The rows of one group share H but are independent, so
`keep_better` can take, row by row, whichever of two roundings has the smaller error: the
solvers end with it against nearest rounding, so they never do worse than nearest on E.

- `gptq_round`: closed form, Optimal Brain Quantization in the GPTQ form (Frantar et al. 2022,
  "GPTQ: Accurate Post-Training Quantization for Generative Pre-trained Transformers",
  Algorithm 1, with the "act-order" column permutation and 1 % damping): columns are rounded
  one at a time and the rounding error of each is spread over the not yet rounded columns
  through the inverse Hessian's Cholesky factor. Cost O(G O K^2) once.
- `adaround`: AdaRound (Nagel et al. 2020, "Up or Down? Adaptive Rounding for Post-Training
  Quantization"): each weight goes down or up from floor(W / s), relaxed by the rectified
  sigmoid h(V) = clip(sigmoid(V) (zeta - gamma) + gamma, 0, 1), zeta 1.1, gamma -0.1; Adam on
  E plus lambda * sum(1 - |2 h - 1|^beta) with beta annealed from 20 to 2 after a 20 % warm-up.
  Cost O(G O K^2) per iteration.
"""

from __future__ import annotations

import numpy as np

QMAX = 127
DAMPING = 0.01
ANCHOR = 0.1
ZETA, GAMMA = 1.1, -0.1


def grid(s: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The scales `s` broadcastable against W (G, O, K): per-row scales (G, O) get a trailing axis."""
    return s if s.ndim == w.ndim else s[..., None]


def nearest(w: np.ndarray, s: np.ndarray, low: int = -QMAX, high: int = QMAX) -> np.ndarray:
    """Round to nearest (half to even, as ONNX QuantizeLinear), clipped to [low, high]."""
    q: np.ndarray = np.clip(np.rint(w / grid(s, w)), low, high)
    return q


def row_errors(w: np.ndarray, s: np.ndarray, q: np.ndarray, h: np.ndarray) -> np.ndarray:
    """E per row (G, O): d H d^T with d = W - s Q."""
    d = w.astype(np.float64) - grid(s, w) * q
    e: np.ndarray = (np.matmul(d, h) * d).sum(-1)  # matmul: BLAS, where a plain einsum loops
    return e


def target_errors(b: np.ndarray, s: np.ndarray, q: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Per row (G, O), the error up to a constant when the target is not W X but given by B = W M^T:
    v H v^T - 2 v . b with v = s Q (see trtq.accuracy.weight_rounding's asymmetric objective)."""
    v = grid(s, q) * q
    e: np.ndarray = (np.matmul(v, h) * v).sum(-1) - 2 * (v * b).sum(-1)
    return e


def keep_better(w: np.ndarray, s: np.ndarray, h: np.ndarray, q: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """Per row, `q` if its error is not larger than `fallback`'s, else `fallback`'s row."""
    better = row_errors(w, s, q, h) <= row_errors(w, s, fallback, h)
    return np.where(better[..., None], q, fallback)


def anchored_weight(b: np.ndarray, h: np.ndarray, w: np.ndarray, strength: float | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
    """The asymmetric objective's least-squares weight, held near W: (W', H') minimising
    v H v^T - 2 v . b + strength * (v - W) D (v - W)^T, D = diag(H), per group.

    Along input directions the calibration rows barely excite, the plain least-squares weight
    (strength 0) can move far from W at no cost on those rows and at a large one on other data
    (and beyond the INT8 range); the ridge toward W, scaled by each input's own second moment,
    keeps the compensation where the data supports it. GPTQ then rounds W' against H'.
    """
    strength = ANCHOR if strength is None else strength
    h = h.astype(np.float64)
    diag = np.einsum("gkk->gk", h)
    diag = np.where(diag > 0, diag, np.maximum(diag.mean(-1, keepdims=True), 1e-12))
    regular = h + strength * diag[:, :, None] * np.eye(h.shape[-1])
    rhs = b.astype(np.float64) + strength * w.astype(np.float64) * diag[:, None, :]
    return np.swapaxes(np.linalg.solve(regular, np.swapaxes(rhs, 1, 2)), 1, 2), regular


def _damped_inverse_cholesky(h: np.ndarray) -> np.ndarray:
    """Upper Cholesky factor of (H + damping)^-1 per group (G, K, K); dead inputs get unit diagonals."""
    h = h.astype(np.float64).copy()
    diag = np.einsum("gkk->gk", h)
    dead = diag <= 0
    k = h.shape[-1]
    eye = np.eye(k)
    mean_diag = np.where(dead, 0.0, diag).sum(-1) / np.maximum((~dead).sum(-1), 1)
    h += eye * (DAMPING * np.maximum(mean_diag, 1e-12))[:, None, None] + dead[:, :, None] * eye
    inverse = np.linalg.inv(h)
    inverse = (inverse + np.swapaxes(inverse, 1, 2)) / 2
    lower = np.linalg.cholesky(inverse)
    return np.swapaxes(lower, 1, 2)


def gptq_round(w: np.ndarray, s: np.ndarray, h: np.ndarray, block: int = 128, low: int = -QMAX,
               high: int = QMAX, zeros: np.ndarray | None = None) -> np.ndarray:
    """GPTQ rounding of W (G, O, K) on the grid s ((G, O) or (G, O, K)) for second moments H, integers
    in [low, high] (module docstring). `block` is GPTQ's lazy-update block, not a quantization block.

    `zeros` (G, O, K, bool): weights that must stay 0 (pruned ones): they are set to 0 in their turn and
    their error is spread over the later columns, as SparseGPT does (Frantar & Alistarh 2023).
    """
    order = np.argsort(-np.einsum("gkk->gk", h), axis=-1, kind="stable")  # act-order: largest inputs first
    take = np.take_along_axis
    hp = take(take(h, order[:, :, None], 1), order[:, None, :], 2)
    u = _damped_inverse_cholesky(hp)
    work = take(w.astype(np.float64), order[:, None, :], 2)
    fixed = take(zeros, order[:, None, :], 2) if zeros is not None else np.zeros(work.shape, bool)
    q = np.zeros_like(work)
    scale = take(np.broadcast_to(grid(s, w), w.shape).astype(np.float64), order[:, None, :], 2)
    k = work.shape[-1]
    for start in range(0, k, block):
        stop = min(start + block, k)
        errors = np.zeros((*work.shape[:2], stop - start))
        for j in range(start, stop):
            col = work[:, :, j]
            q[:, :, j] = np.where(fixed[:, :, j], 0.0, np.clip(np.rint(col / scale[:, :, j]), low, high))
            err = (col - q[:, :, j] * scale[:, :, j]) / u[:, j, j][:, None]
            work[:, :, j:stop] -= err[..., None] * u[:, None, j, j:stop]
            errors[:, :, j - start] = err
        work[:, :, stop:] -= errors @ u[:, start:stop, stop:]
    inverse = np.argsort(order, axis=-1)
    q = take(q, inverse[:, None, :], 2)
    return keep_better(w, s, h, q, nearest(w, s, low, high))


def _rectified_sigmoid(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """h(V) and dh/dV."""
    sig = 1.0 / (1.0 + np.exp(-v))
    raw = sig * (ZETA - GAMMA) + GAMMA
    grad = np.where((raw > 0) & (raw < 1), sig * (1 - sig) * (ZETA - GAMMA), 0.0)
    return np.clip(raw, 0.0, 1.0), grad


def adaround(w: np.ndarray, s: np.ndarray, h: np.ndarray, iterations: int = 2000, lr: float = 0.01,
             weight: float = 3.0, warmup: float = 0.2, b: np.ndarray | None = None) -> np.ndarray:
    """AdaRound of W (G, O, K) on the grid s (G, O) for second moments H (module docstring).

    Every weight goes to floor(W / s) or one step above, so no weight moves by more than one
    step from W. With `b` (G, O, K), the objective is the asymmetric one of
    trtq.accuracy.weight_rounding, v H v^T - 2 v . b with v = s Q, whose optimum is the
    least-squares weight b H^-1; without it b = W H (plain reconstruction of W X). Bounding
    the choice by W's own floor and ceiling, not by the least-squares weight's, keeps the
    compensation of upstream errors from moving weights far on ill-conditioned moments.
    """
    scale = s[..., None].astype(np.float64)
    h = h.astype(np.float64)
    w = w.astype(np.float64)
    target = np.matmul(w, h) if b is None else b.astype(np.float64)
    ratio = w / scale
    floor = np.clip(np.floor(ratio), -QMAX, QMAX - 1)
    rest = np.clip(ratio - floor, 0.0, 1.0)
    v = -np.log((ZETA - GAMMA) / (np.clip(rest, 1e-4, 1 - 1e-4) - GAMMA) - 1)  # h(V) = rest at the start
    norm = max(float(row_errors(w, s, nearest(w, s), h).sum()), float((w * target).sum()) * 1e-8,
               1e-30)
    m1, m2 = np.zeros_like(v), np.zeros_like(v)
    b1, b2 = 0.9, 0.999
    for t in range(1, iterations + 1):
        hv, dh = _rectified_sigmoid(v)
        grad = 2.0 * (np.matmul(scale * (floor + hv), h) - target) * scale / norm
        if t > warmup * iterations:
            beta = 2 + (20 - 2) * (1 - (t - warmup * iterations) / ((1 - warmup) * iterations))
            c = 2 * hv - 1
            grad += weight * (-beta * np.abs(c) ** (beta - 1) * np.sign(c) * 2) / v.size
        grad *= dh
        m1 = b1 * m1 + (1 - b1) * grad
        m2 = b2 * m2 + (1 - b2) * grad * grad
        v -= lr * (m1 / (1 - b1**t)) / (np.sqrt(m2 / (1 - b2**t)) + 1e-8)
    hv, _ = _rectified_sigmoid(v)
    q = floor + (hv >= 0.5)
    if b is not None:
        better = target_errors(target, s, q, h) <= target_errors(target, s, nearest(w, s), h)
        return np.where(better[..., None], q, nearest(w, s))
    return keep_better(w, s, h, q, nearest(w, s))
