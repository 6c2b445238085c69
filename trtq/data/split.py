"""Deterministic split of samples into calibration and held-out evaluation sets.

Each sample key is hashed with the seed; the round(n * fraction) keys with the smallest
hashes are held out (round half up). A key's hash never depends on the other keys, so
adding or removing files moves at most as many other samples as the eval count changes.
"""

from __future__ import annotations

import hashlib
import math

from trtq.errors import ConfigError


def key_hash(key: str, seed: int) -> int:
    """A stable 64-bit hash of (seed, key); Python's hash() is salted per process."""
    digest = hashlib.sha256(f"{seed}\0{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def eval_count(n: int, eval_fraction: float) -> int:
    """round(n * eval_fraction), halves rounded up (Python's round() rounds them to even)."""
    return math.floor(n * eval_fraction + 0.5)


def split_indices(keys: list[str], eval_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(calibration indices, evaluation indices), each ascending.

    Raises:
        ConfigError: eval_fraction is outside [0, 1).
    """
    if not 0.0 <= eval_fraction < 1.0:
        raise ConfigError(f"--eval-fraction must be in [0, 1), got {eval_fraction}",
                          hint="e.g. 0.2 holds out a fifth of the samples; use --eval for a separate set")
    held = eval_count(len(keys), eval_fraction)
    order = sorted(range(len(keys)), key=lambda i: (key_hash(keys[i], seed), keys[i]))
    chosen = set(order[:held])
    calib = [i for i in range(len(keys)) if i not in chosen]
    return calib, sorted(chosen)
