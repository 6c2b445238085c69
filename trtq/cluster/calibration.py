"""Calibration on Ray: the data in shards across workers, the observers merged exactly on the driver.

Each shard is a Ray task; a worker process keeps one ONNX Runtime session of the model with the
calibrated tensors exposed from its first shard on (its threads set to the worker's share of the
cores), and Ray keeps worker processes between runs, so a second run in the same process pays no
start-up. The driver cuts the
calibration samples into shards of whole batches, a few per worker so that a slow worker does not
hold up the end, and sends each shard's sample *keys*: the worker opens the data from the paths in
the config (they must be readable on every node) and streams its shard through the model into fresh
observers (trtq.calibration.collect, the same code as one process), then returns them serialized
(TensorStats.to_dict). The driver merges them as they arrive. The histograms re-bin by powers of two,
so merging is exact in any order (trtq.calibration.stats_files): the ranges, and so the cache, are
byte-identical to a run in one process.

A worker that dies is replaced and its shard run again (Ray's task retries); a
shard with bad data fails the run with the error a local run gives, naming the file.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trtq.calibration.collect import CollectionResult, collect_statistics, collection_session
from trtq.calibration.ranges import needs_ema
from trtq.calibrators import TensorStats
from trtq.calibrators.storage import observer_from_dict
from trtq.cluster.ray_runtime import RETRIES, Workers, gather, require_ray
from trtq.config import Config
from trtq.data import DataReader
from trtq.data.dispatch import open_source
from trtq.data.synthetic import random_source
from trtq.errors import ConfigError, DataError
from trtq.onnx_model import model as model_io
from trtq.progress import progress_bar
from trtq.runtime.session import set_process_threads

log = logging.getLogger(__name__)

# Shards per worker: enough to even out uneven workers, few enough that each shard amortizes its call.
SHARDS_PER_WORKER = 4


@dataclass(frozen=True)
class ShardJob:
    """What every worker needs to observe its shards (sent once, when the worker starts).

    Attributes:
        model_path: the FP32 model file (read by the worker; external data next to it).
        config: the resolved config (data paths, preprocessing, calibration settings).
        names: tensors to observe, in graph order.
        quantized: tensors a Q/DQ pair reads (collect_statistics' `quantized`).
        mask_input: the attention-mask input, or None.
        channel_tensors: tensors that also get per-channel statistics.
        batch_size: samples per batch, as the driver's reader has it (a model's fixed batch size).
        providers: ONNX Runtime providers of the worker's session.
    """

    model_path: str
    config: Config
    names: list[str]
    quantized: set[str] | None
    mask_input: str | None
    channel_tensors: list[str]
    batch_size: int
    providers: list[str]


@dataclass
class ShardResult:
    """One shard's statistics in serialized form, and what its pass found."""

    stats: dict[str, dict[str, Any]]
    num_samples: int
    nonfinite: dict[str, int] = field(default_factory=dict)
    left_out: dict[str, str] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)


class ShardWorker:
    """What a Ray worker process keeps between shards: the model, its session, the opened data source."""

    def __init__(self, job: ShardJob, threads: int) -> None:
        set_process_threads(threads)
        self.job = job
        self.model = model_io.load_model(job.model_path)
        data = job.config.data
        inputs = model_io.graph_inputs(self.model)
        self.source = (open_source(data.calib, inputs, data, job.config.preprocess) if data.calib
                       else random_source(inputs, data, job.config.preprocess))
        self.index = {key: i for i, key in enumerate(self.source.keys)}
        self._session = collection_session(self.model, Path(job.model_path).parent, job.names, job.providers)
        self.session = self._session.__enter__()

    def close(self) -> None:
        self._session.__exit__(None, None, None)

    def observe(self, keys: list[str]) -> ShardResult:
        """Stream the samples `keys` through the model into fresh observers."""
        job, cal = self.job, self.job.config.calibration
        missing = [k for k in keys if k not in self.index]
        if missing:
            raise DataError(f"sample {missing[0]} is not in {job.config.data.calib} on this Ray node",
                            hint="give --calib a path every node of the cluster reads the same files from")
        reader = DataReader(self.source, [self.index[k] for k in keys], job.batch_size, job.config.data.workers,
                            job.config.data.skip_bad_files)
        ema = cal.ema_constant if needs_ema(cal.method) else None
        result = collect_statistics(
            self.model, Path(job.model_path).parent, job.names, reader,
            lambda: TensorStats(num_bins=cal.num_bins, ema_constant=ema),
            providers=job.providers, nan_policy=cal.nan_policy, show_progress=False, quantized=job.quantized,
            mask_input=job.mask_input, memory_budget=cal.memory_budget << 20,
            channel_tensors=job.channel_tensors, session=self.session)
        return ShardResult({n: s.to_dict() for n, s in result.stats.items()}, result.num_samples,
                           dict(result.nonfinite), dict(result.left_out), list(reader.skipped))


# The worker of this process, for the run it was made for: a Ray worker process runs one shard task
# after another, and keeps the session from the first (one session per worker, not per shard).
_worker: tuple[str, ShardWorker] | None = None


def observe_shard(job: ShardJob, run: str, threads: int, keys: list[str]) -> ShardResult:
    """The Ray task of one shard: this process's ShardWorker for `run` (made on its first shard) observes `keys`."""
    global _worker
    if _worker is None or _worker[0] != run:
        if _worker is not None:
            _worker[1].close()
            _worker = None
        _worker = (run, ShardWorker(job, threads))
    return _worker[1].observe(keys)


def shardable_reader(config: Config, reader: object) -> DataReader:
    """`reader`, if its samples can be sharded across workers; refuses the rest before any worker starts.

    Raises:
        ConfigError: --method ema (its moving average depends on the order of all samples, so shards
            do not merge exactly), or data that is not a path the workers can read (a loader script,
            a Python reader object), or whose samples cannot be named apart.
    """
    if needs_ema(config.calibration.method):
        raise ConfigError("--method ema cannot run on Ray: its moving average follows the order of all samples, "
                          "so statistics of shards do not merge exactly",
                          hint="choose another --method, or drop --ray")
    if not isinstance(reader, DataReader) or not (config.data.calib or config.data.allow_random_data):
        raise ConfigError("--ray needs calibration data the workers can read from a path (--calib DATA)",
                          hint="give --calib a folder or file every node of the cluster can read, or drop --ray")
    keys = reader.source.keys
    if len(set(keys)) != len(keys):  # shards name their samples by key
        raise ConfigError(f"--ray cannot shard {config.data.calib}: two of its samples have the same key",
                          hint="give each sample its own file, or drop --ray")
    return reader


def shard_keys(keys: Sequence[str], batch_size: int, shards: int) -> list[list[str]]:
    """`keys` cut into at most `shards` runs of whole batches (the last may be shorter), in order."""
    batches = -(-len(keys) // batch_size)
    per = max(1, -(-batches // max(1, shards))) * batch_size
    return [list(keys[i:i + per]) for i in range(0, len(keys), per)]


def collect_on_ray(job: ShardJob, reader: DataReader, workers: Workers,
                   show_progress: bool = True) -> tuple[CollectionResult, list[tuple[str, str]]]:
    """Collect the statistics of `reader`'s samples as Ray tasks on `workers`, merged in graph order.

    Returns:
        The merged CollectionResult (as collect_statistics gives for the whole data) and the files
        the shards skipped (--skip-bad-files).

    Raises:
        DataError: no samples, or a shard's data is bad (the worker's own error, naming the file).
        MissingDependencyError: a worker was lost more often than Ray retries.
    """
    ray = require_ray()
    start = time.perf_counter()
    shards = shard_keys(reader.keys, job.batch_size, workers.count * SHARDS_PER_WORKER)
    task = ray.remote(max_retries=RETRIES)(observe_shard).options(**workers.options())
    shared = ray.put(job)  # sent once, not with every shard
    run = uuid.uuid4().hex
    merged = _Merged(job.names)
    with progress_bar(reader.num_samples, "calibrating on Ray", enabled=show_progress) as bar:
        refs = [task.remote(shared, run, workers.threads, keys) for keys in shards]

        def add(position: int, shard: ShardResult) -> None:
            merged.add(position, shard)
            bar.update(shard.num_samples)

        gather(refs, add)
    if merged.num_samples == 0:
        raise DataError("no calibration samples were read", hint="check --calib and --max-samples")
    return merged.result(time.perf_counter() - start), merged.skipped_files()


class _Merged:
    """The shards' observers merged as they arrive; tensors any shard left out are left out of all."""

    def __init__(self, names: Collection[str]) -> None:
        self.names = list(names)
        self.stats: dict[str, TensorStats] = {}
        self.num_samples = 0
        self.nonfinite: dict[str, int] = {}
        self.left_out: dict[str, str] = {}
        self.skipped: dict[int, list[tuple[str, str]]] = {}

    def add(self, position: int, shard: ShardResult) -> None:
        for name, d in shard.stats.items():
            stats = observer_from_dict(d)
            if name in self.stats:
                self.stats[name].merge(stats)  # type: ignore[arg-type]
            else:
                self.stats[name] = stats  # type: ignore[assignment]
        self.num_samples += shard.num_samples
        for name, count in shard.nonfinite.items():
            self.nonfinite[name] = self.nonfinite.get(name, 0) + count
        for name, kind in shard.left_out.items():
            self.left_out.setdefault(name, kind)
        self.skipped[position] = shard.skipped

    def skipped_files(self) -> list[tuple[str, str]]:
        """The files the shards skipped, in data order."""
        return [item for position in sorted(self.skipped) for item in self.skipped[position]]

    def result(self, seconds: float) -> CollectionResult:
        stats = {n: self.stats[n] for n in self.names if n in self.stats and n not in self.left_out}
        left_out = {n: self.left_out[n] for n in self.names if n in self.left_out}
        return CollectionResult(stats, self.num_samples, self.nonfinite, seconds, left_out)
