"""make_readers: calibration and evaluation readers from the config, with the warnings for the report."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from trtq.config import Config, DataConfig, PreprocessConfig
from trtq.data.dispatch import NO_DATA_HINT, open_source
from trtq.data.fingerprint import data_fingerprint, data_parts, preprocess_settings
from trtq.data.reader import DataReader
from trtq.data.source import Source, is_fixed
from trtq.data.split import split_indices
from trtq.data.streams import StreamReader, is_loader_script, load_script
from trtq.data.synthetic import random_source
from trtq.errors import ConfigError, DataError
from trtq.onnx_model.model import TensorSpec

log = logging.getLogger(__name__)


@dataclass
class DataPlan:
    """The readers of one run.

    Attributes:
        calib: calibration batches.
        eval: held-out evaluation batches, or None.
        warnings: things the report must say (random data, skipped files, changed batch size...).
        description: one line per reader saying where its samples come from.
        preprocess: the preprocessing the readers apply to images (part of the data fingerprint).
    """

    calib: DataReader
    eval: DataReader | None
    warnings: list[str]
    description: str
    preprocess: PreprocessConfig | None = None
    _calib_sha256: str | None = field(default=None, repr=False, compare=False)

    def calib_sha256(self) -> str:
        """The calibration data's fingerprint (data_fingerprint: samples, file contents, preprocessing)."""
        if self._calib_sha256 is None:
            self._calib_sha256 = data_fingerprint(self.calib, self.preprocess)
        return self._calib_sha256

    def calib_parts(self) -> dict[str, str]:
        """The fingerprint of each part of the calibration data (data_parts), to say which one changed."""
        return data_parts(self.calib, self.preprocess)

    def calib_preprocess(self) -> dict[str, Any] | None:
        """The preprocessing settings the calibration data is read with, or None when none apply (NumPy data)."""
        return preprocess_settings(self.calib, self.preprocess)


def _warn(warnings: list[str], text: str) -> None:
    """Log a warning make_readers found and record it for the report."""
    log.warning(text)
    warnings.append(text)


def _check(data: DataConfig) -> None:
    if data.max_samples is not None and data.max_samples < 1:
        raise ConfigError(f"--max-samples must be at least 1, got {data.max_samples}")
    if data.eval is not None and data.eval_fraction:
        raise ConfigError(f"both --eval {data.eval} and --eval-fraction {data.eval_fraction} are given",
                          hint="hold out part of --calib with --eval-fraction, or give a separate set with --eval")


def _calib_source(config: Config, inputs: list[TensorSpec], warnings: list[str]) -> Source:
    data = config.data
    if data.calib is not None:
        return open_source(data.calib, inputs, data, config.preprocess)
    if not data.allow_random_data:  # a missing required option: a usage error (exit 2), like click's own
        raise ConfigError("no calibration data given", hint=NO_DATA_HINT)
    source = random_source(inputs, data, config.preprocess)
    warnings.append(source.warning)
    return source


def _skipped(source: Source, warnings: list[str]) -> None:
    """Record files a source left out when it was opened (already logged by the source)."""
    for key, reason in getattr(source, "skipped", []):
        warnings.append(f"skipped unreadable file {key}: {reason}")


def _fixed_batch(inputs: list[TensorSpec]) -> int | None:
    """The batch size every input fixes, or None if any input leaves it dynamic."""
    dims = {spec.shape[0] if spec.shape else None for spec in inputs}
    if len(dims) != 1:
        return None
    dim = dims.pop()
    return dim if dim is not None and is_fixed(dim) else None  # type: ignore[return-value]


def _fit_batch(inputs: list[TensorSpec], batch_size: int, splits: list[list[int]],
               warnings: list[str]) -> int:
    """The batch size the model takes; trims each split to whole batches for a fixed batch > 1."""
    fixed = _fixed_batch(inputs)
    if fixed is None:
        return batch_size
    if fixed != batch_size:
        _warn(warnings, f"the model's batch size is fixed at {fixed}, so batches hold {fixed} samples "
                        f"(not --batch-size {batch_size})")
    for indices in splits:
        extra = len(indices) % fixed
        if extra:
            _warn(warnings, f"{extra} sample(s) left out: they do not fill a batch of the model's fixed size {fixed}")
            del indices[len(indices) - extra:]
    return fixed


def make_readers(config: Config, inputs: list[TensorSpec], default_eval_fraction: float = 0.0) -> DataPlan:
    """Calibration and evaluation readers for `inputs` from config.data / config.preprocess.

    Evaluation samples come from --eval, else are held out of --calib by --eval-fraction
    (default `default_eval_fraction`); --max-samples then keeps the first calibration samples.

    Raises:
        ConfigError: no data given (the hint names --calib and --allow-random-data), or contradictory
            or invalid settings.
        DataError: empty data, or data that does not fit the model.
    """
    data = config.data
    warnings: list[str] = []
    _check(data)
    if is_loader_script(data.calib) or is_loader_script(data.eval):
        return _stream_plan(config, inputs, default_eval_fraction, warnings)
    calib_source = _calib_source(config, inputs, warnings)
    _skipped(calib_source, warnings)
    eval_source: Source | None = None
    if data.eval is not None:
        eval_source = open_source(data.eval, inputs, data, config.preprocess)
        _skipped(eval_source, warnings)
        calib, held = list(range(len(calib_source))), list(range(len(eval_source)))
        if not held:
            raise DataError(f"evaluation data {data.eval} has no readable samples", hint="check --eval")
    else:
        fraction = data.eval_fraction if data.eval_fraction is not None else default_eval_fraction
        calib, held = split_indices(calib_source.keys, fraction, data.seed)
        if fraction > 0 and not held:
            _warn(warnings, f"eval fraction {fraction} of {len(calib_source)} sample(s) holds out none")
    if data.max_samples is not None:
        del calib[data.max_samples:]
    batch_size = _fit_batch(inputs, data.batch_size, [calib, held], warnings)
    if not calib:
        where = data.calib or "random data"
        raise DataError(f"no calibration samples left from {where} ({len(calib_source)} readable, "
                        f"{len(held) if eval_source is None else 0} held out for evaluation, "
                        f"batch size {batch_size})", hint=NO_DATA_HINT)
    calib_reader = DataReader(calib_source, calib, batch_size, data.workers, data.skip_bad_files)
    eval_reader = None
    if held:
        eval_reader = DataReader(eval_source or calib_source, held, batch_size, data.workers, data.skip_bad_files)
    description = _describe(calib_reader, eval_reader, eval_source is not None, data)
    return DataPlan(calib_reader, eval_reader, warnings, description, config.preprocess)


def _stream_plan(config: Config, inputs: list[TensorSpec], default_eval_fraction: float,
                 warnings: list[str]) -> DataPlan:
    """Readers when --calib or --eval is a data-loader script: streamed, never split (see trtq.data.streams)."""
    data = config.data
    if not is_loader_script(data.calib):
        raise ConfigError("--eval is a data-loader script but --calib is not",
                          hint="give --calib a loader script too, or --eval the same kind of data as --calib")
    if data.eval_fraction:
        raise ConfigError(f"--eval-fraction {data.eval_fraction}: a data-loader script's stream is not split",
                          hint="give the held-out data separately with --eval (a path or another loader script)")
    calib = StreamReader(load_script(data.calib), f"loader script {data.calib}", data.max_samples)
    held: DataReader | None = None
    if is_loader_script(data.eval):
        held = StreamReader(load_script(data.eval), f"loader script {data.eval}")
    elif data.eval is not None:
        source = open_source(data.eval, inputs, data, config.preprocess)
        held = DataReader(source, None, data.batch_size, data.workers, data.skip_bad_files)
    elif default_eval_fraction:
        _warn(warnings, "no held-out data: a data-loader script is not split (give --eval for the accuracy check)")
    text = f"calibration: {calib.description}" + (f"\nevaluation: {held.description}" if held else "")
    return DataPlan(calib, held, warnings, text)


def _describe(calib: DataReader, held: DataReader | None, separate: bool, data: DataConfig) -> str:
    text = f"calibration: {calib.num_samples} of {calib.source.description}"
    if held is None:
        return text
    if separate:
        return f"{text}\nevaluation: {held.num_samples} of {held.source.description}"
    return f"{text}\nevaluation: {held.num_samples} held out of the same data (seed {data.seed})"
