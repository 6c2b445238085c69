"""Streamed data readers: image folders, .npy/.npz, video, random; batching and the eval split.

    source = open_source("imgs/", inputs, config.data, config.preprocess)   # nothing decoded yet
    for batch in DataReader(source, None, batch_size=8):                    # Batch(feeds, keys)
        ...
    plan = make_readers(config, inputs, default_eval_fraction=0.2)          # calib + eval readers
"""

from __future__ import annotations

from trtq.data.dispatch import open_source
from trtq.data.plan import DataPlan, make_readers
from trtq.data.reader import Batch, DataReader
from trtq.data.source import Source, UnreadableFile
from trtq.data.split import split_indices
from trtq.data.synthetic import random_source

__all__ = [
    "Batch",
    "DataPlan",
    "DataReader",
    "Source",
    "UnreadableFile",
    "make_readers",
    "open_source",
    "random_source",
    "split_indices",
]
