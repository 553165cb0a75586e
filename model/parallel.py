"""How the compiled kernels use the machine's cores: a small thread pool of our own.

The row kernels (:mod:`agents.response_jit`, :mod:`agents.sandbox_jit`,
:mod:`model.measures_jit`, :mod:`model.group_stats_jit`) are serial Numba functions compiled with
``nogil=True`` that work on a range of rows. :func:`parallel_map` runs such calls on a pool of
Python threads; since the kernels release the GIL, the threads run them on all cores at once.

Why not Numba's own ``parallel=True``: its OpenMP threading layer kills any process that forks
after using it ("fork() called from a process already using GNU OpenMP" — a user's
``multiprocessing.Pool`` on Linux), and its fallback ``workqueue`` layer aborts when two Python
threads launch kernels at once (a threaded Dask worker, two sessions of the web app). A plain
thread pool is safe under both, and the pool is rebuilt in a forked child.

Results never depend on the number of threads: rows are independent, and reductions add partial
sums of fixed blocks in block order (see :func:`block_ranges`).

Threads: one per usable core by default, ``MESAOPT_THREADS`` overrides it, and
:func:`kernel_threads` sets it for the calling thread (sweep workers use one each).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any

__all__ = ["block_ranges", "kernel_threads", "parallel_map", "row_ranges", "thread_count"]


def _default_threads() -> int:
    configured = os.environ.get("MESAOPT_THREADS", "").strip()
    if configured:
        if not (configured.isascii() and configured.isdigit()) or int(configured) < 1:
            raise ValueError(f"MESAOPT_THREADS must be a positive integer, got {configured!r}")
        return int(configured)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


_MAX_THREADS = _default_threads()
_local = threading.local()
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _forget_pool() -> None:
    """In a forked child the parent's pool threads do not exist: start a new pool on demand."""
    global _pool, _pool_lock
    _pool = None
    _pool_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def thread_count() -> int:
    """Number of threads the kernels may use from the calling thread."""
    return getattr(_local, "threads", _MAX_THREADS)


@contextlib.contextmanager
def kernel_threads(count: int | None) -> Iterator[None]:
    """Run the kernels called from this thread on ``count`` threads (None: leave as is).

    Args:
        count: Number of threads, capped at the default (one per core or ``MESAOPT_THREADS``).
    """
    if count is None:
        yield
        return
    before = getattr(_local, "threads", None)
    _local.threads = max(1, min(count, _MAX_THREADS))
    try:
        yield
    finally:
        if before is None:
            del _local.threads
        else:
            _local.threads = before


def parallel_map(fn: Callable[[Any], Any], items: Iterable[Any]) -> list[Any]:
    """``[fn(item) for item in items]``, the items spread over the kernel threads.

    For work that releases the GIL (``nogil`` kernels, NumPy's random fills). With one thread,
    or one item, it is a plain loop in the calling thread.
    """
    items = list(items)
    threads = min(thread_count(), len(items))
    if threads <= 1 or getattr(_local, "in_pool", False):
        # (a call from inside the pool runs in place: waiting on the pool from a pool thread
        # could deadlock)
        return [fn(item) for item in items]
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(_MAX_THREADS, "mesaopt-kernels", initializer=_mark_pool)
        pool = _pool
    # The caller works on the first share itself: one thread handoff fewer per call.
    shares = [items[t::threads] for t in range(threads)]
    futures = []
    try:
        for share in shares[1:]:
            futures.append(pool.submit(lambda share=share: [fn(item) for item in share]))
        mine = [fn(item) for item in shares[0]]
    except RuntimeError as err:
        if "can't start new thread" not in str(err):
            raise
        # The pool's first threads start lazily: under a tight ``ulimit -v`` the system has no
        # address space left for one (its stack), which is running out of memory. The share
        # whose thread did not start is already queued: cancel it, or wait for the thread that
        # took it, before raising; the next call starts a new pool.
        with _pool_lock:
            if _pool is pool:
                _pool = None
        pool.shutdown(wait=True, cancel_futures=True)
        raise MemoryError(str(err)) from err
    finally:
        # Never return (or raise) while other threads still write into the caller's arrays.
        wait(futures)
    done = [mine, *(future.result() for future in futures)]
    out: list[Any] = [None] * len(items)
    for t, results in enumerate(done):
        out[t::threads] = results
    return out


def _mark_pool() -> None:
    _local.in_pool = True


def row_ranges(n: int, minimum: int = 1024) -> list[tuple[int, int]]:
    """Split rows ``0..n`` into one contiguous range per kernel thread.

    For kernels whose rows are independent; each range has at least ``minimum`` rows.
    """
    parts = max(1, min(thread_count(), n // max(1, minimum)))
    edges = [n * p // parts for p in range(parts + 1)]
    return [(edges[p], edges[p + 1]) for p in range(parts)]


def block_ranges(blocks: int) -> list[tuple[int, int]]:
    """Split fixed blocks ``0..blocks`` into one contiguous range per kernel thread.

    Reductions compute one partial per fixed block and add them in block order, so their result
    does not depend on how the blocks are shared out.
    """
    parts = max(1, min(thread_count(), blocks))
    edges = [blocks * p // parts for p in range(parts + 1)]
    return [(edges[p], edges[p + 1]) for p in range(parts)]
