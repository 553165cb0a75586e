"""How the compiled kernels use the machine's cores.

The row kernels (:mod:`agents.step_kernels`, :mod:`model.step_measures`) run their blocks of rows
in parallel on Numba's threads. Results do not depend on the number of threads (each block's rows
are independent and reductions add block partials in block order), so a run gives the same
tables on a laptop, in a sweep worker and on a cluster node.

Numba's default ``workqueue`` threading layer aborts the process when two Python threads launch
parallel kernels at once (as a threaded Dask worker or a web app may); the OpenMP or TBB layers
are thread safe, so they come first.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import numba

_LAYERS = ["omp", "tbb", "workqueue"]


def configure_numba() -> None:
    """Prefer a thread-safe threading layer (call before the first parallel kernel runs)."""
    if "NUMBA_THREADING_LAYER" not in os.environ:
        numba.config.THREADING_LAYER_PRIORITY = _LAYERS


@contextlib.contextmanager
def kernel_threads(count: int | None) -> Iterator[None]:
    """Run the compiled kernels on ``count`` threads inside the block (None: leave as is).

    Sweep workers run one simulation per core, so each uses one thread.

    Args:
        count: Number of threads, at most ``numba.config.NUMBA_NUM_THREADS``.
    """
    if count is None:
        yield
        return
    before = numba.get_num_threads()
    numba.set_num_threads(max(1, min(count, numba.config.NUMBA_NUM_THREADS)))
    try:
        yield
    finally:
        numba.set_num_threads(before)
