"""Real inputs for one model from a path, read and preprocessed as the config says (trtq prune / optimize).

    batches, warnings = model_batches("model.onnx", "photos/", config)
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from trtq.config import Config
from trtq.data import make_readers
from trtq.data.reader import FeedDicts
from trtq.onnx_model.model import graph_inputs, load_model


def model_batches(model_path: str | Path, data: str | None, config: Config,
                  max_samples: int | None = None) -> tuple[FeedDicts, int, list[str]]:
    """(batches, sample count, warnings) of `data` for the inputs of `model_path`, none held out.

    With `data` None, the config's random-data setting decides (make_readers refuses without it).

    Raises:
        DataError: no data, or data that does not fit the model.
    """
    inputs = graph_inputs(load_model(model_path, load_weights=False))
    samples = config.data.max_samples if config.data.max_samples is not None else max_samples
    section = dataclasses.replace(config.data, calib=data, eval=None, eval_fraction=0.0, max_samples=samples)
    plan = make_readers(dataclasses.replace(config, data=section), inputs)
    return plan.calib.feed_dicts(), plan.calib.num_samples, list(plan.warnings)
