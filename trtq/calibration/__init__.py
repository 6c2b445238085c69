"""trtq.calibration: from a model and data to per-tensor statistics and ranges.

Running the model with every activation as an output and feeding the observers (collect), the
mergeable statistics files (stats_files) and the configured range algorithm applied to every tensor
(ranges). The observers and algorithms themselves are trtq.calibrators; writing the cache is
trtq.cache; the `calibrate` command is trtq.pipeline.calibrate.
"""
