"""Tests for agents/response.py: exact QP best response, best-of-k, control, helpers."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import linalg, optimize, sparse

from mesaopt.agents.response import (
    MAX_CHANNELS,
    best_of_k,
    best_response,
    control_update,
    quadratic_payoff,
    reward_gradient,
)
from mesaopt.model.channels import substitution_cost_matrix

# --------------------------------------------------------------------------- oracles


def qp_oracle(r: np.ndarray, k: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Exact QP solution via scipy's NNLS (Lawson–Hanson active set).

    With K_PP = LLᵀ, ½‖Lᵀa − L⁻¹r‖² = ½aᵀKa − rᵀa + const, so NNLS solves the QP exactly.
    """
    out = np.zeros((r.shape[0], k.shape[0]))
    for i in range(r.shape[0]):
        idx = np.flatnonzero(mask[i])
        if idx.size == 0:
            continue
        low = linalg.cholesky(k[np.ix_(idx, idx)], lower=True)
        rhs = linalg.solve_triangular(low, r[i, idx], lower=True)
        out[i, idx], _ = optimize.nnls(low.T, rhs)
    return out


def lbfgsb_oracle(r: np.ndarray, k: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Bound-constrained numerical optimum (independent of any active-set logic)."""
    d = k.shape[0]
    out = np.zeros((r.shape[0], d))
    for i in range(r.shape[0]):
        bounds = [(0.0, None) if mask[i, j] else (0.0, 0.0) for j in range(d)]
        res = optimize.minimize(
            lambda a, ri=r[i]: 0.5 * a @ k @ a - ri @ a,
            np.zeros(d),
            jac=lambda a, ri=r[i]: k @ a - ri,
            method="L-BFGS-B",
            bounds=bounds,
            options={"ftol": 1e-15, "gtol": 1e-12, "maxiter": 10_000},
        )
        out[i] = res.x
    return out


def random_spd(rng: np.random.Generator, d: int, ridge: float = 0.3) -> np.ndarray:
    a = rng.normal(size=(d, d))
    return a @ a.T + ridge * np.eye(d)


@st.composite
def qp_problems(draw, max_d: int = 5, max_n: int = 6):
    d = draw(st.integers(1, max_d))
    n = draw(st.integers(1, max_n))
    elems = st.floats(-2.0, 2.0, allow_nan=False, allow_subnormal=False)
    a = draw(hnp.arrays(float, (d, d), elements=elems))
    ridge = draw(st.floats(0.05, 2.0))
    k = a @ a.T + ridge * np.eye(d)
    r = draw(hnp.arrays(float, (n, d), elements=st.floats(-3.0, 3.0, allow_subnormal=False)))
    mask = draw(hnp.arrays(bool, (n, d)))
    return r, k, mask


def assert_kkt(r: np.ndarray, k: np.ndarray, mask: np.ndarray, a: np.ndarray, tol: float = 1e-8):
    """Check the KKT conditions of the masked non-negative QP row by row."""
    grad = r - a @ k
    assert np.all(a >= 0.0)
    assert np.all(a[~mask] == 0.0)
    active = a > 0.0
    assert np.all(np.abs(grad[active]) <= tol)
    assert np.all(grad[mask & ~active] <= tol)


# --------------------------------------------------------------------------- best_response


@settings(max_examples=150, deadline=None)
@given(qp_problems())
def test_best_response_equals_exact_qp(problem):
    r, k, mask = problem
    got = best_response(r, k, mask)
    want = qp_oracle(r, k, mask)
    scale = 1.0 + np.abs(want).max()
    assert np.all(got >= 0.0)
    assert np.all(got[~mask] == 0.0)
    # The QP is strictly convex: a KKT point is its unique optimum, and no feasible point (the
    # oracle's included) does better.
    assert_kkt(r, k, mask, got, tol=1e-7 * (1.0 + np.abs(r).max()) * np.abs(k).max())
    value = np.einsum("ij,ij->i", r, got) - 0.5 * np.einsum("ij,jk,ik->i", got, k, got)
    oracle = np.einsum("ij,ij->i", r, want) - 0.5 * np.einsum("ij,jk,ik->i", want, k, want)
    assert np.all(value >= oracle - 1e-9 * scale**2)
    # NNLS stops at its own tolerance: where its answer is a KKT point too, the two agree.
    grad = r - want @ k
    kkt = (np.abs(grad) <= 1e-9) | ((want == 0) & (grad <= 1e-9))
    exact = np.all(kkt | ~mask, axis=1)
    np.testing.assert_allclose(got[exact], want[exact], rtol=0, atol=1e-6 * scale)


def test_best_response_equals_lbfgsb():
    rng = np.random.default_rng(11)
    for d in (2, 3, 5):
        k = random_spd(rng, d)
        r = rng.normal(size=(20, d))
        mask = rng.random((20, d)) < 0.8
        got = best_response(r, k, mask)
        want = lbfgsb_oracle(r, k, mask)
        np.testing.assert_allclose(got, want, atol=1e-5)
        # The exact solution is never beaten by the numerical one.
        assert np.all(quadratic_payoff(r, k, got) >= quadratic_payoff(r, k, want) - 1e-12)


def test_clipping_the_unconstrained_solution_is_wrong():
    # Strong substitutes: the unconstrained optimum wants negative effort on channel 2.
    k = np.array([[1.0, 0.9], [0.9, 1.0]])
    r = np.array([[1.0, 0.5]])
    mask = np.ones_like(r, dtype=bool)
    clipped = np.maximum(np.linalg.solve(k, r[0]), 0.0)[None, :]
    exact = best_response(r, k, mask)
    np.testing.assert_allclose(exact, [[1.0, 0.0]], atol=1e-12)
    np.testing.assert_allclose(exact, qp_oracle(r, k, mask), atol=1e-12)
    assert not np.allclose(clipped, exact)
    assert clipped[0, 0] == pytest.approx(0.55 / 0.19)
    assert quadratic_payoff(r, k, exact)[0] > quadratic_payoff(r, k, clipped)[0]


def test_clipping_is_wrong_under_a_perception_mask_too():
    # Complements: channel 2 boosts channel 1, but the agent cannot perceive channel 2.
    k = np.array([[1.0, -0.5], [-0.5, 1.0]])
    r = np.array([[1.0, 1.0]])
    mask = np.array([[True, False]])
    unconstrained = np.linalg.solve(k, r[0])
    assert np.allclose(best_response(r, k, mask), [[1.0, 0.0]])
    assert not np.isclose(unconstrained[0], 1.0)


@settings(max_examples=60, deadline=None)
@given(
    hnp.arrays(float, (8, 4), elements=st.floats(-3.0, 3.0, allow_subnormal=False)),
    hnp.arrays(float, 4, elements=st.floats(0.1, 5.0)),
    hnp.arrays(bool, (8, 4)),
)
def test_diagonal_fast_path_equals_general_path(r, diag, mask):
    k = np.diag(diag)
    fast = best_response(r, k, mask)
    np.testing.assert_array_equal(fast, np.where(mask, np.maximum(r, 0.0) / diag, 0.0))
    # A negligible off-diagonal entry forces the active-set enumeration.
    nudged = k.copy()
    nudged[0, 1] = nudged[1, 0] = 1e-300
    general = best_response(r, nudged, mask)
    # Agreement up to the enumeration's KKT tolerance (a few hundred ulps of the problem scale).
    scale = (1.0 + np.abs(r).max()) / diag.min()
    np.testing.assert_allclose(general, fast, rtol=1e-12, atol=1e-10 * scale)


def test_best_response_kkt_on_a_large_population():
    rng = np.random.default_rng(3)
    for d in (4, 7):
        k = substitution_cost_matrix(rng.uniform(0.5, 2.0, d), 0.6)
        r = rng.normal(size=(4000, d))
        mask = rng.random((4000, d)) < 0.7
        a = best_response(r, k, mask)
        assert_kkt(r, k, mask, a)
        full = best_response(r, k, np.ones_like(mask))
        assert_kkt(r, k, np.ones_like(mask), full)


def test_best_response_edge_cases():
    k = np.eye(3) + 0.2
    assert best_response(np.zeros((0, 3)), k, np.zeros((0, 3), bool)).shape == (0, 3)
    # Nothing perceived, or nothing worth doing: zero effort.
    r = np.array([[1.0, 2.0, 3.0], [-1.0, -2.0, -0.5]])
    assert np.all(best_response(r, k, np.zeros((2, 3), bool)) == 0.0)
    assert np.all(best_response(r[1:], k, np.ones((1, 3), bool)) == 0.0)


def test_best_response_rejects_bad_input():
    d = MAX_CHANNELS + 1
    with pytest.raises(ValueError, match="at most"):
        best_response(np.ones((1, d)), np.eye(d), np.ones((1, d), bool))
    with pytest.raises(ValueError, match="positive definite"):
        best_response(np.ones((1, 2)), np.array([[1.0, 2.0], [2.0, 1.0]]), np.ones((1, 2), bool))
    with pytest.raises(ValueError, match="symmetric"):
        best_response(np.ones((1, 2)), np.array([[1.0, 0.5], [0.0, 1.0]]), np.ones((1, 2), bool))
    with pytest.raises(ValueError, match="shape"):
        best_response(np.ones((2, 2)), np.eye(2), np.ones((1, 2), bool))
    with pytest.raises(ValueError, match="finite"):
        best_response(np.array([[np.nan, 1.0]]), np.eye(2) + 0.1, np.ones((1, 2), bool))


def test_best_response_handles_ten_channels():
    rng = np.random.default_rng(5)
    k = random_spd(rng, 10, ridge=1.0)
    r = rng.normal(size=(300, 10))
    mask = rng.random((300, 10)) < 0.8
    a = best_response(r, k, mask)
    np.testing.assert_allclose(a, qp_oracle(r, k, mask), atol=1e-8)


# --------------------------------------------------------------------------- best_of_k


@pytest.fixture
def population():
    rng = np.random.default_rng(21)
    n, d = 500, 4
    k = substitution_cost_matrix(np.array([1.0, 2.0, 0.5, 1.5]), 0.4)
    r = rng.normal(0.5, 1.0, size=(n, d))
    mask = rng.random((n, d)) < 0.8
    return r, k, mask


def test_best_of_one_is_a_uniform_draw(population):
    r, k, mask = population
    abar = np.where(mask, np.maximum(r, 0.0), 0.0) / np.diag(k)
    a = best_of_k(r, k, mask, 1, 0.0, np.random.default_rng(0))
    assert np.all(a >= 0.0)
    assert np.all(a <= 2.0 * abar)
    assert np.all(a[~mask] == 0.0)
    # a / (2ā) ~ Uniform(0, 1) where ā > 0: mean 1/2, variance 1/12.
    u = a[abar > 0] / (2.0 * abar[abar > 0])
    assert abs(u.mean() - 0.5) < 4.0 * np.sqrt(1.0 / 12.0 / u.size)


def test_best_of_k_approaches_exact_best_response(population):
    r, k, mask = population
    best = quadratic_payoff(r, k, best_response(r, k, mask))
    gaps = []
    for n_cand in (1, 4, 16, 64, 256, 1024):
        a = best_of_k(r, k, mask, n_cand, 0.0, np.random.default_rng(n_cand))
        gap = best - quadratic_payoff(r, k, a)
        assert np.all(gap >= -1e-12)
        gaps.append(gap.mean())
    assert all(later < earlier for earlier, later in itertools.pairwise(gaps))
    assert gaps[-1] < 0.05 * gaps[0]


def test_best_of_k_never_beats_the_optimum_even_with_noise(population):
    r, k, mask = population
    best = quadratic_payoff(r, k, best_response(r, k, mask))
    a = best_of_k(r, k, mask, 64, 2.0, np.random.default_rng(1))
    assert np.all(quadratic_payoff(r, k, a) <= best + 1e-12)
    # Noise in the internal model costs payoff on average.
    clean = best_of_k(r, k, mask, 64, 0.0, np.random.default_rng(1))
    assert quadratic_payoff(r, k, a).mean() < quadratic_payoff(r, k, clean).mean()


def test_best_of_k_is_deterministic_and_chunk_invariant(population):
    r, k, mask = population
    ref = best_of_k(r, k, mask, 16, 0.3, np.random.default_rng(7))
    np.testing.assert_array_equal(ref, best_of_k(r, k, mask, 16, 0.3, np.random.default_rng(7)))
    assert not np.array_equal(ref, best_of_k(r, k, mask, 16, 0.3, np.random.default_rng(8)))
    for chunk in (1, 16, 17, 100, 1 << 20):
        rng = np.random.default_rng(7)
        got = best_of_k(r, k, mask, 16, 0.3, rng, chunk=chunk)
        np.testing.assert_array_equal(got, ref)
    # The generator is left in the same state whatever the chunking.
    states = []
    for chunk in (1, 1 << 20):
        rng = np.random.default_rng(7)
        best_of_k(r, k, mask, 16, 0.3, rng, chunk=chunk)
        states.append(rng.random())
    assert states[0] == states[1]


def test_best_of_k_rejects_bad_input(population):
    r, k, mask = population
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError):
        best_of_k(r, k, mask, 0, 0.0, rng)
    with pytest.raises(ValueError):
        best_of_k(r, k, mask, 4, -1.0, rng)
    with pytest.raises(ValueError):
        best_of_k(r, k, mask, 4, 0.0, rng, chunk=0)


# --------------------------------------------------------------------------- control


def test_control_update_moves_along_the_gradient():
    a = np.array([[1.0, 2.0, 0.5]])
    g = np.array([[0.5, -1.0, 0.1]])
    mask = np.ones_like(a, dtype=bool)
    np.testing.assert_allclose(control_update(a, g, 0.2, mask), a + 0.2 * g)


@settings(max_examples=80, deadline=None)
@given(
    hnp.arrays(float, (6, 3), elements=st.floats(0.0, 5.0)),
    hnp.arrays(float, (6, 3), elements=st.floats(-10.0, 10.0)),
    st.floats(0.0, 3.0),
    hnp.arrays(bool, (6, 3)),
)
def test_control_update_stays_feasible(a, g, gain, mask):
    out = control_update(a, g, gain, mask)
    assert np.all(out >= 0.0)
    assert np.all(out[~mask] == 0.0)
    np.testing.assert_allclose(out[mask], np.maximum(a + gain * g, 0.0)[mask])


@pytest.mark.parametrize("diagonal", [True, False])
def test_repeated_control_converges_to_best_response(diagonal):
    rng = np.random.default_rng(9)
    costs = np.array([1.0, 2.0, 0.5, 1.5])
    k = np.diag(costs) if diagonal else substitution_cost_matrix(costs, 0.5)
    r = rng.normal(size=(200, 4))
    mask = rng.random((200, 4)) < 0.75
    gain = 1.0 / np.linalg.eigvalsh(k)[-1]
    a = np.zeros_like(r)
    for _ in range(2000):
        a = control_update(a, reward_gradient(r, k, a), gain, mask)
    np.testing.assert_allclose(a, best_response(r, k, mask), atol=1e-8)


# --------------------------------------------------------------------------- helpers


def test_reward_gradient_and_payoff_agree_with_finite_differences():
    rng = np.random.default_rng(4)
    k = random_spd(rng, 3)
    r = rng.normal(size=(5, 3))
    a = rng.uniform(0.0, 2.0, size=(5, 3))
    payoff = quadratic_payoff(r, k, a)
    np.testing.assert_allclose(
        payoff, [ri @ ai - 0.5 * ai @ k @ ai for ri, ai in zip(r, a, strict=True)]
    )
    h = 1e-6
    numeric = np.stack(
        [
            (quadratic_payoff(r, k, a + h * e) - quadratic_payoff(r, k, a - h * e)) / (2 * h)
            for e in np.eye(3)
        ],
        axis=1,
    )
    np.testing.assert_allclose(reward_gradient(r, k, a), numeric, atol=1e-6)


# --------------------------------------------------------------- shared-budget (water filling)


@settings(max_examples=150, deadline=None)
@given(
    st.integers(1, 7),
    st.floats(0.01, 0.95),
    st.integers(0, 2**32 - 1),
)
def test_water_filling_path_equals_the_exact_qp(d, s, seed):
    rng = np.random.default_rng(seed)
    k = substitution_cost_matrix(rng.uniform(0.2, 4.0, d), s)
    r = rng.normal(scale=2.0, size=(40, d))
    mask = rng.random((40, d)) < 0.75
    got = best_response(r, k, mask)
    want = qp_oracle(r, k, mask)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-9 * (1.0 + np.abs(want).max()))
    assert_kkt(r, k, mask, got)


def test_water_filling_agrees_with_the_active_set_enumeration():
    from mesaopt.agents.response import _shared_budget_substitution

    rng = np.random.default_rng(8)
    # (With d = 2 every K with a positive off-diagonal has the structure: nothing to nudge.)
    for d, s in ((3, 0.3), (4, 0.2), (4, 0.9), (6, 0.5)):
        k = substitution_cost_matrix(rng.uniform(0.3, 3.0, d), s)
        assert _shared_budget_substitution(k) == pytest.approx(s, rel=1e-12)
        nudged = k.copy()  # breaks the structure: the enumeration runs instead
        nudged[0, 1] = nudged[1, 0] = k[0, 1] * (1 + 1e-9)
        assert _shared_budget_substitution(nudged) is None
        r = rng.normal(size=(2000, d))
        mask = rng.random((2000, d)) < 0.8
        np.testing.assert_allclose(
            best_response(r, k, mask), best_response(r, nudged, mask), rtol=0, atol=1e-7
        )
    assert _shared_budget_substitution(random_spd(rng, 4)) is None
    assert _shared_budget_substitution(np.eye(3)) is None


# --------------------------------------------------------------------------- plan_actions


def _ring_population(n: int, d: int, rng: np.random.Generator, control: bool):
    from mesaopt.model.kernel_arrays import Graph, PopulationArrays

    ring = np.zeros((n, n))
    for i in range(n):
        ring[i, (i + 1) % n] = ring[i, (i - 1) % n] = 0.5
    graph = Graph.of(sparse.csr_array(ring))
    population = PopulationArrays(
        principal=np.zeros(n, dtype=np.int64),
        capacity=np.zeros(n, dtype=np.int64),
        is_control=np.full(n, control),
        theta=rng.uniform(0.5, 1.5, (n, d)),
        perceive=np.ones((n, d), dtype=bool),
        last_action=np.zeros((n, d)),
        last_noise=np.zeros((n, d)),
        gain=np.full(n, 0.3),
    )
    return ring, graph, population


def test_plan_actions_iterates_to_the_ballester_calvo_armengol_zenou_equilibrium():
    """Unit costs, no incentive, interior efforts: a = θ + δ⊙(G a), so a* = (I − δG)⁻¹θ."""
    from mesaopt.agents.response import plan_actions
    from mesaopt.model.kernel_arrays import WorldArrays

    n, d = 12, 2
    rng = np.random.default_rng(4)
    ring, graph, population = _ring_population(n, d, rng, control=False)
    peer = np.array([0.3, 0.6])
    world = WorldArrays(
        metric=np.ones(d),
        peer=peer,
        externality=np.zeros(d),
        cost=np.eye(d),
        root=np.ones(d),
        substitution=0.0,
    )
    for _ in range(200):
        plan = plan_actions(graph, world, population, np.zeros(1))
        population = population._replace(last_action=plan.action)
    for k in range(d):
        expected = np.linalg.solve(np.eye(n) - peer[k] * ring, population.theta[:, k])
        assert np.allclose(plan.action[:, k], expected, rtol=1e-10)
    # The optimum's payoff rᵀa* − ½a*ᵀKa* is ½rᵀa*.
    optimum = best_response(plan.reward, world.cost, population.perceive)
    assert np.allclose(plan.own_best, quadratic_payoff(plan.reward, world.cost, optimum))


def test_plan_actions_control_agents_take_the_projected_gradient_step():
    from mesaopt.agents.response import plan_actions
    from mesaopt.model.kernel_arrays import WorldArrays

    n, d = 8, 3
    rng = np.random.default_rng(5)
    _, graph, population = _ring_population(n, d, rng, control=True)
    population = population._replace(
        last_action=rng.uniform(0, 1, (n, d)), last_noise=rng.normal(size=(n, d))
    )
    cost = substitution_cost_matrix(np.array([1.0, 2.0, 0.5]), 0.3)
    world = WorldArrays(
        metric=np.array([1.0, 0.0, 1.0]),
        peer=np.zeros(d),
        externality=np.zeros(d),
        cost=cost,
        root=np.sqrt(np.diag(cost)),
        substitution=0.3,
    )
    plan = plan_actions(graph, world, population, np.array([0.4]))
    reward = population.theta + 0.4 * world.metric
    # Sensing model: marginal cost felt at last step's realized output y = a + ε.
    felt = reward - (population.last_action + population.last_noise) @ cost
    expected = np.maximum(population.last_action + 0.3 * felt, 0.0)
    assert np.allclose(plan.reward, reward)
    assert np.allclose(plan.action, expected, rtol=1e-13, atol=1e-13)
