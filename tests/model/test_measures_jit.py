"""Tests for model/measures_jit.py: compiled outcomes and group sums against model/measures.py."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from mesaopt.model import measures
from mesaopt.model.channels import substitution_cost_matrix
from mesaopt.model.kernel_arrays import (
    Graph,
    MeasureArrays,
    PlanArrays,
    PopulationArrays,
    PrincipalArrays,
    StepArrays,
    WorldArrays,
)
from mesaopt.model.measures import FLAGS
from mesaopt.model.measures_jit import (
    BLOCK,
    COMBINATIONS,
    METRIC_ROWS,
    PAIR_LOSSES,
    DecomposedRows,
    GroupSums,
    group_sums,
    outcomes_and_measures,
    record_decomposition,
)


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
    costs = rng.uniform(0.5, 2, d)
    world = WorldArrays(
        metric=rng.normal(size=d),
        peer=rng.uniform(0, 0.1, d),
        externality=rng.normal(size=d),
        cost=substitution_cost_matrix(costs, 0.3),
        root=np.sqrt(costs),
        substitution=0.3,
    )
    population = PopulationArrays(
        principal=rng.integers(0, j, n),
        capacity=rng.integers(0, 3, n),
        is_control=np.zeros(n, dtype=bool),
        theta=rng.normal(size=(n, d)),
        perceive=np.ones((n, d), dtype=bool),
        last_action=np.zeros((n, d)),
        last_noise=np.zeros((n, d)),
        gain=np.full(n, 0.2),
    )
    principals = PrincipalArrays(
        alpha=rng.normal(size=j),
        beta=rng.normal(size=j),
        risk_premium=rng.uniform(0, 1, j),
        penalty=rng.uniform(0, 2, j),
        values=values,
        capacity=rng.integers(0, 3, j),
        benchmark=rng.uniform(0, 3, j),
        hostile=rng.random((j, d)) < 0.5,
        low=low,
        high=low + rng.uniform(0.5, 2.0, (j, d)),
        trans_cosine=0.5,
    )
    plan = PlanArrays(
        neighbour_effort=np.abs(rng.normal(size=(n, d))),
        reward=rng.normal(size=(n, d)),
        action=np.abs(rng.normal(size=(n, d))),
        own_best=rng.uniform(0, 2, n),
        optimum=np.abs(rng.normal(size=(n, d))),  # not read by the outcome kernel
    )
    step = StepArrays(plan=plan, noise=rng.standard_t(3, size=(n, d)), caught=rng.random(n) < 0.1)
    return {
        "graph": Graph.of(graph),
        "world": world,
        "population": population,
        "principals": principals,
        "step": step,
    }


def _run(x: dict, **options) -> MeasureArrays:
    n = len(x["step"].plan.action)
    out = MeasureArrays(
        metrics=np.full((len(METRIC_ROWS), n), np.nan),
        flags=np.zeros((n, len(FLAGS)), dtype=bool),
        primary=np.full(n, -1, dtype=np.int64),
        outside=np.zeros(n, dtype=bool),
        harm=np.empty(n),
        neighbour_effort=np.full((n, x["step"].plan.action.shape[1]), np.nan),
        gathered_from=np.full((n, x["step"].plan.action.shape[1]), np.nan),
    )
    outcomes_and_measures(**x, out=out, **options)
    return out


@pytest.mark.parametrize(
    ("d", "j", "counts_goals"),
    [(4, 2, False), (1, 1, True), (2, 2, False), (3, 1, True), (5, 3, False)],
)
def test_outcomes_and_measures_equal_the_numpy_reference(d, j, counts_goals):
    x = _inputs(2 * BLOCK + 101, d, j, seed=d + j)
    deceptive = np.random.default_rng(d).random(len(x["step"].plan.action)) < 0.2
    options = {"deceptive": deceptive, "welfare_counts_agent_goals": counts_goals}
    got = _run(x, **options)
    metrics, flags, outside = measures.outcomes_and_measures(**x, **options)
    # Equal up to rounding: the kernel adds each row's terms in one loop over the channels,
    # the reference with BLAS products and einsum (other orders of the same sums).
    for row, name in zip(got.metrics, METRIC_ROWS, strict=True):
        assert np.allclose(row, metrics[name], rtol=1e-12, atol=1e-12), name
    # G a of this step's efforts, summed as SciPy sums it, and the efforts it came from: bit
    # for bit (the next step's plan reads them as if it had gathered them itself).
    g = x["graph"]
    adjacency = sp.csr_array((g.data, g.indices, g.indptr), shape=(len(g.in_weight),) * 2)
    action = x["step"].plan.action
    assert np.array_equal(got.neighbour_effort, adjacency @ action)
    assert np.array_equal(got.gathered_from, action)
    # Flags and the range test are comparisons: bit for bit.
    assert np.array_equal(got.flags, flags)
    assert np.array_equal(got.outside, outside)
    assert 0 < outside.sum() < len(outside)
    assert 0 < flags.sum(axis=0).min() or j == 1  # every flag occurs (super needs two C_j)
    assert np.array_equal(flags[:, FLAGS.index("deceptive")], deceptive)
    assert np.array_equal(flags[:, -1], ~flags[:, :-1].any(axis=1))  # aligned = no other flag
    # welfare = value + received + peer − cost − risk (+ θᵀa): profit + utility less θᵀa
    goals = metrics["agent_goal_payoff"]
    transfers_out = metrics["profit"] + metrics["utility"] - (0.0 if counts_goals else goals)
    assert np.allclose(metrics["welfare"], transfers_out, rtol=1e-12, atol=1e-9)
    assert not np.allclose(goals, 0.0)


def test_outcomes_without_deception_flag_nobody_deceptive():
    x = _inputs(301, 3, 2, seed=9)
    got = _run(x)
    assert not got.flags[:, FLAGS.index("deceptive")].any()
    _, flags, _ = measures.outcomes_and_measures(**x)
    assert np.array_equal(got.flags, flags)


def test_outcomes_do_not_depend_on_the_number_of_threads(same_on_one_and_three_threads):
    x = _inputs(4 * BLOCK + 5, 4, 2, seed=3)
    same_on_one_and_three_threads(lambda: tuple(_run(x)))


def test_group_sums_equal_the_reference_and_are_thread_independent(same_on_one_and_three_threads):
    rng = np.random.default_rng(0)
    n = 5 * BLOCK + 77
    columns = rng.normal(size=(3, n)) * 10.0 ** rng.integers(-8, 8, size=(3, n))
    group = rng.integers(0, 4, n)
    one = same_on_one_and_three_threads(lambda: group_sums(columns, group, 5))
    # Blocked sums in block order vs bincount's one pass: the same sum in another order.
    assert np.allclose(one, measures.group_sums(columns, group, 5), rtol=1e-12, atol=1e-6)
    assert (one[4] == 0).all()
    assert np.allclose(
        group_sums(columns, group, 5, [2, 0]), measures.group_sums(columns, group, 5, [2, 0])
    )
    flags = rng.random((n, 2)) < 0.3  # booleans count, exactly
    assert np.array_equal(group_sums(flags.T, group, 4), measures.group_sums(flags.T, group, 4))


def test_the_kernels_group_sums_are_group_sums_of_its_outputs(same_on_one_and_three_threads):
    """The sums the outcome kernel adds up as it goes are group_sums of what it writes, bit for bit
    (same blocks, same order), whatever the number of threads."""
    n, d, j = 3 * BLOCK + 17, 4, 3
    x = _inputs(n, d, j, seed=5)
    principal = x["population"].principal

    def run() -> tuple:
        out = _run(x)
        sums = outcomes_and_measures(**x, out=out)
        return (*sums, out.metrics, out.flags, out.outside)

    *sums, metrics, flags, outside = same_on_one_and_three_threads(run)
    sums = GroupSums(*sums)
    causal = METRIC_ROWS.index("goodhart_causal")
    assert (metrics[causal] == 0).all() and (sums.metrics[:, :, causal] == 0).all()
    assert np.array_equal(sums.metrics.sum(axis=0), group_sums(metrics, principal, j))
    assert np.array_equal(
        sums.effort.sum(axis=0), group_sums(x["step"].plan.action.T, principal, j)
    )
    code = flags.astype(np.int64) @ (1 << np.arange(len(FLAGS)))
    pair = principal * COMBINATIONS + code
    losses = [METRIC_ROWS.index(name) for name in PAIR_LOSSES]
    assert np.array_equal(
        sums.pair_losses.sum(axis=0), group_sums(metrics, pair, j * COMBINATIONS, losses)
    )
    assert np.array_equal(sums.pair_count.sum(axis=0), np.bincount(pair, minlength=j * 32))
    assert np.array_equal(sums.outside.sum(axis=0), np.bincount(principal[outside], minlength=j))
    assert len(np.unique(pair)) > j and 0 < outside.sum() < n  # the sums are not trivial


def test_compiled_modules_record_the_current_kernel_arrays_layout():
    """A field layout change must edit every compiled module (which drops Numba's stale cache)."""
    from mesaopt.agents import response_jit, sandbox_jit
    from mesaopt.model import kernel_arrays

    # (model.measures_jit takes the bundles apart in Python: its cached kernels never see them.)
    for module in (response_jit, sandbox_jit):
        assert module.KERNEL_ARRAYS_LAYOUT == kernel_arrays.layout(), module.__name__
    with pytest.raises(RuntimeError, match=kernel_arrays.layout()):
        kernel_arrays.check_layout("000000000000", "some_jit")


def test_the_layout_tells_reordered_fields_apart(monkeypatch):
    from mesaopt.model import kernel_arrays

    before = kernel_arrays.layout()
    swapped = ("peer", "metric", *WorldArrays._fields[2:])
    monkeypatch.setattr(WorldArrays, "_fields", swapped)
    assert kernel_arrays.layout() != before


def test_record_decomposition_equals_its_numpy_definition():
    """Causal Goodhart, its block sums and the primary categories, against the NumPy steps."""
    rng = np.random.default_rng(11)
    n, j = 3 * BLOCK + 5, 3
    rows = np.sort(rng.choice(n, 4000, replace=False))
    parts = rng.normal(size=(len(measures.PARTS), len(rows)))
    parts[:, rng.random(len(rows)) < 0.1] = 0.0  # aligned: no positive cause
    tied = rng.random(len(rows)) < 0.1
    parts[1, tied] = parts[0, tied] = np.abs(parts[0, tied])  # ties: the first part names it
    parts[:4, rng.random(len(rows)) < 0.05] = 1e-12  # within the aligned tolerance
    stale = rng.random(n) < 0.5
    principal = rng.integers(0, j, n)
    capacity = rng.integers(0, 3, n)
    principal_capacity = np.array([1, 2, 0])
    benchmark = rng.normal(0, 3, j)
    metrics = rng.normal(size=(len(METRIC_ROWS), n))  # the caller's per-agent rows
    sums = rng.normal(size=((n + BLOCK - 1) // BLOCK, j, len(METRIC_ROWS)))
    primary = np.full(n, -1, dtype=np.int64)
    column = METRIC_ROWS.index("goodhart_causal")
    expected_causal, expected_sums = metrics[column].copy(), sums.copy()
    expected_primary = primary.copy()

    expected_causal[rows] = np.where(stale[rows], parts[measures.PARTS.index("world_model")], 0.0)
    np.add.at(expected_sums[:, :, column], (rows // BLOCK, principal[rows]), expected_causal[rows])
    of = principal[rows]
    expected_primary[rows] = measures.primary_category(
        parts, capacity[rows], principal_capacity[of], benchmark[of]
    )
    record_decomposition(
        DecomposedRows(
            rows=rows,
            parts=parts,
            stale=stale,
            principal=principal,
            capacity=capacity,
            principal_capacity=principal_capacity,
            benchmark=benchmark,
            causal=metrics[column],
            sums=sums,
            causal_column=column,
            primary=primary,
        )
    )
    assert np.array_equal(metrics[column], expected_causal)
    assert np.array_equal(sums, expected_sums)  # the same adds in the same order
    assert np.array_equal(primary, expected_primary)
    assert len(set(primary[rows].tolist())) == len(measures.CATEGORIES)  # every category seen
