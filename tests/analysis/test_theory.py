"""Tests for analysis/theory.py: known values, Monte Carlo checks and internal consistency."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from mesaopt.analysis.theory import (
    bcz_equilibrium,
    expected_max_std_normal,
    hm87_beta,
    hm91_beta,
    len_beta_numeric,
    regressional_selection_gain,
    student_t_selection_curve,
)


def test_expected_max_known_values():
    assert expected_max_std_normal(1) == pytest.approx(0.0, abs=1e-12)
    assert expected_max_std_normal(2) == pytest.approx(1.0 / math.sqrt(math.pi), rel=1e-10)
    assert expected_max_std_normal(3) == pytest.approx(1.5 / math.sqrt(math.pi), rel=1e-10)
    # Tabulated values (e.g. Harter 1961): n = 10 and n = 1000.
    assert expected_max_std_normal(10) == pytest.approx(1.538752731, rel=1e-8)
    assert expected_max_std_normal(1000) == pytest.approx(3.241435769, rel=1e-8)
    values = [expected_max_std_normal(n) for n in (1, 2, 5, 50, 10**4, 10**6)]
    assert values == sorted(values)
    assert values[-1] < math.sqrt(2.0 * math.log(10**6))
    with pytest.raises(ValueError):
        expected_max_std_normal(0)


@pytest.mark.parametrize("n", [4, 25, 200])
def test_expected_max_matches_monte_carlo(n):
    rng = np.random.default_rng(n)
    maxima = rng.standard_normal((20_000, n)).max(axis=1)
    se = maxima.std(ddof=1) / math.sqrt(maxima.size)
    assert abs(maxima.mean() - expected_max_std_normal(n)) < 4.0 * se


def test_regressional_selection_gain_matches_monte_carlo():
    rng = np.random.default_rng(1)
    n, sigma_theta, sigma_eps, reps = 16, 1.0, 2.0, 40_000
    theta = sigma_theta * rng.standard_normal((reps, n))
    score = theta + sigma_eps * rng.standard_normal((reps, n))
    picked = theta[np.arange(reps), score.argmax(axis=1)]
    se = picked.std(ddof=1) / math.sqrt(reps)
    want = regressional_selection_gain(n, sigma_theta, sigma_eps)
    assert abs(picked.mean() - want) < 4.0 * se
    # Noise-free selection gains the full E[max]; pure noise gains nothing.
    assert regressional_selection_gain(n, 1.0, 0.0) == pytest.approx(expected_max_std_normal(n))
    assert regressional_selection_gain(n, 0.0, 1.0) == 0.0


@pytest.mark.parametrize(("sigma_theta", "sigma_eps"), [(0.5, 1.0), (2.0, 0.7)])
def test_regressional_selection_gain_scales_with_sigma_theta_squared(sigma_theta, sigma_eps):
    """At σθ ≠ 1 a slip writing σθ for σθ² changes the gain by a factor σθ: caught at 4 SE."""
    rng = np.random.default_rng(int(10 * sigma_theta))
    n, reps = 8, 40_000
    theta = sigma_theta * rng.standard_normal((reps, n))
    score = theta + sigma_eps * rng.standard_normal((reps, n))
    picked = theta[np.arange(reps), score.argmax(axis=1)]
    se = picked.std(ddof=1) / math.sqrt(reps)
    want = regressional_selection_gain(n, sigma_theta, sigma_eps)
    assert abs(picked.mean() - want) < 4.0 * se
    slip = sigma_theta / math.hypot(sigma_theta, sigma_eps) * expected_max_std_normal(n)
    assert abs(slip - want) > 20.0 * se  # the test has the power to tell them apart


def test_hm91_reduces_to_hm87_without_substitution():
    assert hm91_beta(1.0, 5.0, 2.0, 0.0, 3.0, 0.7, 1.3) == pytest.approx(hm87_beta(0.7, 2.0, 1.3))


def test_len_beta_numeric_reproduces_textbook_cases():
    assert len_beta_numeric(
        np.array([1.0]),
        np.zeros(1),
        np.ones(1),
        np.array([[2.0]]),
        0.7,
        1.3,
    ) == pytest.approx(hm87_beta(0.7, 2.0, 1.3), rel=1e-6)
    k = np.array([[1.5, 0.6], [0.6, 1.0]])
    got = len_beta_numeric(np.array([1.0, 0.8]), np.zeros(2), np.array([1.0, 0.0]), k, 2.0, 0.5)
    assert got == pytest.approx(hm91_beta(1.0, 0.8, 1.5, 0.6, 1.0, 2.0, 0.5), rel=1e-6)


def test_len_beta_numeric_objectives():
    # With participation binding, α recovers the agent's drive: the maximiser is vᵀK⁻¹m / (…),
    # whatever ḡ.
    rng = np.random.default_rng(8)
    d = 3
    a = rng.normal(size=(d, d))
    k = a @ a.T + np.eye(d)
    v, g, m = rng.normal(1.0, 1.0, d), rng.normal(0.0, 1.0, d), rng.normal(1.0, 1.0, d)
    rho, var = 0.8, 1.7
    kim = np.linalg.solve(k, m)
    den = m @ kim + rho * var
    assert len_beta_numeric(v, g, m, k, rho, var) == pytest.approx(v @ kim / den, rel=1e-6)
    assert len_beta_numeric(v, 3 * g, m, k, rho, var) == pytest.approx(v @ kim / den, rel=1e-6)
    with pytest.raises(ValueError):
        len_beta_numeric(v, g, np.zeros(d), k, 0.0, var)
    # Nothing measured but risky pay: the only sensible piece rate is zero.
    assert len_beta_numeric(v, g, np.zeros(d), k, rho, var) == pytest.approx(0.0, abs=1e-7)


def test_bcz_equilibrium_is_the_fixed_point():
    rng = np.random.default_rng(5)
    n = 300
    upper = sp.random(n, n, density=0.02, random_state=rng, format="csr")
    upper.data[:] = 1.0
    g = sp.triu(upper, k=1)
    g = (g + g.T).tocsr()
    radius = np.max(np.abs(np.linalg.eigvalsh(g.toarray())))
    delta = 0.9 / radius
    theta = rng.uniform(0.5, 1.5, n)
    a = bcz_equilibrium(g, delta, theta)
    np.testing.assert_allclose(a, theta + delta * (g @ a), rtol=1e-10)
    assert np.all(a >= theta)  # complements only raise effort
    # Several games at once, and a dense directed adjacency.
    thetas = rng.uniform(0.5, 1.5, (n, 3))
    np.testing.assert_allclose(
        bcz_equilibrium(g, delta, thetas)[:, 1], bcz_equilibrium(g, delta, thetas[:, 1])
    )
    directed = np.triu(rng.random((40, 40)) < 0.2, k=1).astype(float)
    directed += np.tril(rng.random((40, 40)) < 0.05, k=-1)
    rho_dir = np.max(np.abs(np.linalg.eigvals(directed)))
    a_dir = bcz_equilibrium(directed, 0.5 / max(rho_dir, 1e-9), np.ones(40))
    np.testing.assert_allclose(a_dir, 1.0 + 0.5 / max(rho_dir, 1e-9) * directed @ a_dir)


def test_bcz_requires_delta_below_inverse_spectral_radius():
    ring = np.roll(np.eye(30), 1, axis=1) + np.roll(np.eye(30), -1, axis=1)  # ρ = 2
    bcz_equilibrium(ring, 0.49, np.ones(30))
    np.testing.assert_allclose(bcz_equilibrium(ring, 0.25, np.ones(30)), 2.0)  # 1 / (1 − 2δ)
    with pytest.raises(ValueError, match="rho"):
        bcz_equilibrium(ring, 0.51, np.ones(30))
    with pytest.raises(ValueError, match="rho"):
        bcz_equilibrium(ring, -0.51, np.ones(30))
    tiny = np.array([[0.0, 1.0], [1.0, 0.0]])  # dense eigenvalue path, ρ = 1
    np.testing.assert_allclose(bcz_equilibrium(tiny, 0.5, np.ones(2)), 2.0)
    with pytest.raises(ValueError):
        bcz_equilibrium(ring, 0.1, np.ones(29))


def test_student_t_selection_curve_rises_then_falls():
    ns = [1, 8, 64, 2048]
    means, ses = student_t_selection_curve(ns, 1.0, 1.0, 2.5, 2000, np.random.default_rng(0))
    assert means.shape == ses.shape == (4,)
    assert np.all(ses > 0)
    assert abs(means[0]) < 4.0 * ses[0]  # no selection, no gain
    peak = int(np.argmax(means))
    assert 0 < peak < len(ns) - 1
    assert means[peak] - means[-1] > 4.0 * math.hypot(ses[peak], ses[-1])


def test_student_t_selection_curve_light_tails_match_gaussian_theory():
    ns = [4, 32]
    means, ses = student_t_selection_curve(ns, 1.0, 1.0, 1e6, 6000, np.random.default_rng(1))
    for n, mean, se in zip(ns, means, ses, strict=True):
        assert abs(mean - regressional_selection_gain(n, 1.0, 1.0)) < 4.0 * se
