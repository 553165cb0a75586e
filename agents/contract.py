"""The principal's contract-design kernel: the linear (LEN) contract with participation.

A principal pays ``w = α + β·M`` on its measured proxy ``M = mᵀy`` (docs/model.md, "Contract").
It designs ``(α, β)`` by solving the linear-exponential-normal agency problem of Holmström &
Milgrom (1987, Econometrica 55:303–328; 1991, J. Law Econ. Organ. 7:24–52) under *its own
model*: only the channels it perceives, its belief v̂ of their values, its world model's metric,
costs and noise, and its belief ḡ of its agents' mean objective. It maximises its expected profit
``E[V − w]`` subject to its agents' participation — the certainty equivalent it expects its
representative agent (objective ḡ) to get must reach the reservation level R — and, optionally,
limited liability (α ≥ 0, β ≥ 0; Innes 1990, J. Econ. Theory 52:45–67; Laffont & Martimort 2002,
*The Theory of Incentives*, ch. 3). With the participation constraint binding, α absorbs the
agent's intrinsic gain and risk premium, and the slope is the textbook

    β* = v̂ᵀK⁻¹m / (mᵀK⁻¹m + ρσ_M²),

independent of ḡ while the agent's response is interior. These are pure functions of arrays; the
principal class (:mod:`agents.principal`) holds the beliefs and calls them. The agent's exact
response is :func:`agents.response.best_response`; the textbook oracles the tests compare with are
in :mod:`analysis.theory`.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from mesaopt.agents.response import best_response

__all__ = ["ContractDesign", "contract_outcome", "design_len_contract", "len_optimal_beta"]

# Relative slack with which a designed contract counts as meeting participation: the roots of
# CE(β) = R are computed in closed form and re-evaluated through the exact best response, which
# agree to rounding (~1e-15 relative), far inside this.
_PARTICIPATION_SLACK = 1e-9
# Candidates whose objectives differ by less than this many ulps of their scale are ties.
_TIE_ULPS = 64.0
# Largest |β| the design considers (a piece boundary beyond it is an artefact of rounding).
_MAX_SLOPE = 1e12


@dataclass(frozen=True)
class ContractDesign:
    """A designed linear contract and what its designer expects of it (under its own model).

    Attributes:
        alpha: Fixed pay α.
        beta: Slope β on the proxy.
        expected_profit: The principal's expected profit per agent, ``v̂ᵀa − α − β mᵀa``.
        certainty_equivalent: The certainty equivalent it expects its representative agent to
            get, ``α + β mᵀa + ḡᵀa − ½aᵀKa − (ρ/2)β²σ_M²``.
        reservation: The reservation certainty equivalent R it designed for.
    """

    alpha: float
    beta: float
    expected_profit: float
    certainty_equivalent: float
    reservation: float

    @property
    def rent(self) -> float:
        """Expected certainty equivalent above the reservation (> 0 slack, < 0 violated)."""
        return self.certainty_equivalent - self.reservation


def _restrict(
    value_belief: np.ndarray,
    mean_objective: np.ndarray,
    metric: np.ndarray,
    cost: np.ndarray,
    perceived: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Validate shapes and restrict every quantity to the perceived channels."""
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
    idx = np.flatnonzero(p)
    return v[idx], g[idx], m[idx], k[np.ix_(idx, idx)]


def _risk_weight(risk_aversion: float, metric_noise_var: float) -> float:
    """ρσ_M², with ρ = 0 meaning no risk premium even when σ_M² is infinite."""
    if not risk_aversion >= 0.0:
        raise ValueError(f"risk_aversion must be non-negative, got {risk_aversion}")
    if not metric_noise_var >= 0.0:
        raise ValueError(f"metric_noise_var must be non-negative, got {metric_noise_var}")
    return risk_aversion * metric_noise_var if risk_aversion > 0.0 else 0.0


def len_optimal_beta(
    value_belief: np.ndarray,
    metric: np.ndarray,
    cost: np.ndarray,
    risk_aversion: float,
    metric_noise_var: float,
    perceived: np.ndarray,
) -> float:
    """The LEN slope with binding participation and an interior response, in closed form.

    Over the perceived channels P, ``β* = v̂ᵀK⁻¹m / (mᵀK⁻¹m + ρσ_M²)``. Derivation: the agent's
    interior response is ``a(β) = K⁻¹(βm + ḡ)``; α is set so that its certainty equivalent
    equals R, so the principal's expected profit is the total certainty-equivalent surplus less R,
    ``S(β) − R = (v̂ + ḡ)ᵀa − ½aᵀKa − (ρ/2)β²σ_M² − R``; with ``∂a/∂β = K⁻¹m`` and
    ``Ka = βm + ḡ`` the first-order condition ``(v̂ − βm)ᵀK⁻¹m − ρβσ_M² = 0`` gives β*, in which
    ḡ cancels. One channel with m = v = 1 gives Holmström & Milgrom (1987),
    ``β* = 1/(1 + ρcσ²)``; two tasks with one measured give Holmström & Milgrom (1991),
    ``β* = (v₁ − v₂c₁₂/c₂₂) / (1 + ρσ²(c₁₁ − c₁₂²/c₂₂))``. :func:`design_len_contract` is the
    general design (a ≥ 0 binding, limited liability, fixed α or β); it returns this β* whenever
    the interior response is the agent's best response at β*.

    Args:
        value_belief: Principal's belief v̂ of the value per unit of each channel, shape (d,).
        metric: Proxy weights m, shape (d,).
        cost: Effort-cost matrix K, shape (d, d), positive definite on the perceived block.
        risk_aversion: Agents' CARA coefficient ρ ≥ 0.
        metric_noise_var: σ_M², the variance of mᵀε over the perceived channels (see
            :func:`model.noise.metric_noise_variance`); may be ``inf``.
        perceived: Boolean mask of the channels in the principal's model, shape (d,).

    Returns:
        β*. It is 0.0 when no perceived channel is measured, and 0.0 when ``σ_M² = inf`` and
        ``ρ > 0`` (infinitely risky pay is worth nothing to a risk-averse agent).

    Raises:
        ValueError: On shape mismatch, ``ρ < 0`` or ``σ_M² < 0``.
    """
    v, _, m, k = _restrict(value_belief, np.zeros_like(value_belief), metric, cost, perceived)
    risk = _risk_weight(risk_aversion, metric_noise_var)
    if not np.any(m) or math.isinf(risk):
        return 0.0
    k_inv_m = np.linalg.solve(k, m)
    return float(v @ k_inv_m) / (float(m @ k_inv_m) + risk)


def _outcomes(
    betas: np.ndarray, v: np.ndarray, g: np.ndarray, m: np.ndarray, k: np.ndarray, risk: float
) -> tuple[np.ndarray, np.ndarray]:
    """The agent's certainty equivalent at α = 0 and the principal's profit at α = 0, per β.

    The agent's effort is its exact best response to ``βm + ḡ`` over a ≥ 0 on the (already
    restricted) channels. Returns ``(CE₀(β), Π₀(β))`` with ``CE₀ = (βm + ḡ)ᵀa − ½aᵀKa −
    (ρ/2)β²σ_M²`` and ``Π₀ = v̂ᵀa − β mᵀa``.
    """
    reward = betas[:, None] * m + g
    if v.size == 0:
        action = np.zeros(reward.shape)
    else:
        action = best_response(reward, k, np.ones(reward.shape, dtype=bool))
    gain = np.einsum("bd,bd->b", reward, action) - 0.5 * np.einsum("bd,bd->b", action @ k, action)
    with np.errstate(invalid="ignore"):
        premium = np.where(betas == 0.0, 0.0, 0.5 * risk * betas**2)
    return gain - premium, action @ v - betas * (action @ m)


def _quadratic_roots(c2: float, c1: float, c0: float) -> list[float]:
    """Real roots of ``c2·x² + c1·x + c0 = 0`` (numerically stable form; linear if c2 = 0)."""
    if c2 == 0.0:
        return [-c0 / c1] if c1 != 0.0 else []
    disc = c1 * c1 - 4.0 * c2 * c0
    if disc < 0.0:
        return []
    q = -0.5 * (c1 + math.copysign(math.sqrt(disc), c1))
    roots = [q / c2]
    if q != 0.0:
        roots.append(c0 / q)
    return roots


@functools.cache
def _active_sets(p: int) -> tuple[tuple[np.ndarray, np.ndarray, tuple, tuple], ...]:
    """Every subset A of ``p`` channels, as :func:`_candidate_betas` walks them (by bit mask).

    Each is ``(A, the rest, the index of K_AA, the index of K_rest,A)``: built once per channel
    count instead of at every design (a selection step's contract design spent most of its
    time making them; the same indices, so the same numbers).
    """
    idx = np.arange(p)
    sets = []
    for mask in range(1 << p):
        act = idx[(mask >> idx) & 1 == 1]
        rest = idx[(mask >> idx) & 1 == 0]
        sets.append((act, rest, np.ix_(act, act), np.ix_(rest, act)))
    return tuple(sets)


def _candidate_betas(
    v: np.ndarray, g: np.ndarray, m: np.ndarray, k: np.ndarray, risk: float, level: float
) -> np.ndarray:
    """Every β at which some contract objective can peak: the exact piecewise analysis.

    The agent's best response to ``βm + ḡ`` over a ≥ 0 is piecewise affine in β: on the interval
    of β where the set A of channels it works stays the same, ``a_A = K_AA⁻¹(βm_A + ḡ_A) =
    βu + w``, and the interval is cut out by ``a_A ≥ 0`` and the KKT slack
    ``βm_k + ḡ_k − K_kA a_A ≤ 0`` off A (affine in β). On such a piece, with ``mu = mᵀu``,
    ``mw = mᵀw``, ``gw = ḡᵀw``, ``vu = v̂ᵀu``, ``vw = v̂ᵀw`` (and ``ḡᵀu = mᵀw``, K symmetric):

        CE₀(β) = ½(mu − ρσ²)β² + mw·β + ½gw,
        Π₀(β)  = −mu·β² + (vu − mw)β + vw,
        S(β)   = Π₀ + CE₀ = −½(mu + ρσ²)β² + vu·β + vw + ½gw.

    Every design objective is, between consecutive points of the returned set, one concave
    quadratic (S − R; Π₀ − max(0, R − CE₀); Π₀ − α on {CE₀ ≥ R − α}) or CE₀ itself (the fallback
    when participation is infeasible), so its maximum over any interval lies at a piece end, at a
    vertex of S, Π₀ or CE₀, or at a root of ``CE₀ = level``. Enumerating all 2^|P| active sets
    (|P| ≤ 10 channels in a scenario) finds them all exactly; the caller evaluates the objective
    at each through the exact best response, so a rounding error here can only move a candidate
    by rounding, never make the design use a wrong response.
    """
    points: list[float] = [0.0]
    for act, rest, block, across in _active_sets(v.size):
        if act.size:
            k_aa = k[block]
            u = np.linalg.solve(k_aa, m[act])
            w = np.linalg.solve(k_aa, g[act])
            k_ra = k[across]
            slopes = np.concatenate([u, -(m[rest] - k_ra @ u)])
            consts = np.concatenate([w, -(g[rest] - k_ra @ w)])
        else:
            u = w = np.zeros(0)
            slopes, consts = -m, -g
        # Conditions slope·β + const ≥ 0 cut the piece [lo, hi] out of the line.
        lo, hi = -math.inf, math.inf
        for s, c in zip(slopes.tolist(), consts.tolist(), strict=True):
            if s > 0.0:
                lo = max(lo, -c / s)
            elif s < 0.0:
                hi = min(hi, -c / s)
            elif c < 0.0:
                lo, hi = math.inf, -math.inf
        if not lo <= hi + 1e-12 * (1.0 + abs(lo) + abs(hi)):
            continue
        m_a, v_a = m[act], v[act]
        mu, mw = float(m_a @ u), float(m_a @ w)
        gw, vu, vw = float(g[act] @ w), float(v_a @ u), float(v_a @ w)
        ce = (0.5 * (mu - risk), mw, 0.5 * gw)
        profit = (-mu, vu - mw, vw)
        surplus = (-0.5 * (mu + risk), vu, vw + 0.5 * gw)
        here = [x for x in (lo, hi) if math.isfinite(x)]
        for c2, c1, _ in (ce, profit, surplus):
            if c2 < 0.0:
                here.append(-c1 / (2.0 * c2))
        here += _quadratic_roots(ce[0], ce[1], ce[2] - level)
        points += [min(max(x, lo), hi) for x in here if math.isfinite(x)]
    # A near-zero slope in a piece's conditions can put a bound at an absurd |β|; no contract
    # beyond _MAX_SLOPE is meant (and its β² would overflow), so such points are dropped.
    found = np.unique(np.array(points, dtype=float))
    return found[np.abs(found) <= _MAX_SLOPE]


def contract_outcome(
    alpha: float,
    beta: float,
    value_belief: np.ndarray,
    mean_objective: np.ndarray,
    metric: np.ndarray,
    cost: np.ndarray,
    risk_aversion: float,
    metric_noise_var: float,
    perceived: np.ndarray,
) -> tuple[float, float]:
    """What a principal expects of contract (α, β) under its model: its profit and the agent's CE.

    The representative agent (objective ḡ, acting on the perceived channels) plays its exact best
    response ``a`` to ``βm + ḡ`` over a ≥ 0 (:func:`agents.response.best_response`).

    Args:
        alpha: Fixed pay α.
        beta: Slope β.
        value_belief: v̂, shape (d,).
        mean_objective: ḡ, shape (d,).
        metric: m, shape (d,).
        cost: K, shape (d, d).
        risk_aversion: ρ ≥ 0.
        metric_noise_var: σ_M² over the perceived channels (may be ``inf``).
        perceived: The principal's perceived channels, shape (d,).

    Returns:
        ``(v̂ᵀa − α − β mᵀa, α + β mᵀa + ḡᵀa − ½aᵀKa − (ρ/2)β²σ_M²)`` (the second is ``-inf``
        for β ≠ 0 when ρσ_M² is infinite).
    """
    v, g, m, k = _restrict(value_belief, mean_objective, metric, cost, perceived)
    risk = _risk_weight(risk_aversion, metric_noise_var)
    ce0, pi0 = _outcomes(np.array([float(beta)]), v, g, m, k, risk)
    return float(pi0[0]) - alpha, alpha + float(ce0[0])


def design_len_contract(
    value_belief: np.ndarray,
    mean_objective: np.ndarray,
    metric: np.ndarray,
    cost: np.ndarray,
    risk_aversion: float,
    metric_noise_var: float,
    perceived: np.ndarray,
    *,
    reservation: float = 0.0,
    limited_liability: bool = False,
    alpha: float | None = None,
    beta: float | None = None,
) -> ContractDesign:
    """The principal's profit-maximising linear contract under its own model.

    Everything is restricted to the perceived channels P (a channel it cannot see does not exist
    in its design). Its representative agent has objective ḡ and plays its exact best response
    ``a(β)`` to ``βm + ḡ`` over a ≥ 0. The principal solves

        max_{α,β}  Π = v̂ᵀa(β) − α − β mᵀa(β)
        s.t.       CE = α + CE₀(β) ≥ R,   CE₀(β) = (βm + ḡ)ᵀa − ½aᵀKa − (ρ/2)β²σ_M²,
                   α ≥ 0 and β ≥ 0 if ``limited_liability``,
                   α or β equal to its fixed value if one is given.

    The combinations (docs/model.md, "Contract"):

    * **α and β designed** (``alpha = "participation"``, ``beta = "optimal"``): Π falls with α,
      so participation binds, ``α = R − CE₀(β)``, and β maximises the total surplus
      ``S(β) = Π₀ + CE₀``: β* of :func:`len_optimal_beta` when the response is interior. With
      limited liability, ``α = max(0, R − CE₀(β))`` and β ≥ 0 maximises
      ``Π₀(β) − max(0, R − CE₀(β))``: where the floor binds the agents earn a rent CE − R > 0.
    * **β fixed, α designed**: ``α = R − CE₀(β)`` (``max(0, ·)`` under limited liability).
    * **α fixed, β designed**: β is the only instrument, so participation constrains it: the
      most profitable β (≥ 0 under limited liability) among those with ``α + CE₀(β) ≥ R``. If no
      β meets it at that α, the principal picks the β that leaves its agents the highest
      certainty equivalent (the least shortfall; then the most profit) — deployed agents
      cannot quit in this model, and the shortfall shows as a negative :attr:`~ContractDesign.
      rent`.
    * **both fixed**: nothing to design; the expected outcome is evaluated.

    Method: the objective is piecewise quadratic in β (the agent's response is piecewise affine),
    so :func:`_candidate_betas` lists every point where it can peak and each is evaluated through
    the exact best response; the best is kept, ties (flat objectives) going to the smallest |β|.
    This is exact, not a numerical search, and handles a ≥ 0 binding; with ``ρσ_M² = ∞`` only
    β = 0 has a finite certainty equivalent, so β = 0.

    Args:
        value_belief: Principal's belief v̂ per channel, shape (d,).
        mean_objective: Its belief ḡ of its agents' mean objective, shape (d,).
        metric: Proxy weights m, shape (d,).
        cost: Effort-cost matrix K, shape (d, d), positive definite on the perceived block.
        risk_aversion: Agents' CARA coefficient ρ ≥ 0.
        metric_noise_var: σ_M² over the perceived channels (may be ``inf``).
        perceived: The principal's perceived channels, shape (d,).
        reservation: The agents' reservation certainty equivalent R.
        limited_liability: Impose α ≥ 0 and β ≥ 0.
        alpha: A fixed α, or None to design it.
        beta: A fixed β, or None to design it.

    Returns:
        The design (α, β and what the principal expects of it).

    Raises:
        ValueError: On bad shapes, ρ < 0, σ_M² < 0, non-finite R, α or β, a fixed α < 0 or
            β < 0 under limited liability, or a fixed β ≠ 0 with ``ρσ_M² = ∞``.
    """
    v, g, m, k = _restrict(value_belief, mean_objective, metric, cost, perceived)
    risk = _risk_weight(risk_aversion, metric_noise_var)
    for name, x in (("reservation", reservation), ("alpha", alpha), ("beta", beta)):
        if x is not None and not math.isfinite(x):
            raise ValueError(f"{name} must be finite, got {x}")
    if limited_liability and alpha is not None and alpha < 0.0:
        raise ValueError(f"limited liability needs alpha >= 0, got {alpha}")
    if limited_liability and beta is not None and beta < 0.0:
        raise ValueError(f"limited liability needs beta >= 0, got {beta}")
    if beta is not None and beta != 0.0 and math.isinf(risk):
        raise ValueError("a fixed beta != 0 with infinite metric noise variance has no finite CE")

    if beta is not None:
        betas = np.array([float(beta)])
    elif math.isinf(risk):
        betas = np.array([0.0])
    else:
        level = reservation - (alpha if alpha is not None else 0.0)
        betas = _candidate_betas(v, g, m, k, risk, level)
        if limited_liability:
            betas = betas[betas >= 0.0]
    ce0, pi0 = _outcomes(betas, v, g, m, k, risk)
    if alpha is None:
        alphas = reservation - ce0
        if limited_liability:
            alphas = np.maximum(alphas, 0.0)
    else:
        alphas = np.full(betas.shape, float(alpha))
    profit = pi0 - alphas
    ce = alphas + ce0
    scale = 1.0 + abs(reservation) + np.abs(ce0) + np.abs(alphas)
    meets = ce >= reservation - _PARTICIPATION_SLACK * scale
    if meets.any():
        score, allowed = profit, meets
    else:
        # Participation cannot be met at this fixed α: the least shortfall, then the most profit.
        best_ce = ce.max()
        allowed = ce >= best_ce - _TIE_ULPS * np.finfo(float).eps * scale
        score = profit
    best = np.max(score[allowed])
    tie = _TIE_ULPS * np.finfo(float).eps * (1.0 + abs(best) + scale)
    chosen = np.flatnonzero(allowed & (score >= best - tie))
    i = int(chosen[np.argmin(np.abs(betas[chosen]))])
    return ContractDesign(
        alpha=float(alphas[i]),
        beta=float(betas[i]),
        expected_profit=float(profit[i]),
        certainty_equivalent=float(ce[i]),
        reservation=float(reservation),
    )
