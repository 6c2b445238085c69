"""A worker death on demand, for the retry test: Ray's worker_process_setup_hook of the test instance.

Every worker process of the test's Ray instance runs `install`: it wraps the shard worker's
collect_statistics so that, while the file `armed` exists in the folder TRTQ_TEST_FAULTS names, the
first shard to start kills its own process (os._exit, as the OOM killer or a lost node would) after
renaming `armed` to `fired`, so that exactly one worker dies, once.
"""

from __future__ import annotations

import os
from pathlib import Path

FOLDER = "TRTQ_TEST_FAULTS"


def _claim() -> bool:
    folder = os.environ.get(FOLDER)
    if not folder:
        return False
    try:
        os.rename(Path(folder) / "armed", Path(folder) / "fired")  # atomic: one process wins
    except OSError:
        return False
    return True


def install() -> None:
    import trtq.cluster.calibration as shard_module

    original = shard_module.collect_statistics

    def collect_or_die(*args, **kwargs):
        if _claim():
            os._exit(1)
        return original(*args, **kwargs)

    shard_module.collect_statistics = collect_or_die
