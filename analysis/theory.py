"""Closed-form and numerical results from the literature, used as test oracles.

Everything here is computed independently of the simulation kernels in :mod:`agents.response`
and :mod:`agents.contract` (numerical integration, numerical optimisation, textbook formulas),
so that a test comparing the two checks something. It also gives the analysis notebooks the
theoretical curves to draw next to simulated ones:

* selection (best-of-n) under Gaussian noise — regressional Goodhart — and under heavy-tailed
  noise, where selection eventually stops helping;
* linear incentive contracts — Holmström & Milgrom 1987 and 1991, the general LEN optimum by
  direct maximisation of the principal's profit, and the constrained contract (participation,
  limited liability, a ≥ 0 responses) by numerical search over (α, β);
* the linear-quadratic network game of Ballester, Calvó-Armengol & Zenou 2006.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
from scipy import integrate, linalg, optimize
from scipy.sparse import linalg as splinalg
from scipy.special import log_ndtr

__all__ = [
    "bcz_equilibrium",
    "expected_max_std_normal",
    "hm87_beta",
    "hm91_beta",
    "len_beta_numeric",
    "len_contract_numeric",
    "nonnegative_response",
    "regressional_selection_gain",
    "student_t_selection_curve",
]

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


def expected_max_std_normal(n: int) -> float:
    """Expected maximum of n independent standard normal variables.

    ``E[max_n] = ∫ n·x·φ(x)·Φ(x)^(n−1) dx``, integrated numerically (``scipy.integrate.quad``,
    in log space so that large n does not underflow). Exact values are known for small n
    (Bose & Gupta 1959, Biometrika 46:433–440): 0, 1/√π, 3/(2√π) for n = 1, 2, 3; for large n
    it grows like √(2 ln n) (Tippett 1925, Biometrika 17:364–387).

    Args:
        n: Number of draws, at least 1.

    Returns:
        E[max of n iid N(0, 1)].

    Raises:
        ValueError: If ``n < 1``.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    log_n = math.log(n)

    def integrand(x: float) -> float:
        log_density = log_n - 0.5 * x * x - _LOG_SQRT_2PI + (n - 1) * float(log_ndtr(x))
        return x * math.exp(log_density)

    # Split at the bulk of the maximum's distribution so quad sees its peak.
    centre = math.sqrt(2.0 * log_n)
    lower, _ = integrate.quad(integrand, -math.inf, centre, epsabs=1e-13, epsrel=1e-12, limit=200)
    upper, _ = integrate.quad(integrand, centre, math.inf, epsabs=1e-13, epsrel=1e-12, limit=200)
    return lower + upper


def regressional_selection_gain(n: int, sigma_theta: float, sigma_eps: float) -> float:
    """Expected true value gained by picking the best of n candidates on a noisy score.

    Candidates have true value θ ~ N(μ, σ_θ²) and are scored by ``θ + ε``, ε ~ N(0, σ_ε²)
    independent. The best-scored candidate's expected true value exceeds μ by
    ``σ_θ² / √(σ_θ² + σ_ε²) · E[max_n]``: the regression of θ on the score has slope
    ``σ_θ²/(σ_θ² + σ_ε²)`` and the top score sits ``√(σ_θ² + σ_ε²)·E[max_n]`` above its mean.
    This is the response to truncation selection (Lush 1937, the breeder's equation R = h²S)
    and the regressional Goodhart effect (Manheim & Garrabrant 2018).

    Args:
        n: Number of candidates, at least 1.
        sigma_theta: Standard deviation of the true value, at least 0.
        sigma_eps: Standard deviation of the score noise, at least 0.

    Returns:
        The expected gain over the candidate mean.

    Raises:
        ValueError: On negative standard deviations or ``n < 1``.
    """
    if sigma_theta < 0.0 or sigma_eps < 0.0:
        raise ValueError("standard deviations must be non-negative")
    total = math.hypot(sigma_theta, sigma_eps)
    if total == 0.0:
        return 0.0
    return sigma_theta**2 / total * expected_max_std_normal(n)


def hm87_beta(risk_aversion: float, cost: float, noise_var: float) -> float:
    """Optimal piece rate of Holmström & Milgrom (1987), one task.

    ``β* = 1 / (1 + ρcσ²)`` for an agent with CARA coefficient ρ, effort cost ``c·a²/2``,
    output ``a + ε`` with ``Var ε = σ²`` and unit value to the principal (Holmström & Milgrom
    1987, "Aggregation and Linearity in the Provision of Intertemporal Incentives",
    Econometrica 55:303–328).

    Args:
        risk_aversion: ρ ≥ 0.
        cost: c > 0.
        noise_var: σ² ≥ 0.

    Returns:
        β*.
    """
    return 1.0 / (1.0 + risk_aversion * cost * noise_var)


def hm91_beta(
    v1: float,
    v2: float,
    c11: float,
    c12: float,
    c22: float,
    risk_aversion: float,
    noise_var: float,
) -> float:
    """Optimal piece rate of Holmström & Milgrom (1991) with one measured, one unmeasured task.

    Task 1 is measured with noise variance σ², task 2 is not measured at all; the effort cost
    ``½aᵀCa`` has ``c12 > 0`` when efforts substitute. Then
    ``β* = (v1 − v2·c12/c22) / (1 + ρσ²(c11 − c12²/c22))``: incentives on task 1 pull effort
    away from task 2, so the principal tempers them (Holmström & Milgrom 1991, "Multitask
    Principal-Agent Analyses", J. Law Econ. Organ. 7:24–52).

    Args:
        v1: Value of task 1.
        v2: Value of task 2.
        c11: Cost-matrix entry (1, 1).
        c12: Cost-matrix entry (1, 2).
        c22: Cost-matrix entry (2, 2), non-zero.
        risk_aversion: ρ ≥ 0.
        noise_var: σ² of the task-1 measure.

    Returns:
        β*.
    """
    schur = c11 - c12 * c12 / c22
    return (v1 - v2 * c12 / c22) / (1.0 + risk_aversion * noise_var * schur)


def len_beta_numeric(
    value: np.ndarray,
    mean_objective: np.ndarray,
    metric: np.ndarray,
    cost: np.ndarray,
    risk_aversion: float,
    metric_noise_var: float,
) -> float:
    """The LEN optimal piece rate found by maximising the principal's profit numerically.

    The agent's response to piece rate β is ``a(β) = K⁻¹(βm + ḡ)`` (interior; computed by a
    linear solve at every β). The principal sets the fixed pay α so that the agent's certainty
    equivalent ``α + βmᵀa + ḡᵀa − ½aᵀKa − (ρ/2)β²σ_M²`` equals its reservation level
    (participation binds; the level only shifts profit, so it is taken as 0), hence its expected
    profit ``vᵀa − α − βmᵀa`` is the total certainty-equivalent surplus

        Π(β) = (v + ḡ)ᵀa(β) − ½a(β)ᵀKa(β) − (ρ/2)β²σ_M²,

    maximised with ``scipy.optimize.minimize_scalar``. Its maximiser is
    ``vᵀK⁻¹m / (mᵀK⁻¹m + ρσ_M²)``, whatever ḡ: the agent's intrinsic drive is recovered through
    α, not through β (Holmström & Milgrom 1987, 1991). It is the oracle of
    :func:`agents.contract.len_optimal_beta` and of the interior case of
    :func:`agents.contract.design_len_contract`.

    Args:
        value: True (or believed) value per unit of each channel v, shape (d,).
        mean_objective: Agents' mean objective ḡ, shape (d,).
        metric: Proxy weights m, shape (d,).
        cost: Symmetric positive definite cost matrix K, shape (d, d).
        risk_aversion: ρ ≥ 0.
        metric_noise_var: σ_M² = Var(mᵀε), finite.

    Returns:
        The maximising β.

    Raises:
        ValueError: If the profit is not strictly concave in β (nothing is measured and there
            is no risk), or σ_M² is not finite.
    """
    v = np.asarray(value, dtype=float)
    g = np.asarray(mean_objective, dtype=float)
    m = np.asarray(metric, dtype=float)
    k = np.asarray(cost, dtype=float)
    if not math.isfinite(metric_noise_var):
        raise ValueError("metric_noise_var must be finite")
    if not np.any(m) and risk_aversion * metric_noise_var == 0.0:
        raise ValueError("profit is flat in beta: nothing measured and no risk")

    def negative_profit(beta: float) -> float:
        a = np.linalg.solve(k, beta * m + g)
        surplus = (v + g) @ a - 0.5 * a @ k @ a
        return -(surplus - 0.5 * risk_aversion * beta**2 * metric_noise_var)

    result = optimize.minimize_scalar(
        negative_profit, bracket=(-1.0, 1.0), method="brent", options={"xtol": 1e-12}
    )
    return float(result.x)


def nonnegative_response(reward: np.ndarray, cost: np.ndarray) -> np.ndarray:
    """An agent's best response ``argmax_{a ≥ 0} rᵀa − ½aᵀKa`` by bounded least squares.

    With ``K = LLᵀ`` (Cholesky), ``rᵀa − ½aᵀKa = ½‖L⁻¹r‖² − ½‖Lᵀa − L⁻¹r‖²``, so the response
    is the non-negative least-squares solution of ``Lᵀa ≈ L⁻¹r``, found by the bounded-variable
    least-squares algorithm (Stark & Parker 1995, Comput. Stat. 10:129–141;
    ``scipy.optimize.lsq_linear``). It is computed independently of
    :func:`agents.response.best_response`, so that tests comparing the two check something.

    Args:
        reward: Marginal rewards r, shape (d,).
        cost: Symmetric positive definite K, shape (d, d).

    Returns:
        The optimal effort, shape (d,), non-negative.
    """
    r = np.asarray(reward, dtype=float)
    lower = np.linalg.cholesky(np.asarray(cost, dtype=float))
    target = linalg.solve_triangular(lower, r, lower=True)
    fit = optimize.lsq_linear(lower.T, target, bounds=(0.0, np.inf), method="bvls", tol=1e-15)
    return np.maximum(fit.x, 0.0)


def len_contract_numeric(
    value: np.ndarray,
    mean_objective: np.ndarray,
    metric: np.ndarray,
    cost: np.ndarray,
    risk_aversion: float,
    metric_noise_var: float,
    *,
    reservation: float = 0.0,
    limited_liability: bool = False,
    alpha: float | None = None,
    beta: float | None = None,
    starts: int = 13,
) -> tuple[float, float, float]:
    """The profit-maximising linear contract (α, β) with participation, by numerical search.

    The agent (objective ḡ) plays its non-negative best response ``a(β)`` to ``βm + ḡ``
    (:func:`nonnegative_response`). The principal solves

        max_{α,β} vᵀa − α − βmᵀa  s.t.  α + βmᵀa + ḡᵀa − ½aᵀKa − (ρ/2)β²σ_M² ≥ R,

    with α ≥ 0, β ≥ 0 under limited liability (Innes 1990; Laffont & Martimort 2002, ch. 3) and
    α or β held at a fixed value if given. Solved by SLSQP (``scipy.optimize.minimize``) over the
    free variables from ``starts`` starting slopes, keeping the best feasible result — a direct
    search, independent of the piecewise analysis of :func:`agents.contract.design_len_contract`.

    Args:
        value: Value per channel v, shape (d,).
        mean_objective: Agents' mean objective ḡ, shape (d,).
        metric: Proxy weights m, shape (d,).
        cost: Symmetric positive definite K, shape (d, d).
        risk_aversion: ρ ≥ 0.
        metric_noise_var: σ_M², finite.
        reservation: R.
        limited_liability: Impose α ≥ 0 and β ≥ 0.
        alpha: Fixed α, or None to optimise it.
        beta: Fixed β, or None to optimise it.
        starts: Number of starting slopes, spread over [−3, 3] ([0, 3] with limited liability).

    Returns:
        ``(α, β, expected profit)``.

    Raises:
        ValueError: If σ_M² is not finite or no start reaches a feasible contract.
    """
    v = np.asarray(value, dtype=float)
    g = np.asarray(mean_objective, dtype=float)
    m = np.asarray(metric, dtype=float)
    k = np.asarray(cost, dtype=float)
    if not math.isfinite(metric_noise_var):
        raise ValueError("metric_noise_var must be finite")

    def parts(b: float) -> tuple[float, float]:
        a = nonnegative_response(b * m + g, k)
        ce0 = (b * m + g) @ a - 0.5 * a @ k @ a - 0.5 * risk_aversion * b * b * metric_noise_var
        return float(v @ a - b * (m @ a)), float(ce0)

    def unpack(x: np.ndarray) -> tuple[float, float]:
        xs = list(x)
        a_ = alpha if alpha is not None else xs.pop(0)
        b_ = beta if beta is not None else xs.pop(0)
        return float(a_), float(b_)

    def negative_profit(x: np.ndarray) -> float:
        a_, b_ = unpack(x)
        return -(parts(b_)[0] - a_)

    def participation(x: np.ndarray) -> float:
        a_, b_ = unpack(x)
        return a_ + parts(b_)[1] - reservation

    low = 0.0 if limited_liability else None
    bounds = [(low, None) for fixed in (alpha, beta) if fixed is None]
    first = 0.0 if limited_liability else -3.0
    slopes = [beta] if beta is not None else np.linspace(first, 3.0, starts)
    best: tuple[float, float, float] | None = None
    for b0 in slopes:
        a0 = alpha if alpha is not None else reservation - parts(float(b0))[1]
        if limited_liability and alpha is None:
            a0 = max(a0, 0.0)
        x0 = np.array([x for x, fixed in ((a0, alpha), (b0, beta)) if fixed is None], dtype=float)
        if x0.size:
            fit = optimize.minimize(
                negative_profit,
                x0,
                method="SLSQP",
                bounds=bounds,
                constraints=[{"type": "ineq", "fun": participation}],
                options={"ftol": 1e-13, "maxiter": 200},
            )
            x = fit.x
        else:
            x = x0
        if participation(x) < -1e-8:
            continue
        a_, b_ = unpack(x)
        profit = -negative_profit(x)
        if best is None or profit > best[2]:
            best = (a_, b_, profit)
    if best is None:
        raise ValueError("no feasible contract found")
    return best


def _spectral_radius(g: sp.csr_array) -> float:
    """Spectral radius of a sparse square matrix (ARPACK, dense fallback for tiny or stubborn)."""
    n = g.shape[0]
    if g.nnz == 0:
        return 0.0
    if n < 16:
        return float(np.max(np.abs(np.linalg.eigvals(g.toarray()))))
    # A fixed start vector makes ARPACK (and so the δ·ρ(G) < 1 check) deterministic.
    v0 = np.random.default_rng(0).uniform(0.5, 1.5, n)
    options = {"k": 1, "which": "LM", "return_eigenvectors": False, "tol": 1e-12, "v0": v0}
    try:
        if (abs(g - g.T) > 1e-12).nnz == 0:
            ev = splinalg.eigsh(g, **options)
        else:
            ev = splinalg.eigs(g, **options)
    except splinalg.ArpackNoConvergence:
        if n > 5000:
            raise
        ev = np.linalg.eigvals(g.toarray())
    return float(np.max(np.abs(ev)))


def bcz_equilibrium(
    adjacency: np.ndarray | sp.sparray, delta: float, theta: np.ndarray
) -> np.ndarray:
    """Nash equilibrium of the linear-quadratic network game with unit cost.

    Player i chooses ``a_i ≥ 0`` to maximise ``θ_i a_i − ½a_i² + δ a_i Σ_j G_ij a_j``; its
    best response is ``a_i = θ_i + δ(Ga)_i``, and when ``|δ|·ρ(G) < 1`` the unique equilibrium
    is ``a* = (I − δG)⁻¹θ``, the Katz–Bonacich centrality vector weighted by θ (Ballester,
    Calvó-Armengol & Zenou 2006, "Who's Who in Networks. Wanted: The Key Player",
    Econometrica 74:1403–1417). For θ > 0 and δ ≥ 0 it is interior, so the constraint never
    binds.

    Args:
        adjacency: Square (weighted) adjacency matrix G, dense or scipy sparse, shape (n, n).
        delta: Peer-effect strength δ.
        theta: Standalone marginal returns, shape (n,) or (n, c) for c independent games.

    Returns:
        The equilibrium actions, same shape as ``theta``.

    Raises:
        ValueError: If G is not square, shapes disagree, or ``|δ|·ρ(G) ≥ 1``.
    """
    g = sp.csr_array(adjacency, dtype=float)
    n = g.shape[0]
    if g.shape != (n, n):
        raise ValueError(f"adjacency must be square, got {g.shape}")
    th = np.asarray(theta, dtype=float)
    if th.shape[:1] != (n,) or th.ndim > 2:
        raise ValueError(f"theta must have shape ({n},) or ({n}, c), got {th.shape}")
    radius = _spectral_radius(g)
    if abs(delta) * radius >= 1.0:
        raise ValueError(
            f"no unique equilibrium: |delta|·rho(G) = {abs(delta) * radius:.6g} >= 1 "
            f"(rho(G) = {radius:.6g})"
        )
    system = (sp.identity(n, format="csc") - delta * g).tocsc()
    return splinalg.splu(system).solve(th)


def student_t_selection_curve(
    ns: np.ndarray | list[int],
    sigma_theta: float,
    scale: float,
    df: float,
    reps: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Monte-Carlo true value of the best-of-n candidate under Student-t score noise.

    Candidates have true value θ ~ N(0, σ_θ²) and are scored by ``θ + scale·T``, T ~ t_df.
    With light-tailed noise the selected candidate's true value rises with n
    (:func:`regressional_selection_gain`); with noise heavier-tailed than θ the top score is
    eventually a noise outlier and the selected true value falls back towards the mean —
    "catastrophic Goodhart" (Kwa, Thomas & Garriga-Alonso 2024, "Catastrophic Goodhart:
    regularizing RLHF with KL divergence does not mitigate heavy-tailed reward
    misspecification"; Manheim & Garrabrant 2018, extremal Goodhart).

    Args:
        ns: Candidate counts n to evaluate, each at least 1.
        sigma_theta: Standard deviation of the true value.
        scale: Scale of the t noise.
        df: Degrees of freedom of the t noise, > 0.
        reps: Independent selections per n, at least 2.
        rng: Source of all randomness.

    Returns:
        ``(means, standard_errors)``, each of shape ``(len(ns),)``: the mean true value of the
        selected candidate and its Monte-Carlo standard error (sample sd / √reps).

    Raises:
        ValueError: If ``reps < 2``, some ``n < 1`` or ``df ≤ 0``.
    """
    counts = np.asarray(ns, dtype=np.int64).ravel()
    if reps < 2:
        raise ValueError(f"reps must be at least 2, got {reps}")
    if np.any(counts < 1):
        raise ValueError("every n must be at least 1")
    if not df > 0.0:
        raise ValueError(f"df must be positive, got {df}")
    means = np.empty(counts.size)
    ses = np.empty(counts.size)
    budget = 1 << 22  # draws held in memory at once
    for i, n in enumerate(counts):
        batch = max(1, budget // int(n))
        picked = np.empty(reps)
        for lo in range(0, reps, batch):
            b = min(batch, reps - lo)
            theta = sigma_theta * rng.standard_normal((b, n))
            score = theta + scale * rng.standard_t(df, (b, n))
            picked[lo : lo + b] = theta[np.arange(b), np.argmax(score, axis=1)]
        means[i] = picked.mean()
        ses[i] = picked.std(ddof=1) / math.sqrt(reps)
    return means, ses
