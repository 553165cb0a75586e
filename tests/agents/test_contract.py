"""Tests for agents/contract.py against the oracles in analysis/theory.py."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mesaopt.agents.contract import len_optimal_beta
from mesaopt.analysis.theory import hm87_beta, hm91_beta, len_beta_numeric
from mesaopt.model.noise import metric_noise_variance, noise_variance

ONE = np.array([True])


@settings(max_examples=100, deadline=None)
@given(st.floats(0.0, 10.0), st.floats(0.05, 10.0), st.floats(0.0, 10.0))
def test_reduces_to_holmstrom_milgrom_1987(rho, c, var):
    beta = len_optimal_beta(
        np.array([1.0]), np.array([0.0]), np.array([1.0]), np.array([[c]]), rho, var, ONE
    )
    assert beta == pytest.approx(hm87_beta(rho, c, var), rel=1e-12)


@settings(max_examples=100, deadline=None)
@given(
    st.floats(-2.0, 3.0),
    st.floats(-2.0, 3.0),
    st.floats(0.2, 5.0),
    st.floats(-0.95, 0.95),
    st.floats(0.2, 5.0),
    st.floats(0.0, 5.0),
    st.floats(0.0, 5.0),
)
def test_reduces_to_holmstrom_milgrom_1991(v1, v2, c11, corr, c22, rho, var):
    c12 = corr * math.sqrt(c11 * c22)
    k = np.array([[c11, c12], [c12, c22]])
    beta = len_optimal_beta(
        np.array([v1, v2]), np.zeros(2), np.array([1.0, 0.0]), k, rho, var, np.ones(2, bool)
    )
    want = hm91_beta(v1, v2, c11, c12, c22, rho, var)
    assert beta == pytest.approx(want, rel=1e-9, abs=1e-12)


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
        beta = len_optimal_beta(v, g, m, k, rho, var, np.ones(d, bool))
        want = len_beta_numeric(v, g, m, k, rho, var)
        # Brent's method locates a maximum only to ~sqrt(eps) relative precision.
        assert beta == pytest.approx(want, rel=1e-6, abs=1e-7)


def test_unperceived_channels_are_ignored():
    # Channel 0: honest output. Channel 1: gaming — measured, worthless, substitutes for output.
    v = np.array([1.0, -0.5])
    g = np.array([0.2, 0.0])
    m = np.array([1.0, 1.0])
    k = np.array([[1.0, 0.3], [0.3, 0.8]])
    rho, var = 0.5, 1.0
    alone = len_optimal_beta(v[:1], g[:1], m[:1], k[:1, :1], rho, var, ONE)
    blind = len_optimal_beta(v, g, m, k, rho, var, np.array([True, False]))
    assert blind == alone
    # Once the principal sees the gaming channel it tempers incentives.
    aware = len_optimal_beta(v, g, m, k, rho, var, np.array([True, True]))
    assert aware < blind
    # Arbitrary garbage on the unperceived channel changes nothing.
    v2, m2, k2 = v.copy(), m.copy(), k.copy()
    v2[1], m2[1], k2[0, 1], k2[1, 0] = -100.0, 50.0, -0.7, -0.7
    assert len_optimal_beta(v2, g, m2, k2, rho, var, np.array([True, False])) == alone


def test_degenerate_cases_return_zero():
    v, g, k = np.array([1.0, 1.0]), np.zeros(2), np.eye(2)
    both = np.ones(2, bool)
    # Nothing measured at all, or nothing measured among the perceived channels.
    assert len_optimal_beta(v, g, np.zeros(2), k, 1.0, 1.0, both) == 0.0
    assert len_optimal_beta(v, g, np.array([0.0, 1.0]), k, 0.0, 0.0, np.array([True, False])) == 0.0
    assert len_optimal_beta(v, g, np.ones(2), k, 1.0, 1.0, np.zeros(2, bool)) == 0.0
    # Infinitely noisy measure and a risk-averse agent.
    assert len_optimal_beta(v, g, np.ones(2), k, 0.5, math.inf, both) == 0.0
    # Risk-neutral agent: noise is irrelevant, β = (v − ḡ)ᵀK⁻¹m / mᵀK⁻¹m.
    assert len_optimal_beta(v, g, np.ones(2), k, 0.0, math.inf, both) == pytest.approx(1.0)


def test_len_optimal_beta_rejects_bad_input():
    with pytest.raises(ValueError):
        len_optimal_beta(np.ones(2), np.ones(2), np.ones(2), np.eye(3), 1.0, 1.0, np.ones(2, bool))
    with pytest.raises(ValueError):
        len_optimal_beta(np.ones(1), np.ones(1), np.ones(1), np.eye(1), -1.0, 1.0, ONE)
    with pytest.raises(ValueError):
        len_optimal_beta(np.ones(1), np.ones(1), np.ones(1), np.eye(1), 1.0, -1.0, ONE)


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
