"""A weighted layer as matrix products, for rounding its weight against its inputs.

Every Conv, ConvTranspose, Gemm and MatMul computes, per group g and output position,
y[g, o] = sum_k W[g, o, k] * x[g, k]: the weight as a matrix (G, O, K) and the layer input
as rows (G, R, K), one row per output position (im2col). The reconstruction error of a
rounded weight W' on inputs X is then sum_g ||(W - W')[g] X[g]^T||^2 = tr(dW H dW^T) with
the second moments H[g] = X[g]^T X[g], which trtq.accuracy.weight_rounding accumulates.

- Conv (2-D and 1-D): rows are the (C/G * kh * kw) input patches of each output pixel.
- ConvTranspose (group 1): the same as a Conv with the flipped, transposed kernel over the
  input with (stride - 1) zeros between pixels, padded by dilation * (k - 1) - pad.
- Gemm (B constant) and MatMul (2-D B constant): rows are the rows of A.

`LayerShape.rows(x, count, rng)` draws `count` output positions at random (all when fewer):
bounded memory for large activations.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from numpy.lib.stride_tricks import sliding_window_view

SUPPORTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def _attr(node: onnx.NodeProto, name: str, default: object) -> object:
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


@dataclass(frozen=True)
class LayerShape:
    """How one node's weight and input map to (G, O, K) matrices and (G, R, K) rows."""

    op_type: str
    weight_shape: tuple[int, ...]
    group: int = 1
    strides: tuple[int, ...] = (1, 1)
    dilations: tuple[int, ...] = (1, 1)
    pads: tuple[int, ...] = (0, 0, 0, 0)  # begin_h, begin_w, end_h, end_w (after 1-D -> 2-D)
    trans_a: bool = False
    trans_b: bool = False
    one_d: bool = False

    # -- weights ----------------------------------------------------------------------------
    def matrix(self, w: np.ndarray) -> np.ndarray:
        """The weight as (G, O, K)."""
        if self.op_type == "Conv":
            o = w.shape[0]
            return w.reshape(self.group, o // self.group, -1)
        if self.op_type == "ConvTranspose":
            return np.flip(np.swapaxes(w, 0, 1), axis=tuple(range(2, w.ndim))).reshape(1, w.shape[1], -1)
        if self.op_type == "Gemm":
            gemm: np.ndarray = (w if self.trans_b else w.T)[None]
            return gemm
        matmul: np.ndarray = w.T[None]  # MatMul B[K, N]
        return matmul

    def weight(self, m: np.ndarray) -> np.ndarray:
        """Inverse of `matrix`: the (G, O, K) matrix back in the node's weight layout."""
        if self.op_type == "Conv":
            return m.reshape(self.weight_shape)
        if self.op_type == "ConvTranspose":
            cin, cout, *k = self.weight_shape
            w = np.flip(m.reshape(cout, cin, *k), axis=tuple(range(2, 2 + len(k))))
            return np.ascontiguousarray(np.swapaxes(w, 0, 1))
        if self.op_type == "Gemm":
            back: np.ndarray = m[0] if self.trans_b else m[0].T
            return back
        return np.ascontiguousarray(m[0].T)

    def channel_index(self, axis: int | None) -> np.ndarray:
        """(G, O) index of each matrix row into the per-channel scale along `axis` (zeros: per-tensor)."""
        g, o = self.group, self._outputs() // self.group
        if axis is None:
            return np.zeros((g, o), dtype=np.int64)
        return np.arange(g * o).reshape(g, o)

    def _outputs(self) -> int:
        if self.op_type == "Conv":
            return self.weight_shape[0]
        if self.op_type == "ConvTranspose":
            return self.weight_shape[1]
        if self.op_type == "Gemm":
            return self.weight_shape[0] if self.trans_b else self.weight_shape[1]
        return self.weight_shape[1]

    # -- inputs -----------------------------------------------------------------------------
    def rows(self, x: np.ndarray, count: int | None, rng: np.random.Generator) -> np.ndarray:
        """`count` random rows (G, R, K) of the layer input `x` (all rows when count is None or larger)."""
        x = np.asarray(x, dtype=np.float32)
        if self.op_type in ("Gemm", "MatMul"):
            a = (x.T if self.trans_a else x).reshape(-1, x.shape[-2] if self.trans_a else x.shape[-1])
            return _pick(a, count, rng)[None]
        if self.one_d:
            x = x[:, :, None, :]
        if self.op_type == "ConvTranspose":
            x = self._spread(x)
        windows = self._windows(x)  # (N, C, Ho, Wo, kh, kw), a view
        n, _, ho, wo = windows.shape[:4]
        flat = np.arange(n * ho * wo)
        chosen = flat if count is None or count >= flat.size else np.sort(rng.choice(flat.size, count, replace=False))
        i, rest = np.divmod(chosen, ho * wo)
        r, s = np.divmod(rest, wo)
        patches = windows[i, :, r, s]  # (R, C, kh, kw)
        return np.ascontiguousarray(patches.reshape(len(chosen), self.group, -1).swapaxes(0, 1))

    def _kernel(self) -> tuple[int, int]:
        k = self.weight_shape[2:]
        return (1, int(k[0])) if self.one_d else (int(k[0]), int(k[1]))

    def _windows(self, x: np.ndarray) -> np.ndarray:
        kh, kw = self._kernel()
        dh, dw = self.dilations
        bh, bw, eh, ew = self.pads
        x = np.pad(x, ((0, 0), (0, 0), (max(bh, 0), max(eh, 0)), (max(bw, 0), max(ew, 0))))
        x = x[:, :, max(-bh, 0):x.shape[2] - max(-eh, 0), max(-bw, 0):x.shape[3] - max(-ew, 0)]
        win = sliding_window_view(x, (dh * (kh - 1) + 1, dw * (kw - 1) + 1), axis=(2, 3))
        return win[:, :, ::self.strides[0], ::self.strides[1], ::dh, ::dw]

    def _spread(self, x: np.ndarray) -> np.ndarray:
        """ConvTranspose input with stride - 1 zeros between pixels (the pads are set by `layer_shape`)."""
        sh, sw = self.strides
        n, c, h, w = x.shape
        out = np.zeros((n, c, (h - 1) * sh + 1, (w - 1) * sw + 1), dtype=x.dtype)
        out[:, :, ::sh, ::sw] = x
        return out


def _pick(a: np.ndarray, count: int | None, rng: np.random.Generator) -> np.ndarray:
    if count is None or count >= len(a):
        return np.ascontiguousarray(a)
    return np.ascontiguousarray(a[np.sort(rng.choice(len(a), count, replace=False))])


def layer_shape(node: onnx.NodeProto, weight_shape: tuple[int, ...]) -> LayerShape | str:
    """The LayerShape of `node` with a constant weight of `weight_shape`, or why it is not supported."""
    op = node.op_type
    if op == "Gemm":
        if len(weight_shape) != 2:
            return "Gemm weight is not 2-D"
        return LayerShape(op, weight_shape, trans_a=bool(_attr(node, "transA", 0)),
                          trans_b=bool(_attr(node, "transB", 0)))
    if op == "MatMul":
        return LayerShape(op, weight_shape) if len(weight_shape) == 2 else "MatMul weight is not 2-D"
    if op not in ("Conv", "ConvTranspose"):
        return f"{op} is not a weighted layer"
    spatial = len(weight_shape) - 2
    if spatial not in (1, 2):
        return f"{spatial}-D convolutions are not supported"
    if _attr(node, "auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET", b"VALID", "VALID"):
        return "auto_pad SAME is not supported"
    group = int(_attr(node, "group", 1))  # type: ignore[call-overload]
    strides = list(_attr(node, "strides", [1] * spatial))  # type: ignore[call-overload]
    dilations = list(_attr(node, "dilations", [1] * spatial))  # type: ignore[call-overload]
    pads = list(_attr(node, "pads", [0] * 2 * spatial))  # type: ignore[call-overload]
    one_d = spatial == 1
    if one_d:
        strides, dilations, pads = [1, *strides], [1, *dilations], [0, pads[0], 0, pads[1]]
    if op == "ConvTranspose":
        if group != 1:
            return "grouped ConvTranspose is not supported"
        if _attr(node, "output_shape", None) is not None:
            return "ConvTranspose output_shape is not supported"
        extra = list(_attr(node, "output_padding", [0] * spatial))  # type: ignore[call-overload]
        extra = [0, *extra] if one_d else extra
        kernel = [1, weight_shape[2]] if one_d else list(weight_shape[2:])
        full = [d * (k - 1) for d, k in zip(dilations, kernel, strict=True)]
        pads = [full[0] - pads[0], full[1] - pads[1], full[0] - pads[2] + extra[0], full[1] - pads[3] + extra[1]]
        return _transpose_shape(weight_shape, strides, dilations, pads, one_d)
    return LayerShape(op, weight_shape, group, tuple(strides), tuple(dilations), tuple(pads), one_d=one_d)


@dataclass(frozen=True)
class _TransposeShape(LayerShape):
    """ConvTranspose: `strides` spread the input; the windows then move by 1."""

    def _windows(self, x: np.ndarray) -> np.ndarray:
        plain = LayerShape("Conv", self.weight_shape, 1, (1, 1), self.dilations, self.pads, one_d=self.one_d)
        return plain._windows(x)


def _transpose_shape(weight_shape: tuple[int, ...], strides: list[int], dilations: list[int],
                     pads: list[int], one_d: bool) -> LayerShape:
    return _TransposeShape("ConvTranspose", weight_shape, 1, tuple(strides), tuple(dilations), tuple(pads), one_d=one_d)
