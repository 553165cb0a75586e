"""The memory this process may use: the bound that refuses runs and files that cannot fit.

One idea: :func:`available_bytes`, the physical memory of the machine or the address-space limit
(``ulimit -v``) if that is lower. :mod:`model.scenario` compares its estimate of a run's memory
with it, :func:`model.graphs.read_edgelist` the size of an edge list.
"""

from __future__ import annotations

import os
import resource


def _limited_by_ulimit() -> tuple[int, bool]:
    """The bytes a run may use, and whether the address-space limit (not memory) sets them."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY and soft < total:
        return soft, True
    return total, False


def available_bytes() -> int:
    """Return the bytes a run may use: physical memory, or the address-space limit if lower.

    Returns:
        ``min(physical memory, RLIMIT_AS)`` in bytes (physical memory when there is no limit).
    """
    return _limited_by_ulimit()[0]


def memory_limit_name() -> str:
    """What :func:`available_bytes` is, in words: this machine's memory or the ``ulimit -v``."""
    if _limited_by_ulimit()[1]:
        return "this process's address-space limit (ulimit -v)"
    return "this machine's memory"
