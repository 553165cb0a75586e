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
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numba

_LAYERS = ["omp", "tbb", "workqueue"]


def configure_numba() -> None:
    """Prefer a thread-safe threading layer (call before the first parallel kernel runs).

    OpenMP threads are also told to sleep, not spin, while they wait: with the default spinning
    a kernel that shares the cores with another busy process ran up to 300 times slower
    (measured: 1e5 agents, 1.5 s instead of 50 ms per step beside a two-process benchmark).
    """
    if "NUMBA_THREADING_LAYER" not in os.environ:
        numba.config.THREADING_LAYER_PRIORITY = _LAYERS
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


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


_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def parallel_map(fn: Callable[[Any], Any], items: Iterable[Any]) -> list[Any]:
    """``[fn(item) for item in items]`` on as many Python threads as the kernels may use.

    For work that releases the GIL (NumPy's random fills). The thread count follows
    :func:`kernel_threads`: one thread means a plain loop in the caller's thread.
    """
    items = list(items)
    threads = min(numba.get_num_threads(), len(items))
    if threads <= 1:
        return [fn(item) for item in items]
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(numba.config.NUMBA_NUM_THREADS, "mesaopt")
    # Split the items into ``threads`` interleaved shares so that no more threads work at once.
    shares = [items[t::threads] for t in range(threads)]
    done = list(_pool.map(lambda share: [fn(item) for item in share], shares))
    out: list[Any] = [None] * len(items)
    for t, results in enumerate(done):
        out[t::threads] = results
    return out
