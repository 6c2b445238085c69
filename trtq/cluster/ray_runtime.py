"""A Ray instance for one trtq command: started locally or joined, sized, and left as it was found.

Ray schedules, retries and moves data; trtq only says how many workers, how many cores and GPUs each
one reserves, and how many ONNX Runtime threads its sessions get (its share of the cores, so that two
workers on two cores do not run four threads). Without an address a local instance is started on
this machine's cores and shut down at the end; with `auto` or `ray://HOST:PORT` trtq connects to a
running cluster and only disconnects. An instance already initialized in the process (a notebook,
a test) is used as it is.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from trtq import _lazy
from trtq.config import ClusterConfig
from trtq.errors import ConfigError, MissingDependencyError, TrtqError

log = logging.getLogger(__name__)

LOCAL = "local"
# A worker that dies (killed, out of memory, node lost) is replaced and its task run again this often.
RETRIES = 3
_LOST_HINT = "check the cluster's nodes and memory ('ray status', the Ray logs), or run without --ray"


@dataclass(frozen=True)
class Workers:
    """How the work is spread: `count` workers, each reserving `cpus` cores (fractions allowed) and
    `gpus` GPUs, whose ONNX Runtime sessions run `threads` intra-op threads."""

    count: int
    cpus: float
    gpus: float
    threads: int

    def options(self) -> dict[str, Any]:
        """The resource part of Ray's `.options(...)` for one worker."""
        return {"num_cpus": self.cpus, "num_gpus": self.gpus}


def require_ray() -> ModuleType:
    """The `ray` module, or MissingDependencyError (exit 3) naming the extra to install."""
    return _lazy.require("ray")


def check_cluster_config(cluster: ClusterConfig) -> None:
    """Refuse bad --ray settings before anything runs.

    Raises:
        ConfigError: --ray-workers below 1 or --ray-gpus-per-worker below 0.
    """
    if cluster.ray_workers is not None and cluster.ray_workers < 1:
        raise ConfigError(f"--ray-workers must be at least 1, got {cluster.ray_workers}")
    if cluster.ray_gpus_per_worker < 0:
        raise ConfigError(f"--ray-gpus-per-worker must be 0 or more, got {cluster.ray_gpus_per_worker}")
    if cluster.ray is not None and cluster.ray.endswith(".onnx"):
        raise ConfigError(f"--ray took the model {cluster.ray} as its address",
                          hint="put --ray after the model (trtq calibrate MODEL --calib DATA --ray) "
                               "or write --ray local")


@contextlib.contextmanager
def ray_instance(cluster: ClusterConfig) -> Iterator[Workers]:
    """Start or join the Ray instance `cluster.ray` names for the duration of the block; yields the workers.

    Raises:
        MissingDependencyError: Ray is not installed, or the cluster cannot be reached (exit 3).
        ConfigError: bad --ray-workers / --ray-gpus-per-worker.
    """
    check_cluster_config(cluster)
    ray = require_ray()
    started = False
    if not ray.is_initialized():
        _init(ray, cluster.ray or LOCAL)
        started = True
    try:
        yield size_workers(ray, cluster)
    finally:
        if started:
            ray.shutdown()


@contextlib.contextmanager
def optional_ray(cluster: ClusterConfig) -> Iterator[Workers | None]:
    """ray_instance(cluster) when --ray is given, else nothing (yields None)."""
    if cluster.ray is None:
        yield None
        return
    with ray_instance(cluster) as workers:
        yield workers


# Ray gives a starting node 30 s to register; a loaded machine can miss that once, so a local start is tried twice.
_LOCAL_STARTS = 2


def _init(ray: ModuleType, address: str) -> None:
    local = address == LOCAL
    options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.ERROR}
    if local:
        # Workers import what they run when they start, while the driver still opens the model and data.
        options.update(num_cpus=os.cpu_count(),
                       runtime_env={"worker_process_setup_hook": "trtq.cluster.worker_setup.prepare_worker"})
    for attempt in range(_LOCAL_STARTS if local else 1):
        try:
            ray.init(address=None if local else address, **options)
            break
        except Exception as exc:  # Ray raises bare Exception, RuntimeError, ConnectionError, ... here
            ray.shutdown()
            if attempt + 1 < (_LOCAL_STARTS if local else 1):
                log.info("Ray did not start (%s); trying again", _first(exc))
                continue
            where = "start a local Ray instance" if local else f"connect to the Ray cluster at {address}"
            raise MissingDependencyError(f"cannot {where}: {_first(exc)}",
                                         hint="check the address ('ray status' on the head node), or drop --ray"
                                         ) from None
    log.info("Ray: %s", "started a local instance" if local else f"connected to {address}")


def _first(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def size_workers(ray: ModuleType, cluster: ClusterConfig) -> Workers:
    """Workers from --ray-workers (default: one per CPU of the instance), each with an equal share of the CPUs."""
    resources = ray.cluster_resources()
    cpus = float(resources.get("CPU", 1.0))
    count = cluster.ray_workers or max(1, int(cpus))
    share = cpus / count
    gpus = float(cluster.ray_gpus_per_worker)
    if gpus and gpus * count > float(resources.get("GPU", 0.0)):
        raise MissingDependencyError(f"{count} Ray workers with {gpus:g} GPU(s) each need "
                                     f"{gpus * count:g} GPUs; the cluster has {resources.get('GPU', 0):g}",
                                     hint="lower --ray-workers or --ray-gpus-per-worker")
    # A share under a core still gets one thread; Ray packs such workers onto a core.
    workers = Workers(count, round(share, 4), gpus, max(1, math.floor(share)))
    log.info("Ray: %d workers, %.2g CPUs and %g GPUs each, %d ONNX Runtime thread(s) per session",
             workers.count, workers.cpus, workers.gpus, workers.threads)
    return workers


def task_failure(exc: BaseException) -> BaseException:
    """The error a failed Ray task should raise on the driver: trtq's own error as the task raised it
    (the same one line as a local run), a lost worker as MissingDependencyError, anything else unchanged."""
    ray = require_ray()
    cause = getattr(exc, "cause", None)
    if isinstance(exc, ray.exceptions.RayTaskError) and isinstance(cause, BaseException):
        return cause
    if isinstance(exc, (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError,
                        ray.exceptions.NodeDiedError, ray.exceptions.ObjectLostError)):
        return MissingDependencyError(f"a Ray worker was lost {RETRIES + 1} times: {_first(exc)}", hint=_LOST_HINT)
    return exc


def gather(refs: Sequence[Any], on_result: Callable[[int, Any], None]) -> None:
    """Wait for `refs`, calling `on_result(position, value)` as each finishes (in finishing order).

    On the first failure or on Ctrl-C the other tasks are cancelled and the failure (task_failure)
    or the KeyboardInterrupt is raised: nothing is merged or written from a partial run.
    """
    ray = require_ray()
    position = {ref: i for i, ref in enumerate(refs)}
    pending = list(refs)
    try:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                try:
                    value = ray.get(ref)
                except ray.exceptions.RayError as exc:
                    raise task_failure(exc) from None
                on_result(position[ref], value)
    except (KeyboardInterrupt, TrtqError, Exception):
        cancel(pending)
        raise


def cancel(refs: Sequence[Any]) -> None:
    """Cancel tasks that have not finished (best effort: a finished or lost task is left alone)."""
    ray = require_ray()
    for ref in refs:
        with contextlib.suppress(Exception):
            ray.cancel(ref, recursive=True)

