"""Ray's worker_process_setup_hook of a local instance trtq starts (trtq.cluster.ray_runtime)."""

from __future__ import annotations


def prepare_worker() -> None:
    """Import what workers run (onnx, ONNX Runtime, the observers; about 3 s) when the process starts,
    while the driver still opens the model and the data."""
    import onnxruntime  # noqa: F401

    import trtq.cluster.calibration
    import trtq.cluster.tasks  # noqa: F401
