"""Tests for agents/contract.py against the oracles in analysis/theory.py."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from mesaopt.agents.contract import contract_outcome, design_len_contract, len_optimal_beta
from mesaopt.analysis.theory import (
    hm87_beta,
    hm91_beta,
    len_beta_numeric,
    len_contract_numeric,
    nonnegative_response,
)
from mesaopt.model.noise import metric_noise_variance, noise_variance

ONE = np.array([True])


def complements(rng: np.random.Generator, d: int) -> np.ndarray:
    """A random cost matrix with non-positive off-diagonals (complementary efforts).

    It is a diagonally dominant M-matrix, so K⁻¹ ≥ 0 elementwise: with m ≥ 0 and ḡ ≥ 0 the
    interior response K⁻¹(βm + ḡ) is non-negative for every β ≥ 0.
    """
    k = -np.abs(rng.normal(0.0, 0.3, (d, d)))
    k = (k + k.T) / 2.0
    np.fill_diagonal(k, 0.0)
    return k + np.diag(np.abs(k).sum(axis=1) + rng.uniform(0.2, 2.0, d))


def random_instance(rng: np.random.Generator) -> tuple:
    d = int(rng.integers(1, 4))
    a = rng.normal(size=(d, d))
    k = a @ a.T + 0.5 * np.eye(d)
    v = rng.normal(1.0, 1.0, d)
    g = rng.normal(0.0, 0.7, d)
    m = rng.normal(0.8, 1.0, d)
    return v, g, m, k, float(rng.uniform(0.0, 2.0)), float(rng.uniform(0.0, 2.0))


@settings(max_examples=100, deadline=None)
@given(st.floats(0.0, 10.0), st.floats(0.05, 10.0), st.floats(0.0, 10.0), st.floats(0.0, 3.0))
def test_reduces_to_holmstrom_milgrom_1987(rho, c, var, g):
    # Any intrinsic drive g ≥ 0 keeps the response a = (β + g)/c interior at β* > 0 (and below
    # −g the agent does nothing, which is worse): β* = 1/(1 + ρcσ²) whatever g; α absorbs g.
    v, m, k = np.array([1.0]), np.array([1.0]), np.array([[c]])
    assert len_optimal_beta(v, m, k, rho, var, ONE) == pytest.approx(
        hm87_beta(rho, c, var), rel=1e-12
    )
    design = design_len_contract(v, np.array([g]), m, k, rho, var, ONE)
    beta = hm87_beta(rho, c, var)
    assert design.beta == pytest.approx(beta, rel=1e-12)
    # Participation binds: α = R − [(β + g)²/(2c) − (ρ/2)β²σ²] with R = 0.
    assert design.alpha == pytest.approx(
        0.5 * rho * beta**2 * var - (beta + g) ** 2 / (2 * c), rel=1e-9, abs=1e-12
    )
    assert design.certainty_equivalent == pytest.approx(0.0, abs=1e-9 * (1 + abs(design.alpha)))


@settings(max_examples=200, deadline=None)
@given(
    st.floats(0.2, 3.0),
    st.floats(0.2, 3.0),
    st.floats(0.2, 5.0),
    st.floats(0.01, 0.95),
    st.floats(0.2, 5.0),
    st.floats(0.0, 5.0),
    st.floats(0.0, 5.0),
    st.floats(0.0, 0.95),  # at 1 the interior peak ties with the corner when ρσ² = 0
)
def test_reduces_to_holmstrom_milgrom_1991(v1, v2, c11, corr, c22, rho, var, where):
    """Task 1 measured, task 2 unmeasured, substitutable efforts (c₁₂ > 0).

    With a ≥ 0, HM91's interior formula is the optimum only where the agent does both tasks at
    β* and neither corner pays more. Its intrinsic drive γ for task 2 (ḡ = (0, γ)) must put β*
    inside the interior piece [c₁₂γ/c₂₂, c₁₁γ/c₁₂] of the response; beyond the piece's top the
    agent does task 1 alone (an HM87 problem with cost c₁₁, whose vertex v₁/(1 + ρc₁₁σ²) must not
    lie above the top), and below its bottom task 2 alone, worth S(0) there: the interior peak
    beats it iff √(κ + ρσ²)(β* − β_lo) ≥ √(ρσ²)·β_lo, κ = c₂₂/det K. Outside that range the
    principal rightly prefers a corner (HM91's "fixed wages" case), tested below.
    """
    c12 = corr * math.sqrt(c11 * c22)
    beta = hm91_beta(v1, v2, c11, c12, c22, rho, var)
    risk = rho * var
    kappa = c22 / (c11 * c22 - c12 * c12)
    share = math.sqrt(kappa + risk) / (math.sqrt(kappa + risk) + math.sqrt(risk))
    low = max(c12 * beta / c11, c12 * v1 / (c11 * (1.0 + rho * c11 * var)))
    high = c22 * beta * share / c12
    assume(beta > 0.0 and low < high)
    gamma = low + where * (high - low)
    k = np.array([[c11, c12], [c12, c22]])
    v, g, m = np.array([v1, v2]), np.array([0.0, gamma]), np.array([1.0, 0.0])
    design = design_len_contract(v, g, m, k, rho, var, np.ones(2, bool))
    assert design.beta == pytest.approx(beta, rel=1e-9, abs=1e-12)
    assert len_optimal_beta(v, m, k, rho, var, np.ones(2, bool)) == pytest.approx(beta, rel=1e-9)


def test_hm91_fixed_wage_corner_beats_the_interior_formula():
    # A valuable unmeasured task 2 the agent does on its own (γ near the top of the interior
    # range) and a noisy task 1: the interior HM91 slope pulls effort off task 2 and is beaten
    # by the fixed wage β = 0 (Holmström & Milgrom 1991, section 3).
    c11, c12, c22, rho, var = 1.0, 0.6, 1.0, 2.0, 2.0
    v, m = np.array([1.0, 0.5]), np.array([1.0, 0.0])
    k = np.array([[c11, c12], [c12, c22]])
    beta = hm91_beta(1.0, 0.5, c11, c12, c22, rho, var)
    low, high = c12 * beta / c11, c22 * beta / c12
    g = np.array([0.0, low + 0.9 * (high - low)])
    assert beta > 0 and np.all(nonnegative_response(beta * m + g, k) > 0)  # interior at β*
    design = design_len_contract(v, g, m, k, rho, var, np.ones(2, bool))
    assert design.beta == 0.0
    at_hm91 = sum(contract_outcome(0.0, beta, v, g, m, k, rho, var, np.ones(2, bool)))
    assert design.expected_profit > at_hm91 + 1e-3  # R = 0: profit is the total surplus
    numeric = len_contract_numeric(v, g, m, k, rho, var)
    assert design.expected_profit == pytest.approx(numeric[2], abs=1e-7)


def test_equals_numerical_profit_maximisation_on_random_instances():
    rng = np.random.default_rng(2024)
    for _ in range(40):
        d = int(rng.integers(1, 6))
        a = rng.normal(size=(d, d))
        k = a @ a.T + 0.5 * np.eye(d)
        v = rng.normal(1.0, 1.0, d)
        g = rng.normal(0.0, 0.5, d)
        m = rng.normal(1.0, 1.0, d)
        rho = float(rng.uniform(0.0, 3.0))
        var = float(rng.uniform(0.0, 3.0))
        beta = len_optimal_beta(v, m, k, rho, var, np.ones(d, bool))
        want = len_beta_numeric(v, g, m, k, rho, var)
        # Brent's method locates a maximum only to ~sqrt(eps) relative precision.
        assert beta == pytest.approx(want, rel=1e-6, abs=1e-7)


def test_beta_does_not_depend_on_mean_objective_alpha_absorbs_it():
    # Complementary efforts, m ≥ 0 and ḡ ≥ 0: the response is interior at β* > 0, so the design
    # is the closed form whatever ḡ, and only α moves: α = R − CE₀(β*; ḡ).
    rng = np.random.default_rng(11)
    checked = 0
    for _ in range(60):
        d = int(rng.integers(1, 5))
        k = complements(rng, d)
        m, v = rng.uniform(0.0, 2.0, d), rng.uniform(-0.5, 2.0, d)
        rho, var, reservation = float(rng.uniform(0, 3)), float(rng.uniform(0, 3)), 0.3
        beta = len_optimal_beta(v, m, k, rho, var, np.ones(d, bool))
        if beta <= 0:
            continue
        designs = []
        for scale in (0.0, 0.5, 3.0):
            g = rng.uniform(0.0, scale, d) if scale else np.zeros(d)
            design = design_len_contract(
                v, g, m, k, rho, var, np.ones(d, bool), reservation=reservation
            )
            r = beta * m + g
            gain = 0.5 * r @ np.linalg.solve(k, r) - 0.5 * rho * var * beta**2
            assert design.beta == pytest.approx(beta, rel=1e-9)
            assert design.alpha == pytest.approx(reservation - gain, rel=1e-9, abs=1e-12)
            assert design.certainty_equivalent == pytest.approx(reservation, abs=1e-9)
            designs.append(design)
        # A stronger drive lowers α (the principal charges for the work the agent wants to do).
        assert designs[0].alpha >= designs[1].alpha - 1e-12
        checked += 1
    assert checked > 20


def test_design_is_the_numerical_optimum_with_binding_nonnegativity():
    # Random instances where a ≥ 0 often binds (ḡ and m of both signs, arbitrary K): the exact
    # piecewise design matches SLSQP over (α, β) with the independent NNLS response.
    rng = np.random.default_rng(7)
    binding = 0
    for _ in range(12):
        v, g, m, k, rho, var = random_instance(rng)
        reservation = float(rng.uniform(-1.0, 1.0))
        design = design_len_contract(
            v, g, m, k, rho, var, np.ones(v.size, bool), reservation=reservation
        )
        alpha, beta, profit = len_contract_numeric(v, g, m, k, rho, var, reservation=reservation)
        assert design.expected_profit == pytest.approx(profit, abs=1e-7)
        assert design.beta == pytest.approx(beta, abs=1e-4)
        assert design.alpha == pytest.approx(alpha, abs=1e-4)
        binding += bool(np.any(nonnegative_response(design.beta * m + g, k) <= 1e-12))
    assert binding >= 3  # the test does exercise the a ≥ 0 constraint


def test_limited_liability_matches_constrained_numerical_optimum():
    """β ≥ 0 and α ≥ 0: the design equals SLSQP over (α, β) with the constraints.

    Tolerances: SLSQP stops at ftol 1e-15 on the profit, so profits agree to ~1e-9 and the
    maximisers to ~sqrt of that; 1e-7 and 1e-4 leave margin.
    """
    rng = np.random.default_rng(3)
    slack = 0
    for _ in range(12):
        v, g, m, k, rho, var = random_instance(rng)
        reservation = float(rng.uniform(-1.0, 1.0))
        design = design_len_contract(
            v,
            g,
            m,
            k,
            rho,
            var,
            np.ones(v.size, bool),
            reservation=reservation,
            limited_liability=True,
        )
        alpha, beta, profit = len_contract_numeric(
            v, g, m, k, rho, var, reservation=reservation, limited_liability=True
        )
        assert design.alpha >= 0.0 and design.beta >= 0.0
        assert design.certainty_equivalent >= reservation - 1e-9
        assert design.expected_profit == pytest.approx(profit, abs=1e-7)
        assert design.beta == pytest.approx(beta, abs=1e-4)
        assert design.alpha == pytest.approx(alpha, abs=1e-4)
        slack += design.rent > 1e-6
    assert slack >= 3  # some instances leave the agents a rent


def test_limited_liability_closed_form_when_participation_is_slack():
    # One channel, motivated agent (g > 0), R low: α = 0 and β maximises v·a − β·a with
    # a = (β + g)/c, i.e. β = (v − g)/2; the agent keeps a rent.
    v, g, c = 1.0, 0.4, 2.0
    design = design_len_contract(
        np.array([v]),
        np.array([g]),
        np.ones(1),
        np.array([[c]]),
        1.0,
        0.5,
        ONE,
        reservation=-1.0,
        limited_liability=True,
    )
    assert design.alpha == 0.0
    assert design.beta == pytest.approx((v - g) / 2, rel=1e-12)
    assert design.rent > 0
    # With a high reservation participation binds again and the LEN slope returns.
    binding = design_len_contract(
        np.array([v]),
        np.array([g]),
        np.ones(1),
        np.array([[c]]),
        1.0,
        0.5,
        ONE,
        reservation=2.0,
        limited_liability=True,
    )
    assert binding.beta == pytest.approx(hm87_beta(1.0, c, 0.5), rel=1e-12)
    assert binding.alpha > 0 and binding.rent == pytest.approx(0.0, abs=1e-12)


def test_fixed_alpha_or_beta_combinations():
    v, g, m, k = np.array([1.0]), np.array([0.0]), np.ones(1), np.array([[2.0]])
    # Fixed β, α from participation: the agent's CE is exactly R.
    fixed_beta = design_len_contract(v, g, m, k, 1.5, 0.25, ONE, reservation=0.2, beta=0.3)
    assert fixed_beta.beta == 0.3
    assert fixed_beta.alpha == pytest.approx(0.2 - (0.09 / 4 - 0.75 * 0.09 * 0.25), rel=1e-12)
    assert fixed_beta.rent == pytest.approx(0.0, abs=1e-15)
    # Fixed α, participation slack (CE₀(β) = β²(1/c − ρσ²)/2 ≥ 0): the profit-maximising slope
    # given α, (v − g)ᵀK⁻¹m / (2mᵀK⁻¹m) = 1/2, and agents keep a rent.
    slack = design_len_contract(v, g, m, k, 1.5, 0.25, ONE, alpha=0.0)
    assert slack.alpha == 0.0 and slack.beta == pytest.approx(0.5, rel=1e-12)
    assert slack.rent > 0
    # Fixed α, participation binding: R = 0.05 needs CE₀(β) = β²/16 ≥ 0.05, |β| ≥ √0.8; the
    # principal takes the most profitable admissible slope, the root β = √0.8.
    bound = design_len_contract(v, g, m, k, 1.5, 0.25, ONE, alpha=0.0, reservation=0.05)
    assert bound.beta == pytest.approx(math.sqrt(0.8), rel=1e-9)
    assert bound.rent == pytest.approx(0.0, abs=1e-9)
    want = len_contract_numeric(v, g, m, k, 1.5, 0.25, reservation=0.05, alpha=0.0)
    assert bound.expected_profit == pytest.approx(want[2], abs=1e-7)
    # Fixed α, participation impossible (ρcσ² > 1 makes CE₀ ≤ 0, R > 0): the least shortfall,
    # β = 0, recorded as a negative rent.
    short = design_len_contract(v, g, m, k, 10.0, 0.25, ONE, alpha=0.0, reservation=0.5)
    assert short.beta == 0.0 and short.rent == pytest.approx(-0.5)
    # Both fixed: evaluated, not designed.
    both = design_len_contract(v, g, m, k, 1.5, 0.25, ONE, alpha=0.1, beta=0.2)
    assert (both.alpha, both.beta) == (0.1, 0.2)
    profit, ce = contract_outcome(0.1, 0.2, v, g, m, k, 1.5, 0.25, ONE)
    assert (both.expected_profit, both.certainty_equivalent) == (profit, ce)


def test_fixed_alpha_designs_are_the_numerical_optimum():
    rng = np.random.default_rng(5)
    for _ in range(6):
        v, g, m, k, rho, var = random_instance(rng)
        reservation = float(rng.uniform(-1.0, 0.0))  # feasible at α = 0.3 with β = 0 often
        for limited in (False, True):
            design = design_len_contract(
                v,
                g,
                m,
                k,
                rho,
                var,
                np.ones(v.size, bool),
                reservation=reservation,
                limited_liability=limited,
                alpha=0.3,
            )
            try:
                _, _, profit = len_contract_numeric(
                    v,
                    g,
                    m,
                    k,
                    rho,
                    var,
                    reservation=reservation,
                    limited_liability=limited,
                    alpha=0.3,
                )
            except ValueError:  # no feasible start: nothing to compare
                continue
            # Never worse than the search (which can stall on flat stretches where a = 0).
            assert design.expected_profit >= profit - 1e-7
            assert design.rent >= -1e-9


def test_unperceived_channels_are_ignored():
    # Channel 0: honest output. Channel 1: gaming — measured, worthless, substitutes for output.
    v = np.array([1.0, -0.5])
    g = np.array([0.2, 0.0])
    m = np.array([1.0, 1.0])
    k = np.array([[1.0, 0.3], [0.3, 0.8]])
    rho, var = 0.5, 1.0
    blind_mask = np.array([True, False])
    alone = design_len_contract(v[:1], g[:1], m[:1], k[:1, :1], rho, var, ONE)
    blind = design_len_contract(v, g, m, k, rho, var, blind_mask)
    assert blind == alone
    assert len_optimal_beta(v, m, k, rho, var, blind_mask) == alone.beta
    # Once the principal sees the gaming channel it tempers incentives.
    aware = design_len_contract(v, g, m, k, rho, var, np.array([True, True]))
    assert aware.beta < blind.beta
    # Arbitrary garbage on the unperceived channel changes nothing.
    v2, g2, m2, k2 = v.copy(), g.copy(), m.copy(), k.copy()
    v2[1], g2[1], m2[1], k2[0, 1], k2[1, 0] = -100.0, 7.0, 50.0, -0.7, -0.7
    assert design_len_contract(v2, g2, m2, k2, rho, var, blind_mask) == alone


def test_degenerate_cases():
    v, g, k = np.array([1.0, 1.0]), np.array([0.5, 0.0]), np.eye(2)
    both = np.ones(2, bool)
    # Nothing measured among the perceived channels: β = 0, α = R − CE₀(0) = R − ½ḡᵀK⁻¹ḡ.
    for m, mask in [(np.zeros(2), both), (np.array([0.0, 1.0]), np.array([True, False]))]:
        design = design_len_contract(v, g, m, k, 1.0, 1.0, mask, reservation=1.0)
        assert design.beta == 0.0
        assert design.alpha == pytest.approx(1.0 - 0.125)
    # Nothing perceived: no effort in its model, α = R.
    nothing = design_len_contract(v, g, np.ones(2), k, 1.0, 1.0, np.zeros(2, bool), reservation=2)
    assert (nothing.alpha, nothing.beta, nothing.expected_profit) == (2.0, 0.0, -2.0)
    assert len_optimal_beta(v, np.ones(2), k, 1.0, 1.0, np.zeros(2, bool)) == 0.0
    # Infinitely noisy measure and a risk-averse agent: only β = 0 has a finite CE.
    for limited in (False, True):
        inf = design_len_contract(
            v, g, np.ones(2), k, 0.5, math.inf, both, limited_liability=limited
        )
        assert inf.beta == 0.0 and math.isfinite(inf.alpha)
    fixed_alpha = design_len_contract(v, g, np.ones(2), k, 0.5, math.inf, both, alpha=0.0)
    assert fixed_alpha.beta == 0.0
    assert len_optimal_beta(v, np.ones(2), k, 0.5, math.inf, both) == 0.0
    # Risk-neutral agent: noise is irrelevant, β = vᵀK⁻¹m / mᵀK⁻¹m = 1 (first best: sell the
    # firm to the agent, Holmström & Milgrom 1987).
    neutral = design_len_contract(v, g, np.ones(2), k, 0.0, math.inf, both)
    assert neutral.beta == pytest.approx(1.0)
    assert len_optimal_beta(v, np.ones(2), k, 0.0, math.inf, both) == pytest.approx(1.0)


def test_design_rejects_bad_input():
    one, eye = np.ones(1), np.eye(1)
    with pytest.raises(ValueError):
        design_len_contract(np.ones(2), np.ones(2), np.ones(2), np.eye(3), 1.0, 1.0, np.ones(2))
    with pytest.raises(ValueError):
        design_len_contract(one, one, one, eye, -1.0, 1.0, ONE)
    with pytest.raises(ValueError):
        design_len_contract(one, one, one, eye, 1.0, -1.0, ONE)
    with pytest.raises(ValueError, match="limited liability"):
        design_len_contract(one, one, one, eye, 1.0, 1.0, ONE, limited_liability=True, alpha=-1)
    with pytest.raises(ValueError, match="limited liability"):
        design_len_contract(one, one, one, eye, 1.0, 1.0, ONE, limited_liability=True, beta=-1)
    with pytest.raises(ValueError, match="infinite"):
        design_len_contract(one, one, one, eye, 1.0, math.inf, ONE, beta=0.5)
    with pytest.raises(ValueError, match="finite"):
        design_len_contract(one, one, one, eye, 1.0, 1.0, ONE, reservation=math.nan)
    with pytest.raises(ValueError):
        len_optimal_beta(np.ones(2), np.ones(2), np.eye(3), 1.0, 1.0, np.ones(2, bool))
    with pytest.raises(ValueError):
        len_optimal_beta(one, one, eye, -1.0, 1.0, ONE)


def test_metric_noise_variance():
    m = np.array([1.0, 2.0, 0.0, 3.0])
    var = np.array([0.5, 1.0, math.inf, math.inf])
    p = np.array([True, True, True, False])
    # Σ m_k² Var ε_k over perceived channels; unmeasured or unperceived infinities do not leak.
    assert metric_noise_variance(m, var, p) == pytest.approx(0.5 + 4.0)
    assert metric_noise_variance(m, var, np.ones(4, bool)) == math.inf
    assert metric_noise_variance(m, var, np.zeros(4, bool)) == 0.0
    with pytest.raises(ValueError):
        metric_noise_variance(m, -var, p)


def test_noise_variance_formulas():
    assert noise_variance("normal", 2.0, 0.0) == 4.0
    assert noise_variance("laplace", 2.0, 0.0) == 8.0
    assert noise_variance("student_t", 2.0, 6.0) == pytest.approx(4.0 * 6.0 / 4.0)
    assert noise_variance("student_t", 2.0, 2.0) == math.inf
    assert noise_variance("student_t", 2.0, 1.0) == math.inf
    assert noise_variance("student_t", 0.0, 1.0) == 0.0
    with pytest.raises(ValueError):
        noise_variance("cauchy", 1.0, 1.0)
    with pytest.raises(ValueError):
        noise_variance("normal", -1.0, 1.0)


def test_noise_variance_matches_numpy_samplers():
    # Pins down the scale conventions of numpy's laplace (b) and standard_t.
    rng = np.random.default_rng(0)
    n = 400_000
    for dist, sample in [
        ("normal", lambda: 1.5 * rng.standard_normal(n)),
        ("laplace", lambda: rng.laplace(0.0, 1.5, n)),
        ("student_t", lambda: 1.5 * rng.standard_t(10.0, n)),
    ]:
        x = sample()
        want = noise_variance(dist, 1.5, 10.0)
        # SE of a sample variance ≈ sd(x²)/√n; 5 SE is a safe band.
        se = np.std((x - x.mean()) ** 2) / math.sqrt(n)
        assert abs(x.var() - want) < 5.0 * se


def test_oracle_response_agrees_with_best_response():
    # The NNLS oracle (analysis.theory) and the active-set kernel (agents.response) are
    # independent implementations of argmax_{a ≥ 0} rᵀa − ½aᵀKa.
    from mesaopt.agents.response import best_response

    rng = np.random.default_rng(9)
    for _ in range(50):
        v, _, _, k, _, _ = random_instance(rng)
        r = rng.normal(0.0, 1.0, v.size)
        want = best_response(r[None, :], k, np.ones((1, v.size), bool))[0]
        np.testing.assert_allclose(nonnegative_response(r, k), want, atol=1e-9)
