"""Dask preload of the local cluster's worker processes: Ctrl-C is the driver's to handle.

A terminal sends Ctrl-C (SIGINT) to every process of the foreground group: the driver and its
LocalCluster's worker processes alike. Each worker would raise KeyboardInterrupt in its event
loop and print a traceback of Dask's internals under the driver's one-line "interrupted"
message. The driver closes the cluster (and so its workers) itself, so the workers ignore SIGINT.
Named in ``distributed.worker.preload`` by :data:`analysis.executors.LOCAL_CLUSTER_CONFIG` (every
local cluster: a sweep's and the experiments'); Dask imports it in each worker process and calls
:func:`dask_setup` in the process's main thread.
"""

from __future__ import annotations

import signal
from typing import Any


def dask_setup(worker: Any) -> None:
    """Ignore SIGINT in this worker process (the driver stops the workers).

    Args:
        worker: The Dask worker being set up (unused).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
