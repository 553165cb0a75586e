"""Tests for agents/candidates.py: drawing candidate attributes from the pool."""

from __future__ import annotations

import numpy as np
import pytest

from mesaopt.agents.candidates import Attribute


@pytest.mark.parametrize("seed", range(40))
def test_an_attribute_draws_what_rng_choice_draws(seed):
    """The same values as ``rng.choice(values, count, p)`` and the generator left in the same
    state, for few and many values, zero weights and uneven ones."""
    setup = np.random.default_rng(seed)
    k = int(setup.integers(2, 9)) if seed % 10 else 300  # one case past the byte-sized index
    weights = setup.random(k) * 10.0 ** setup.integers(-3, 3, k)
    weights[setup.random(k) < 0.25] = 0.0
    weights[0] += 1e-3
    probabilities = weights / weights.sum()
    attribute = Attribute(np.arange(k) * 1.5, probabilities)
    ours, numpys = np.random.default_rng(seed + 100), np.random.default_rng(seed + 100)
    got = attribute.draw(ours, 20_000)
    expected = numpys.choice(attribute.values, size=20_000, p=probabilities)
    assert np.array_equal(got, expected)
    assert ours.bit_generator.state == numpys.bit_generator.state
    assert got.dtype == attribute.values.dtype
    assert not np.isin(attribute.values[probabilities == 0], got).any()


def test_a_single_value_draws_no_random_number():
    rng = np.random.default_rng(1)
    before = rng.bit_generator.state
    assert np.array_equal(Attribute(np.array([3]), None).draw(rng, 5), [3, 3, 3, 3, 3])
    assert rng.bit_generator.state == before
