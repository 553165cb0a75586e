"""Tests of analysis/stats.py's t quantile: the value of ``scipy.stats.t.ppf`` to the bit.

Guards against: a substitute for ``scipy.stats`` (whose import costs every command a second)
that rounds differently, so that intervals in figures, summaries and verdicts would move.
"""

from __future__ import annotations

import numpy as np
from scipy import stats as sps

from mesaopt.analysis.stats import t_interval, t_quantile


def test_t_quantile_is_scipy_stats_t_ppf_to_the_bit():
    levels = np.concatenate([np.linspace(0.001, 0.999, 999), [0.9, 0.95, 0.99, 0.999999]])
    qs = 0.5 + levels / 2
    for df in [*range(1, 301), 1e3, 1e6, np.inf, 0.5, 2.5]:
        expected = sps.t.ppf(qs, df)
        got = np.array([t_quantile(q, df) for q in qs])
        assert np.array_equal(got, expected), df
    counts = np.array([1, 2, 5, 40, 1000])
    assert np.array_equal(t_quantile(0.975, counts), sps.t.ppf(0.975, counts))
    assert isinstance(t_quantile(0.975, 3), float)
    assert np.isnan(t_quantile(0.975, 0)) and np.isnan(sps.t.ppf(0.975, 0))


def test_t_interval_of_known_values():
    n, mean, sd, low, high = t_interval(np.array([1.0, 2.0, 3.0, np.nan]))
    half = sps.t.ppf(0.975, 2) * 1.0 / np.sqrt(3)
    assert (n, mean, sd) == (3, 2.0, 1.0)
    assert (low, high) == (2.0 - half, 2.0 + half)
