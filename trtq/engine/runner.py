"""Run a serialized engine through Polygraphy's TrtRunner, for the comparison code.

    with trt_runner("model.engine") as runner:
        outputs = runner.infer({"x": batch})
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trtq._lazy import require
from trtq.engine.cuda_runtime import prepare_cuda_runtime
from trtq.errors import ModelError


def trt_runner(engine_path: str | Path, name: str | None = None) -> Any:
    """A Polygraphy TrtRunner over the engine file; the engine is read and deserialized on activate.

    Args:
        engine_path: a serialized engine built by build_engine (or trtexec).
        name: the runner's name in Polygraphy comparison results (default: "trt-runner-...").

    Raises:
        ModelError: the engine file does not exist.
        MissingDependencyError: TensorRT is not installed.
    """
    path = Path(engine_path)
    if not path.is_file():
        raise ModelError(f"engine file {path} does not exist", hint="build it with `trtq build` on a GPU machine")
    require("tensorrt")  # Polygraphy imports it lazily; fail here with the install hint instead
    prepare_cuda_runtime()  # before Polygraphy's CUDA wrapper looks for libcudart (CUDA 13 wheels)
    from polygraphy.backend.common import BytesFromPath
    from polygraphy.backend.trt import EngineFromBytes, TrtRunner

    return TrtRunner(EngineFromBytes(BytesFromPath(str(path))), name=name)
