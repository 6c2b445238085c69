"""The Runner protocol: what the accuracy code needs of anything that runs a model.

In the spirit of Polygraphy's BaseRunner (polygraphy.backend.base.runner): a named object that is
activated as a context manager (loading the model, creating the session or the TensorRT execution
context) and then maps feed dicts to output dicts. Polygraphy's own runners (OnnxrtRunner, TrtRunner),
which trtq.runtime.runners and trtq.engine.runner return, satisfy it as they are; another backend only
needs these members.

    with runner:
        outputs = runner.infer({"x": batch})
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Runner(Protocol):
    """A model runner: `name`, context-manager activation, `infer(feed_dict)` -> {output name: array}."""

    name: str

    def __enter__(self) -> Runner: ...

    def __exit__(self, *exc_info: object) -> Any: ...

    def infer(self, feed_dict: Mapping[str, np.ndarray]) -> Mapping[str, np.ndarray]: ...
