"""Heap settings: glibc keeps freed memory where it can, never against the user's own settings."""

from __future__ import annotations

import ctypes.util
import os
import subprocess
import sys

import pytest

from mesaopt.model import heap

GLIBC = bool(ctypes.util.find_library("c")) and sys.platform.startswith("linux")


def _fresh(monkeypatch, **env: str) -> bool:
    for name in (*heap.GLIBC_VARIABLES, "MESAOPT_MALLOC"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return heap.retain_freed_memory.__wrapped__()


@pytest.mark.skipif(not GLIBC, reason="glibc's mallopt")
def test_the_thresholds_are_set_on_glibc(monkeypatch):
    assert _fresh(monkeypatch)


def test_the_users_own_malloc_settings_and_the_opt_out_win(monkeypatch):
    assert not _fresh(monkeypatch, MALLOC_TRIM_THRESHOLD_="131072")
    assert not _fresh(monkeypatch, MALLOC_MMAP_THRESHOLD_="131072")
    assert not _fresh(monkeypatch, MESAOPT_MALLOC="default")


@pytest.mark.skipif(not GLIBC, reason="glibc's mallopt")
def test_freed_arrays_are_reused_instead_of_faulted_in_again(tmp_path):
    """Twenty 64 MB arrays, one after the other: with the setting, only the first faults in pages.

    A subprocess, so that the count starts from glibc's defaults. 64 MB is above the largest
    dynamic mmap threshold (32 MiB), so without the setting every array is mapped afresh.
    """
    probe = (
        "import resource, sys, numpy as np\n"
        "from mesaopt.model.heap import retain_freed_memory\n"
        "if sys.argv[1] == 'retain': assert retain_freed_memory()\n"
        "np.ones(8_000_000)\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
        "for _ in range(20): np.ones(8_000_000)\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)\n"
    )

    env = {
        k: v for k, v in os.environ.items() if k not in (*heap.GLIBC_VARIABLES, "MESAOPT_MALLOC")
    }

    def faults(mode: str) -> int:
        run = subprocess.run(
            [sys.executable, "-c", probe, mode],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
        )
        assert run.returncode == 0, run.stderr
        return int(run.stdout)

    # A fresh mapping faults at least once (once per 2 MB with transparent huge pages, once per
    # 4 KB without); reused heap pages do not fault at all.
    assert faults("retain") < 20 <= faults("default")
