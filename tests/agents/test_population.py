"""Unit tests of the population arrays (agents/population.py).

Guards against: shared buffers between fields (one write changing another), wrong dtypes (kind
codes must stay int8 and indices int64 for the compiled kernels), a size taken from the wrong
field, and an nbytes that forgets a field (the memory estimate docs/performance.md relies on).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from mesaopt.agents.population import Population


def make(n: int = 5, d: int = 3) -> Population:
    return Population.empty(
        np.array([0, 1, 0, 1, 1][:n], dtype=np.int32),
        np.arange(n, dtype=np.int32),
        np.array([0, 1, 0, 0, 1][:n]),
        d,
    )


def test_empty_has_the_documented_shapes_dtypes_and_zeros():
    pop = make()
    assert pop.size == 5
    assert pop.principal.dtype == pop.capacity.dtype == np.int64
    assert pop.kind.dtype == np.int8 and pop.deceptive.dtype == bool
    for name in ("theta", "selected", "action", "last_noise", "sandbox_action"):
        array = getattr(pop, name)
        assert array.shape == (5, 3) and not array.any(), name
    for name in ("epoch", "deployed_at", "last_proxy", "power", "gain", "deceptive"):
        array = getattr(pop, name)
        assert array.shape == (5,) and not array.any(), name
    np.testing.assert_array_equal(pop.principal, [0, 1, 0, 1, 1])
    np.testing.assert_array_equal(pop.capacity, np.arange(5))


def test_fields_do_not_share_memory_with_each_other_or_the_inputs():
    """A write to one field (or to the caller's arrays) must not show up anywhere else."""
    principal = np.array([0, 1, 1], dtype=np.int64)
    pop = Population.empty(principal, np.zeros(3, np.int64), np.zeros(3, np.int8), 2)
    principal[0] = 7
    assert pop.principal[0] == 0
    fields = [getattr(pop, f.name) for f in dataclasses.fields(pop)]
    for i, a in enumerate(fields):
        for b in fields[i + 1 :]:
            assert not np.shares_memory(a, b)
    pop.theta[1, 1] = 2.0
    assert not pop.selected.any() and not pop.action.any()


def test_nbytes_counts_every_field():
    pop = make(5, 4)
    expected = sum(getattr(pop, f.name).nbytes for f in dataclasses.fields(pop))
    assert pop.nbytes() == expected
    # 5 (N, d) float arrays of 5·4·8 bytes are the bulk.
    assert pop.nbytes() >= 5 * 5 * 4 * 8
