"""Tests for model/group_stats_jit.py: sort, Gini and correlations against model/group_stats.py."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mesaopt.model import group_stats, group_stats_jit
from mesaopt.model.group_stats import correlation, gini
from mesaopt.model.measures_jit import BLOCK


@settings(max_examples=200, deadline=None)
@given(
    hnp.arrays(
        np.float64,
        st.integers(0, 300),
        elements=st.floats(allow_nan=True, allow_infinity=True, width=64),
    )
)
def test_radix_argsort_equals_the_reference_permutation(x):
    order = group_stats_jit.radix_argsort(x)
    # The same permutation, bit for bit: stable, -0.0 before 0.0, NaNs last in their order.
    assert np.array_equal(order, group_stats.radix_argsort(x))
    assert np.array_equal(x[order], np.sort(x), equal_nan=True)


@settings(max_examples=300, deadline=None)
@given(
    hnp.arrays(
        np.float64,
        st.integers(0, 300),
        # Few distinct values: ties, both zeros and NaNs at the boundary of the count.
        elements=st.sampled_from([-1.0, -0.0, 0.0, 0.5, 2.0, np.inf, -np.inf, np.nan])
        | st.floats(allow_nan=True, allow_infinity=True, width=64),
    ),
    st.integers(-2, 310),
)
def test_smallest_is_the_start_of_the_stable_order(x, count):
    """The partition shortcut takes the same entries as the full radix sort would."""
    expected = np.sort(group_stats_jit.radix_argsort(x)[: max(count, 0)])
    assert np.array_equal(group_stats_jit.smallest(x, count), expected)


@settings(max_examples=100, deadline=None)
@given(
    hnp.arrays(np.float64, st.integers(0, 200), elements=st.floats(-1e6, 1e6, width=64)),
    st.integers(1, 4),
)
def test_sort_by_group_equals_the_reference(x, j):
    group = np.arange(len(x)) % j
    ordered, groups = group_stats_jit.sort_by_group(x, group)
    e_ordered, e_groups = group_stats.sort_by_group(x, group)
    assert np.array_equal(ordered, e_ordered) and np.array_equal(groups, e_groups)


@pytest.mark.parametrize("j", [1, 3, 5, 8, 130])  # runs merged in 0, 2, 3, 3 and 8 rounds
def test_sort_by_group_with_ties_nans_and_many_groups_equals_the_reference(j):
    """Each group's run is sorted alone and the runs merged: ties across groups in group order,
    NaNs after every number, more groups than an int8 label holds."""
    rng = np.random.default_rng(j)
    x = rng.integers(-20, 20, 3000).astype(float)  # many ties
    x[rng.random(3000) < 0.05] = np.nan
    x[rng.random(3000) < 0.05] = -0.0
    group = rng.integers(0, j, 3000)
    ordered, groups = group_stats_jit.sort_by_group(x, group)
    e_ordered, e_groups = group_stats.sort_by_group(x, group)
    assert np.array_equal(ordered, e_ordered, equal_nan=True)
    assert np.array_equal(groups, e_groups)
    assert groups.dtype == (np.int8 if j < 128 else np.int64)


def test_sort_by_group_of_nothing_and_of_a_negative_group():
    ordered, groups = group_stats_jit.sort_by_group(np.zeros(0), np.zeros(0, dtype=int))
    assert ordered.shape == groups.shape == (0,)
    with pytest.raises(ValueError, match="at least 0"):
        group_stats_jit.sort_by_group(np.ones(3), np.array([0, -1, 0]))


def _groups(n: int, j: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(1.0, 1.0, n)
    y = 0.5 * x + rng.normal(size=n)
    group = rng.integers(0, j, n)
    return x, y, group


@pytest.mark.parametrize(("n", "j"), [(1, 1), (2, 2), (10, 3), (1000, 2), (50_000, 3)])
def test_group_ginis_equal_the_reference(n, j):
    x, _, group = _groups(n, j, seed=n)
    expected = group_stats.group_ginis(x, group, j)
    # One running sum over the sorted population vs a dot product per group (BLAS): equal up
    # to the rounding of n additions.
    assert np.allclose(
        group_stats_jit.group_ginis(x, group, j), expected, rtol=1e-10, equal_nan=True
    )


def test_group_ginis_nan_for_an_empty_group_or_a_zero_mean():
    x = np.array([1.0, -1.0, 2.0, -2.0])
    got = group_stats_jit.group_ginis(x, np.array([0, 0, 0, 0]), 2)
    assert all(np.isnan(got))
    assert np.isnan(gini(x)) and np.isnan(gini(x[:0]))


def test_gini_is_the_mean_absolute_difference_over_twice_the_mean():
    x = np.random.default_rng(2).uniform(0, 3, 40)
    direct = np.abs(x[:, None] - x[None, :]).mean() / (2 * x.mean())
    assert gini(x) == pytest.approx(direct, rel=1e-12)


@pytest.mark.parametrize("q", [0.9, 0.5, 0.0, 1.0, 0.37])
@pytest.mark.parametrize(("n", "j"), [(2, 1), (5, 2), (101, 3), (20_000, 2)])
def test_group_correlations_equal_the_reference(n, j, q):
    x, y, group = _groups(n, j, seed=n + j)
    corr, top = group_stats_jit.group_correlations(x, y, group, j, q)
    e_corr, e_top = group_stats.group_correlations(x, y, group, j, q)
    # Blocked, centred two-pass sums vs NumPy's pairwise means: equal up to rounding. The top
    # cut is NumPy's quantile exactly (the same rows are chosen), see the test below.
    assert np.allclose(corr, e_corr, rtol=1e-9, equal_nan=True)
    assert np.allclose(top, e_top, rtol=1e-9, equal_nan=True)
    assert np.isnan(e_top).sum() == np.isnan(top).sum()


def test_group_correlations_use_exact_numpy_quantiles_with_ties():
    x = np.repeat(np.arange(10.0), 7)
    y = np.sin(np.arange(len(x)))
    group = np.arange(len(x)) % 2
    _, top = group_stats_jit.group_correlations(x, y, group, 2, 0.75)
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
    corr, top = same_on_one_and_three_threads(
        lambda: group_stats_jit.group_correlations(x, y, group, 4, 0.9)
    )
    assert np.isnan(corr[3]) and np.isfinite(corr[:3]).all() and np.isfinite(top).sum() == 4
