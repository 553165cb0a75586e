"""Heap settings for large runs: glibc's allocator keeps freed memory for the next step.

A step of a large run allocates and frees arrays of tens of megabytes (an (N, d) float array is
32 MB at a million agents and four channels). With glibc's defaults an array above the dynamic
mmap threshold (at most 32 MiB) is mapped fresh from the kernel, and freed memory at the top of
the heap beyond the trim threshold is handed back; either way the next step's arrays fault in new
pages that the kernel must first fill with zeros (``clear_page_erms`` took ~9 % of the CPU of a
run of 10**6 agents in ``perf``). :func:`retain_freed_memory` raises both thresholds to 1 GiB, so
that large arrays come from the heap and freed ones are reused: measured in alternation with
the defaults (``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_`` set in the environment,
which is the same setting), 10**6 agents × 100 steps end to end took 39.6 and 38.7 s against
43.2 and 40.6 s, peak RSS unchanged (1.63 GB); 10**5 agents × 200 steps ran at 28.0–28.2 steps/s
against 26.5–28.2 (docs/performance.md).

The setting belongs to the process, not to a run, and cannot be undone (glibc has no getter for
the defaults); :func:`model.runner.run_simulation` applies it once per process. It is skipped
where the C library has no ``mallopt`` (musl, macOS, Windows), when the user set either
threshold in the environment (theirs wins), and when ``MESAOPT_MALLOC=default``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os

#: glibc's ``mallopt`` parameter numbers (``<malloc.h>``).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
#: Both thresholds, bytes: arrays below this come from the heap and freed memory stays there.
RETAIN_BYTES = 1 << 30
#: Environment variables glibc reads for the same thresholds.
GLIBC_VARIABLES = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")


@functools.cache
def retain_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds to :data:`RETAIN_BYTES` (once per process).

    Returns:
        True if the thresholds were set now or by an earlier call, False if skipped (no glibc,
        the user's own ``MALLOC_*`` settings, or ``MESAOPT_MALLOC=default``).
    """
    if os.environ.get("MESAOPT_MALLOC", "").lower() == "default":
        return False
    if any(name in os.environ for name in GLIBC_VARIABLES):
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        mallopt = libc.mallopt if libc is not None else None
    except (OSError, AttributeError):
        return False
    if mallopt is None or not hasattr(libc, "gnu_get_libc_version"):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success; setting the mmap threshold also fixes it (no dynamic rise).
    return bool(mallopt(M_MMAP_THRESHOLD, RETAIN_BYTES)) and bool(
        mallopt(M_TRIM_THRESHOLD, RETAIN_BYTES)
    )
