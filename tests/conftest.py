"""Fixtures shared by the test packages."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from mesaopt.model import parallel
from mesaopt.model.parallel import kernel_threads


@pytest.fixture
def same_on_one_and_three_threads(monkeypatch) -> Callable[[Callable[[], Any]], Any]:
    """Run ``fn()`` on one kernel thread and on three; assert bit-identical results; return them.

    Three threads (more than the cores of the CI machine) split the work unevenly, which is what
    would expose a result depending on how rows are shared out.
    """
    monkeypatch.setattr(parallel, "_MAX_THREADS", 3)

    def check(fn: Callable[[], Any]) -> Any:
        with kernel_threads(1):
            one = fn()
        with kernel_threads(3):
            many = fn()
        one_list = one if isinstance(one, tuple | list) else [one]
        many_list = many if isinstance(many, tuple | list) else [many]
        assert len(one_list) == len(many_list)
        for a, b in zip(one_list, many_list, strict=True):
            a, b = np.asarray(a), np.asarray(b)
            assert np.array_equal(a, b, equal_nan=a.dtype.kind in "fc")
        return one

    return check
