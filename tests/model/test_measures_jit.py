"""Tests for model/measures_jit.py: compiled outcomes and group sums against NumPy definitions."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from mesaopt.model.channels import substitution_cost_matrix
from mesaopt.model.measures_jit import BLOCK, METRIC_ROWS, group_sums, outcomes_and_measures
from mesaopt.model.metrics import CATEGORIES, categorize


def _inputs(n: int, d: int, j: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    graph = sp.random(n, n, density=min(1.0, 8 / n), random_state=seed, format="csr")
    graph = ((graph + graph.T) > 0).astype(float).tocsr()
    graph.setdiag(0)
    graph.eliminate_zeros()
    graph.data /= np.repeat(np.maximum(np.diff(graph.indptr), 1), np.diff(graph.indptr))
    values = rng.normal(size=(j, d))
    values[0, 0] = -0.5
    low = rng.uniform(0, 0.5, (j, d))
    return {
        "graph": graph,
        "in_weight": np.asarray(graph.sum(axis=0)).ravel(),
        "action": np.abs(rng.normal(size=(n, d))),
        "noise": rng.standard_t(3, size=(n, d)),
        "neighbour_effort": np.abs(rng.normal(size=(n, d))),
        "reward": rng.normal(size=(n, d)),
        "own_best": rng.uniform(0, 2, n),
        "theta": rng.normal(size=(n, d)),
        "capacity": rng.integers(0, 3, n),
        "principal": rng.integers(0, j, n),
        "caught": rng.random(n) < 0.1,
        "metric": rng.normal(size=d),
        "cost": substitution_cost_matrix(rng.uniform(0.5, 2, d), 0.3),
        "externality": rng.normal(size=d),
        "peer": rng.uniform(0, 0.1, d),
        "alpha": rng.normal(size=j),
        "beta": rng.normal(size=j),
        "values": values,
        "risk_premium": rng.uniform(0, 1, j),
        "penalty": rng.uniform(0, 2, j),
        "benchmark": rng.uniform(0, 3, j),
        "hostile": rng.random((j, d)) < 0.5,
        "low": low,
        "high": low + rng.uniform(0.5, 2.0, (j, d)),
        "principal_capacity": rng.integers(0, 3, j),
        "trans_cosine": 0.5,
    }


def _run(x: dict) -> tuple[np.ndarray, ...]:
    n = len(x["action"])
    g = x["graph"]
    metrics = np.full((len(METRIC_ROWS), n), np.nan)
    flags = np.zeros((n, len(CATEGORIES)), dtype=bool)
    primary = np.full(n, -1, dtype=np.int64)
    outside = np.zeros(n, dtype=bool)
    outcomes_and_measures(
        g.indptr, g.indices, g.data, x["in_weight"], x["action"], x["noise"],
        x["neighbour_effort"], x["reward"], x["own_best"], x["theta"], x["capacity"],
        x["principal"], x["caught"], x["metric"], x["cost"], x["externality"], x["peer"],
        x["alpha"], x["beta"], x["values"], x["risk_premium"], x["penalty"], x["benchmark"],
        x["hostile"], x["low"], x["high"], x["principal_capacity"], x["trans_cosine"],
        np.empty(n), metrics, flags, primary, outside,
    )  # fmt: skip
    return metrics, flags, primary, outside


def _numpy_reference(x: dict) -> dict[str, np.ndarray]:
    """The step's per-agent definitions (model/metrics.py docstring), written with NumPy."""
    j = x["principal"]
    a, values = x["action"], x["values"][j]
    y = a + x["noise"]
    proxy = y @ x["metric"]
    value = np.einsum("ij,ij->i", y, values)
    pay = x["alpha"][j] + x["beta"][j] * proxy
    effort_cost = 0.5 * np.einsum("ij,ij->i", a @ x["cost"], a)
    private = (
        np.einsum("ij,ij->i", x["theta"], a)
        - effort_cost
        - x["risk_premium"][j]
        + np.einsum("ij,ij->i", a * x["peer"], x["neighbour_effort"])
    )
    harm = a @ x["externality"]
    received = x["graph"] @ harm
    penalty = np.where(x["caught"], x["penalty"][j], 0.0)
    realized = (
        np.einsum("ij,ij->i", x["reward"], a)
        - effort_cost
        + x["beta"][j] * (proxy - a @ x["metric"])
    )
    return {
        "proxy": proxy,
        "value": value,
        "pay": pay,
        "profit": value - pay + penalty,
        "utility": pay + private + received - penalty,
        "private_payoff": private,
        "externality_given": harm * x["in_weight"],
        "externality_received": received,
        "penalty": penalty,
        "principal_loss": x["benchmark"][j] - (value - effort_cost),
        "mesa_loss": x["own_best"] - realized,
        "goodhart_causal": np.zeros(len(j)),
        "goodhart_adversarial": np.einsum("ij,ij->i", -values * x["hostile"][j], a),
    }


@pytest.mark.parametrize(("d", "j"), [(4, 2), (1, 1), (2, 2), (3, 1), (5, 3)])
def test_outcomes_and_measures_equal_the_numpy_definitions(d, j):
    x = _inputs(2 * BLOCK + 101, d, j, seed=d + j)
    metrics, flags, primary, outside = _run(x)
    for row, name in zip(metrics, METRIC_ROWS, strict=True):
        assert np.allclose(row, _numpy_reference(x)[name], rtol=1e-12, atol=1e-12), name
    expected_flags, expected_primary = categorize(
        x["capacity"],
        x["principal_capacity"][x["principal"]],
        x["theta"],
        x["values"][x["principal"]],
        x["trans_cosine"],
    )
    assert np.array_equal(flags, expected_flags)
    assert np.array_equal(primary, expected_primary)
    k = x["principal"]
    expected_outside = ((x["action"] < x["low"][k]) | (x["action"] > x["high"][k])).any(axis=1)
    assert np.array_equal(outside, expected_outside)
    assert 0 < outside.sum() < len(outside)


def test_outcomes_do_not_depend_on_the_number_of_threads(same_on_one_and_three_threads):
    x = _inputs(4 * BLOCK + 5, 4, 2, seed=3)
    same_on_one_and_three_threads(lambda: _run(x))


def test_group_sums_equal_bincount_and_are_thread_independent(same_on_one_and_three_threads):
    rng = np.random.default_rng(0)
    n = 5 * BLOCK + 77
    columns = rng.normal(size=(3, n)) * 10.0 ** rng.integers(-8, 8, size=(3, n))
    group = rng.integers(0, 4, n)
    one = same_on_one_and_three_threads(lambda: group_sums(columns, group, 5))
    expected = np.stack([np.bincount(group, weights=c, minlength=5) for c in columns], axis=1)
    assert np.allclose(one, expected, rtol=1e-12, atol=1e-6)
    assert (one[4] == 0).all()
    flags = rng.random((n, 2)) < 0.3  # booleans count
    assert np.array_equal(
        group_sums(flags.T, group, 4)[:, 0], np.bincount(group[flags[:, 0]], minlength=4)
    )
