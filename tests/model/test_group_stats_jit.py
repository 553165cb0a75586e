"""Tests for model/group_stats_jit.py: radix sort, Gini and correlations against NumPy."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mesaopt.model.group_stats_jit import group_correlations, group_ginis, radix_argsort
from mesaopt.model.measures_jit import BLOCK
from mesaopt.model.metrics import correlation, gini


@settings(max_examples=200, deadline=None)
@given(
    hnp.arrays(
        np.float64,
        st.integers(0, 300),
        elements=st.floats(allow_nan=True, allow_infinity=True, width=64),
    )
)
def test_radix_argsort_is_a_stable_sort(x):
    order = radix_argsort(x)
    assert np.array_equal(np.sort(order), np.arange(len(x)))
    assert np.array_equal(x[order], np.sort(x), equal_nan=True)
    finite = ~np.isnan(x)
    reference = np.argsort(np.where(x == 0, 0.0, x), kind="stable")  # -0.0 and 0.0 tie there
    if finite.all() and not (x == 0).any():
        assert np.array_equal(order, reference)


def _groups(n: int, j: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(1.0, 1.0, n)
    y = 0.5 * x + rng.normal(size=n)
    group = rng.integers(0, j, n)
    return x, y, group


@pytest.mark.parametrize(("n", "j"), [(1, 1), (2, 2), (10, 3), (1000, 2), (50_000, 3)])
def test_group_ginis_equal_the_numpy_gini(n, j):
    x, _, group = _groups(n, j, seed=n)
    expected = [gini(x[group == g]) for g in range(j)] + [gini(x)]
    assert np.allclose(group_ginis(x, group, j), expected, rtol=1e-10, equal_nan=True)


def test_group_ginis_nan_for_an_empty_group_or_a_zero_mean():
    x = np.array([1.0, -1.0, 2.0, -2.0])
    got = group_ginis(x, np.array([0, 0, 0, 0]), 2)
    assert all(np.isnan(got))


@pytest.mark.parametrize("q", [0.9, 0.5, 0.0, 1.0, 0.37])
@pytest.mark.parametrize(("n", "j"), [(2, 1), (5, 2), (101, 3), (20_000, 2)])
def test_group_correlations_equal_numpy(n, j, q):
    x, y, group = _groups(n, j, seed=n + j)
    corr, top = group_correlations(x, y, group, j, q)
    for g in range(j + 1):
        mask = group == g if g < j else slice(None)
        xs, ys = x[mask], y[mask]
        assert corr[g] == pytest.approx(correlation(xs, ys), rel=1e-9, nan_ok=True)
        if len(xs) == 0:
            assert np.isnan(top[g])
            continue
        cut = np.quantile(xs, q)
        chosen = xs >= cut
        assert top[g] == pytest.approx(correlation(xs[chosen], ys[chosen]), rel=1e-9, nan_ok=True)


def test_group_correlations_use_exact_numpy_quantiles_with_ties():
    x = np.repeat(np.arange(10.0), 7)
    y = np.sin(np.arange(len(x)))
    group = np.arange(len(x)) % 2
    _, top = group_correlations(x, y, group, 2, 0.75)
    chosen = x >= np.quantile(x, 0.75)
    assert 7 < chosen.sum() < len(x)
    assert top[-1] == pytest.approx(correlation(x[chosen], y[chosen]))


def test_group_correlations_do_not_depend_on_the_number_of_threads(same_on_one_and_three_threads):
    rng = np.random.default_rng(11)
    n = 5 * BLOCK + 7
    x = rng.standard_normal(n)
    y = 0.5 * x + rng.standard_normal(n)
    group = rng.integers(0, 3, n)
    group[:2] = 3  # a group of two: NaN correlations, which must match too
    group[2:] = np.where(group[2:] == 3, 0, group[2:])
    corr, top = same_on_one_and_three_threads(lambda: group_correlations(x, y, group, 4, 0.9))
    assert np.isnan(corr[3]) and np.isfinite(corr[:3]).all() and np.isfinite(top).sum() == 4
