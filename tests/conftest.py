"""Fixtures shared by the test packages."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from mesaopt.model import parallel
from mesaopt.model.parallel import kernel_threads

#: The default scenario's four channels and a fifth: with d = 5 a run takes the compiled kernels
#: written for any number of channels (d ≤ 4 each have a kernel of their own, d a constant).
FIVE_CHANNELS = (
    "channels=["
    '{name="output", value=1.0, metric=1.0, cost=1.0, peer=0.05, '
    'noise={dist="normal", scale=1.0}}, '
    '{name="quality", value=1.0, metric=0.2, level=1, noise={dist="normal", scale=0.5}}, '
    '{name="gaming", value=-0.5, metric=1.0, cost=0.5, level=2, '
    'noise={dist="laplace", scale=0.5}}, '
    '{name="extraction", value=0.5, metric=0.3, level=1, externality=-0.3, '
    'noise={dist="student_t", scale=0.5, df=4}}, '
    '{name="spare", value=0.3, metric=0.5, cost=2.0, level=1, noise={dist="normal", scale=0.5}}'
    "]"
)


@pytest.fixture
def five_channels() -> str:
    """The ``--set`` override of :data:`FIVE_CHANNELS`."""
    return FIVE_CHANNELS


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
