"""Real tokens only: which activations of a language model are laid out per token, and their padding.

Batches of sentences are padded to a common length, and the padded positions still flow through
the encoder (the mask only hides them as attention keys). With short sentences padded to 128 or
512 tokens most positions are padding: their activations would dominate the histograms that the
ranges come from, although no output a user reads depends on them. So calibration observes the
real tokens only (trtq.calibration.collect).

An activation is laid out per token when it has the mask's batch size on axis 0 and the sequence
length on a later axis: hidden states [batch, seq, H], heads [batch, heads, seq, D], keys transposed
[batch, heads, D, seq], scores [batch, heads, seq, seq] (the first such axis: the queries). Shapes
alone cannot tell the sequence axis from a head size of the same length, and ONNX shape inference
loses the dimension names at the first Slice or Reshape to computed sizes, so calibration asks the
model: it runs the first batch once more with every [N, L] input cut to L - 1 positions (always a
valid input) and takes, per tensor, the first axis after the batch whose size followed
(`axes_from_probe`).
"""

from __future__ import annotations

import numpy as np

from trtq.onnx_model.model import TensorSpec


def attention_mask_input(inputs: list[TensorSpec]) -> str | None:
    """The input holding a language model's attention mask: `attention_mask` (Hugging Face), else the
    only 2-D integer input whose name contains "mask" (e.g. NVIDIA BERT's `input_mask`), else None."""
    names = [spec.name for spec in inputs]
    if "attention_mask" in names:
        return "attention_mask"
    masks = [spec.name for spec in inputs if "mask" in spec.name.lower() and np.issubdtype(spec.dtype, np.integer)
             and spec.shape is not None and len(spec.shape) == 2]
    return masks[0] if len(masks) == 1 else None



def probe_feeds(feeds: dict[str, np.ndarray], mask_input: str) -> dict[str, np.ndarray] | None:
    """`feeds` with every input shaped like the mask ([N, L]) cut to its first L - 1 positions, or None
    when L < 2 (nothing to cut)."""
    mask = feeds.get(mask_input)
    if mask is None or mask.ndim != 2 or mask.shape[1] < 2:
        return None
    return {name: x[:, :-1] if x.shape == mask.shape else x for name, x in feeds.items()}


def axes_from_probe(full: dict[str, tuple[int, ...]], probe: dict[str, tuple[int, ...]],
                    mask_shape: tuple[int, int]) -> dict[str, int]:
    """Tensor -> sequence axis: the first axis after the batch that is L in the full run and L - 1 in
    the probe (shapes of the same tensors, `mask_shape` = (N, L) of the full run)."""
    batch, length = mask_shape
    found = {}
    for name, shape in full.items():
        cut = probe.get(name)
        if cut is None or len(cut) != len(shape) or len(shape) < 2 or shape[0] != batch:
            continue
        axis = next((a for a in range(1, len(shape)) if shape[a] == length and cut[a] == length - 1), None)
        if axis is not None:
            found[name] = axis
    return found


def real_tokens(x: np.ndarray, axis: int | None, mask: np.ndarray) -> np.ndarray:
    """The positions of `x` where `mask` [N, L] is non-zero along the sequence `axis` (batch on axis 0):
    [real tokens, remaining dims]. `x` itself when it has no such axis or its shape does not fit."""
    if axis is None or x.ndim <= axis or x.shape[0] != mask.shape[0] or x.shape[axis] != mask.shape[1]:
        return x
    real: np.ndarray = np.moveaxis(x, axis, 1)[np.asarray(mask) != 0]
    return real
