"""The principal's contract-design kernel: the optimal linear (LEN) incentive.

A principal pays ``w = α + β·M`` on its measured proxy ``M = mᵀy`` (docs/model.md). With
``beta = "optimal"`` it picks β by solving the linear-exponential-normal agency problem of
Holmström & Milgrom over the channels *it perceives*, with its beliefs about channel values and
about its agents' mean objective. These are pure functions of arrays; the principal class holds
the beliefs and calls them. The textbook special cases used as test oracles are in
:mod:`analysis.theory`; the agents' response kernels are in :mod:`agents.response`.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["len_optimal_beta"]


def len_optimal_beta(
    value_belief: np.ndarray,
    mean_objective: np.ndarray,
    metric: np.ndarray,
    cost: np.ndarray,
    risk_aversion: float,
    metric_noise_var: float,
    perceived: np.ndarray,
) -> float:
    """Optimal piece rate β of a linear contract, designed over the perceived channels only.

    The principal restricts every quantity to its perceived index set P (it designs as if the
    other channels did not exist; a gaming channel it cannot see is invisible to it) and solves

        β* = ((v̂ − ḡ)ᵀ K⁻¹ m) / (mᵀ K⁻¹ m + ρ σ_M²).

    Derivation (Holmström & Milgrom 1987, 1991). An agent with mean objective ḡ facing
    ``w = α + β mᵀ(a + ε)`` and cost ``½aᵀKa`` chooses ``a(β) = K⁻¹(βm + ḡ)`` (interior) and
    bears the risk premium ``(ρ/2)β²σ_M²`` of its CARA utility, ``σ_M² = Var(mᵀε)``. The
    principal sets α so that participation binds with the pay covering the effort cost and the
    risk premium, ``E[w] = ½a(β)ᵀKa(β) + (ρ/2)β²σ_M²``; the agent's intrinsic gain ``ḡᵀa`` is
    a behavioural drive, not credited against pay. The principal's expected profit is then

        Π(β) = v̂ᵀa(β) − ½a(β)ᵀKa(β) − (ρ/2)β²σ_M²,

    and since ``∂a/∂β = K⁻¹m`` and ``Ka = βm + ḡ``, the first-order condition
    ``(v̂ − βm − ḡ)ᵀK⁻¹m − ρβσ_M² = 0`` gives β*. The agent's drive ḡ substitutes for
    incentive pay along the measured direction, hence ``v̂ − ḡ``. (If the principal could also
    extract ``ḡᵀa`` through α, the objective would be total surplus and ``v̂`` would replace
    ``v̂ − ḡ``; the two agree when ḡ = 0.) One channel with ḡ = 0, m = 1, v = 1 gives
    Holmström & Milgrom (1987, Econometrica 55:303–328), ``β* = 1/(1 + ρcσ²)``; two tasks with
    one measured give the multitask result of Holmström & Milgrom (1991, J. Law Econ. Organ.
    7:24–52), ``β* = (v₁ − v₂c₁₂/c₂₂) / (1 + ρσ²(c₁₁ − c₁₂²/c₂₂))``.

    Args:
        value_belief: Principal's belief v̂ of the value per unit of each channel, shape (d,).
        mean_objective: Principal's belief ḡ of its agents' mean objective, shape (d,).
        metric: Proxy weights m, shape (d,).
        cost: Effort-cost matrix K, shape (d, d), positive definite on the perceived block.
        risk_aversion: Agents' CARA coefficient ρ ≥ 0.
        metric_noise_var: σ_M², the variance of mᵀε over the perceived channels (see
            :func:`metric_noise_variance`); may be ``inf``.
        perceived: Boolean mask of the channels in the principal's model, shape (d,).

    Returns:
        β*. It is 0.0 when no perceived channel is measured, and 0.0 when ``σ_M² = inf`` and
        ``ρ > 0`` (infinitely risky pay is worth nothing to a risk-averse agent).

    Raises:
        ValueError: On shape mismatch, ``ρ < 0`` or ``σ_M² < 0``.
    """
    v = np.asarray(value_belief, dtype=float)
    g = np.asarray(mean_objective, dtype=float)
    m = np.asarray(metric, dtype=float)
    k = np.asarray(cost, dtype=float)
    p = np.asarray(perceived, dtype=bool)
    d = v.shape[0] if v.ndim == 1 else -1
    if d < 0 or g.shape != (d,) or m.shape != (d,) or p.shape != (d,) or k.shape != (d, d):
        raise ValueError(
            "value_belief, mean_objective, metric and perceived must have shape (d,) and cost "
            f"(d, d); got {v.shape}, {g.shape}, {m.shape}, {p.shape}, {k.shape}"
        )
    if not risk_aversion >= 0.0:
        raise ValueError(f"risk_aversion must be non-negative, got {risk_aversion}")
    if not metric_noise_var >= 0.0:
        raise ValueError(f"metric_noise_var must be non-negative, got {metric_noise_var}")
    idx = np.flatnonzero(p)
    m_p = m[idx]
    if not np.any(m_p):
        return 0.0
    if math.isinf(metric_noise_var) and risk_aversion > 0.0:
        return 0.0
    k_inv_m = np.linalg.solve(k[np.ix_(idx, idx)], m_p)
    risk = risk_aversion * metric_noise_var if risk_aversion > 0.0 else 0.0
    denominator = float(m_p @ k_inv_m) + risk
    if denominator == 0.0:
        return 0.0
    return float((v[idx] - g[idx]) @ k_inv_m) / denominator
