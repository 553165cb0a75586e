"""The memory this process may use: the bound that refuses runs and files that cannot fit.

One idea: :func:`available_bytes`, the physical memory of the machine or, if lower, what the
address-space limit (``ulimit -v``) leaves once the process's threads have their share of it.
:mod:`model.scenario` compares its estimate of a run's memory with it,
:func:`model.graphs.read_edgelist` the size of an edge list.
"""

from __future__ import annotations

import os
import resource

from mesaopt.model.parallel import thread_count

#: Address space a process takes beyond the memory it touches, counted against ``ulimit -v``
#: only (it is reserved, not resident): per thread, its stack (8 MiB) and the malloc arena that
#: glibc may reserve for it (64 MiB on 64-bit Linux), less what most threads never map. Measured
#: with ``ulimit -v`` (the smallest limit under which ``run.py simulate baseline --set
#: network.n_agents=2000 --steps 3`` still ran, to 10 MB): 91, 99, 239 and 408 MB above the run's
#: estimate with 1, 2, 4 and 8 kernel threads (``MESAOPT_THREADS``); the margin, 64 MiB plus
#: 64 MiB per kernel thread, is 128, 192, 320 and 576 MiB. Below it a run that passed the check
#: crashed (a thread that cannot start, an abort inside the compiler) or hung.
ADDRESS_SPACE_BASE = 64 * 2**20
ADDRESS_SPACE_PER_THREAD = 64 * 2**20


def _limited_by_ulimit() -> tuple[int, bool]:
    """The bytes a run may use, and whether the address-space limit (not memory) sets them.

    Under a limit, what it leaves once :func:`address_space_margin` is taken off (at least 0),
    when that is less than physical memory.
    """
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        left = max(0, soft - address_space_margin())
        if left < total:
            return left, True
    return total, False


def address_space_margin() -> int:
    """Bytes of the address-space limit that the process's threads take (see the constants)."""
    return ADDRESS_SPACE_BASE + ADDRESS_SPACE_PER_THREAD * thread_count()


def available_bytes() -> int:
    """Return the bytes a run may use: physical memory, or what the address-space limit leaves.

    Returns:
        Physical memory, or ``RLIMIT_AS`` less :func:`address_space_margin` when that is lower
        (at least 0).
    """
    return _limited_by_ulimit()[0]


def memory_limit_name() -> str:
    """What :func:`available_bytes` is, in words: this machine's memory or the ``ulimit -v``.

    Under the limit, with the kernel threads' share of it: with many threads
    (``MESAOPT_THREADS``) that share, not the scenario, can be what leaves too little.
    """
    if _limited_by_ulimit()[1]:
        threads = thread_count()
        setting = " (MESAOPT_THREADS)" if os.environ.get("MESAOPT_THREADS", "").strip() else ""
        return (
            "what this process's address-space limit (ulimit -v) leaves to the run once its "
            f"{threads} kernel thread{'s' * (threads != 1)}{setting} have their "
            f"{address_space_margin() / 2**30:.3g} GiB"
        )
    return "this machine's memory"
