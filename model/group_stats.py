"""Order statistics of a step per group, in NumPy: the reference of :mod:`model.group_stats_jit`.

The ``steps`` table's ``gini_utility`` and ``corr_proxy_value`` / ``corr_proxy_value_top``
columns, per principal and over all agents. The compiled module computes them from one sort
of the whole population; the functions here, with the same names, are the readable
definitions that ``tests/model/test_group_stats_jit.py`` holds it to. A group's statistics
are those of its members ``x[group == g]``; the last entry of every result is over all agents.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "clearly_positive",
    "correlation",
    "gini",
    "group_correlations",
    "group_ginis",
    "radix_argsort",
    "sort_by_group",
]


def clearly_positive(mean: float, mean_abs: float) -> bool:
    """A positive mean that is not rounding noise of values summing to about zero.

    That is ``mean > 64·eps·mean_abs``: a mean below 64 rounding errors of the values' sum is
    treated as zero.

    Args:
        mean: The mean of some values.
        mean_abs: The mean of their absolute values.
    """
    return mean > 64 * np.finfo(float).eps * mean_abs


def gini(x: np.ndarray) -> float:
    """Gini coefficient of ``x``, the mean absolute difference over twice the mean.

    ``G = Σ_i Σ_l |x_i − x_l| / (2n²·x̄) = Σ_i (2i − n − 1)·x_(i) / (n²·x̄)`` with ``x_(1) ≤ … ≤
    x_(n)`` the sorted values (Gini 1912, "Variabilità e mutabilità"; the sorted form counts,
    for each x_(i), the i − 1 values below it and the n − i above). Negative entries are
    allowed (the coefficient may then exceed 1). NaN when ``x`` is empty or its mean is not
    :func:`clearly_positive`.
    """
    n = len(x)
    if n == 0:
        return float("nan")
    mean = float(x.mean())
    if not clearly_positive(mean, float(np.abs(x).mean())):
        return float("nan")
    weights = np.arange(1 - n, n, 2, dtype=float)  # 2i − n − 1 for i = 1..n
    return float(weights @ np.sort(x) / (n * n * mean))


def correlation(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation ``mean((x − x̄)(y − ȳ)) / (sd x · sd y)`` (population sds).

    NaN with fewer than 3 points or when either variable has no variance.
    """
    if len(x) < 3:
        return float("nan")
    sx, sy = x.std(), y.std()
    if sx == 0 or sy == 0:
        return float("nan")
    return float(np.mean((x - x.mean()) * (y - y.mean())) / (sx * sy))


def radix_argsort(x: np.ndarray) -> np.ndarray:
    """Stable ascending argsort of float64 ``x``, with -0.0 before 0.0.

    ``np.argsort(x, kind="stable")`` except that a negative zero sorts before a positive one
    (the compiled radix sort orders IEEE-754 bit patterns); NaNs last, in their original order.

    Args:
        x: Values, (N,).

    Returns:
        The permutation, (N,) int64.
    """
    x = np.asarray(x, dtype=float)
    positive_zero = (x == 0) & ~np.signbit(x)
    return np.lexsort((positive_zero, x))


def sort_by_group(x: np.ndarray, group: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``x`` in ascending order, ties by group, and the group of each of its entries.

    Args:
        x: Values, (N,).
        group: Group index per entry, (N,).

    Returns:
        ``(ordered, groups)`` (a lexicographic sort by value, then group; NaNs last).
    """
    x = np.asarray(x, dtype=float)
    order = np.lexsort((np.asarray(group), x))
    return x[order], np.asarray(group)[order]


def group_ginis(x: np.ndarray, group: np.ndarray, n_groups: int) -> list[float]:
    """:func:`gini` of ``x`` within each group ``0..n_groups-1``, then over all entries.

    Args:
        x: Values, (N,).
        group: Group index per entry, (N,).
        n_groups: Number of groups.

    Returns:
        ``n_groups + 1`` coefficients (NaN for an empty group).
    """
    return [gini(x[group == g]) for g in range(n_groups)] + [gini(x)]


def group_correlations(
    x: np.ndarray, y: np.ndarray, group: np.ndarray, n_groups: int, top_quantile: float
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`correlation` of x and y per group and overall, and among each group's top x.

    The top of a group are its entries with ``x ≥ np.quantile(x_group, top_quantile)`` (linear
    interpolation between order statistics, NumPy's default; for the last, overall entry the
    quantile over all). ``corr_proxy_value_top`` measures how far the proxy keeps tracking the
    value where it is pushed hardest: extremal Goodhart (Manheim & Garrabrant 2018).

    Args:
        x: First variable (the proxy), (N,).
        y: Second variable (true value), (N,).
        group: Group index per entry, (N,).
        n_groups: Number of groups.
        top_quantile: Quantile of x that starts the top.

    Returns:
        ``(corr, corr_top)``, each ``n_groups + 1`` long (NaN where undefined).
    """
    corr = np.full(n_groups + 1, np.nan)
    top = np.full(n_groups + 1, np.nan)
    for g in range(n_groups + 1):
        mask = group == g if g < n_groups else np.ones(len(x), dtype=bool)
        xs, ys = x[mask], y[mask]
        corr[g] = correlation(xs, ys)
        if len(xs):
            chosen = xs >= np.quantile(xs, top_quantile)
            top[g] = correlation(xs[chosen], ys[chosen])
    return corr, top
