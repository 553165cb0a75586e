"""Pure NumPy kernels for mesa-optimizer behaviour: the reference of :mod:`agents.response_jit`.

Every function here maps arrays to arrays and holds no state: the Mesa agent classes in
``agents/`` keep the state (objectives, actions, world models) and call these kernels once per
step for a whole population at a time. Rows are agents, columns are channels (``d`` of them).
They are the readable definitions: the step runs the same arithmetic through the compiled row
kernels of :mod:`agents.response_jit`, and the tests hold those to :func:`plan_actions` here.

The agent's one-step problem is the quadratic programme of the LEN model: with marginal rewards
``r`` (objective plus incentive plus peer effects, see docs/model.md) and effort-cost matrix ``K``,

    maximise  rᵀa − ½ aᵀKa   subject to  a ≥ 0  and  a_k = 0 on channels the agent cannot perceive.

* :func:`best_response` solves it exactly (``direct`` optimizer, power ``exact``);
* :func:`best_of_k` solves it by best-of-k sampling against a noisy internal model (``direct``
  optimizer, power ``k``: log2 k bits of optimization);
* :func:`control_update` takes one projected feedback step along a (noisy) gradient (``control``
  optimizer);
* :func:`reward_gradient` and :func:`quadratic_payoff` evaluate the objective;
* :func:`plan_actions` is step 3 of the model for every agent at once (marginal rewards with peer
  effects, then the exact best response or the control step): the definition of the compiled
  :func:`agents.response_jit.plan_actions`.

The closed-form oracles these kernels are tested against live in :mod:`analysis.theory`; the
principal's side of the contract is in :mod:`agents.contract`.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.sparse as sp
from scipy.special import ndtri

from mesaopt.model.kernel_arrays import Graph, PlanArrays, PopulationArrays, WorldArrays

__all__ = [
    "MAX_CHANNELS",
    "CostStructure",
    "best_of_k",
    "best_response",
    "control_episodes",
    "control_update",
    "cost_structure",
    "plan_actions",
    "quadratic_payoff",
    "reward_gradient",
]

#: Largest number of channels :func:`best_response` accepts (it enumerates 2^d active sets).
MAX_CHANNELS = 12

# Tolerances of the KKT tests in the active-set enumeration, in units of the rounding error
# bound eps·κ(K)·(1 + max|r|). The first pass only forgives rounding; rows left without a KKT
# point (near-degenerate ties) are retried with the looser ones.
_KKT_PASSES = (128.0, 1e4, 1e7)


def _check_problem(
    reward: np.ndarray, cost: np.ndarray, perceive: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate and normalise the (reward, cost, perceive) triple shared by the kernels."""
    r = np.asarray(reward, dtype=float)
    k = np.asarray(cost, dtype=float)
    p = np.asarray(perceive, dtype=bool)
    if r.ndim != 2:
        raise ValueError(f"reward must have shape (N, d), got {r.shape}")
    d = r.shape[1]
    if k.shape != (d, d):
        raise ValueError(f"cost must have shape ({d}, {d}), got {k.shape}")
    if p.shape != r.shape:
        raise ValueError(f"perceive must have shape {r.shape}, got {p.shape}")
    cost_structure(k)  # finite and symmetric (cached per matrix)
    return r, k, p


class CostStructure(NamedTuple):
    """What :func:`best_response` needs to know of a cost matrix K (see :func:`cost_structure`)."""

    eigenvalues: np.ndarray  # ascending
    diagonal: bool
    substitution: float | None  # s of a shared effort budget, else None


def cost_structure(k: np.ndarray) -> CostStructure:
    """Check K (finite, symmetric) and find its structure, once per distinct matrix.

    A step calls :func:`best_response` a dozen times with the same one or two cost matrices (the
    loss benchmark, the decomposition's coalitions, retraining); the eigenvalues and the
    structure tests cost more than the water filling of a few rows, so they are kept per matrix
    (keyed by its bytes; a run has as many as it has world epochs). Positive definiteness is
    tested by the caller, which reports it only for d > 0.

    Raises:
        ValueError: If K is not finite or not symmetric.
    """
    key = (k.shape, k.tobytes())
    known = _COST_STRUCTURES.get(key)
    if known is not None:
        return known
    if not np.all(np.isfinite(k)):
        raise ValueError("cost must be finite")
    if not np.allclose(k, k.T, rtol=1e-12, atol=0.0):
        raise ValueError("cost must be symmetric")
    eig = np.linalg.eigvalsh(k) if k.size else np.zeros(0)
    eig.setflags(write=False)  # shared by every later call with this K
    structure = CostStructure(
        eigenvalues=eig,
        diagonal=_is_diagonal(k),
        substitution=_shared_budget_substitution(k) if k.size and eig[0] > 0.0 else None,
    )
    if len(_COST_STRUCTURES) >= 256:  # a bound, never reached by a run's few world epochs
        _COST_STRUCTURES.clear()
    _COST_STRUCTURES[key] = structure
    return structure


_COST_STRUCTURES: dict[tuple[tuple[int, ...], bytes], CostStructure] = {}


def _is_diagonal(k: np.ndarray) -> bool:
    """Return True when ``k`` has no non-zero off-diagonal entry."""
    return not np.any(k - np.diag(np.diag(k)))


def best_response(reward: np.ndarray, cost: np.ndarray, perceive: np.ndarray) -> np.ndarray:
    """Exact best response of each agent to its marginal rewards.

    Solves, for every row i, the strictly convex quadratic programme
    ``max_a r_iᵀa − ½ aᵀKa`` s.t. ``a ≥ 0`` and ``a_k = 0`` where ``perceive[i, k]`` is False.
    This is the agent's effort choice in the linear-exponential-normal (LEN) agency model with
    multiple tasks (Holmström & Milgrom 1991), extended with the non-negativity constraint and
    a perception mask. Clipping the unconstrained solution ``K⁻¹r`` at zero is *not* the answer
    when ``K`` has off-diagonal entries: dropping one channel changes the optimum on the others.

    Method: a strictly convex QP with non-negativity constraints is a linear complementarity
    problem with exactly one solution, characterised by its KKT conditions (Cottle, Pang &
    Stone 1992, *The Linear Complementarity Problem*; Nocedal & Wright 2006, ch. 16). For every
    active set S (channels with a_k > 0) the candidate is ``a_S = K_SS⁻¹ r_S``, and it is the
    optimum iff ``a_S ≥ 0`` and ``r_k − K_{k,S} a_S ≤ 0`` for every perceived ``k ∉ S``. The
    kernel enumerates all 2^|P| subsets of each perception mask P, vectorised over the rows that
    share the mask. Two structures of ``K`` take closed-form fast paths: a diagonal ``K``
    (``max(r, 0) / diag(K)``) and the shared-effort-budget ``K`` of
    :func:`model.channels.substitution_cost_matrix` (water filling, see :func:`_water_filling`),
    which is the only kind the model builds; both are tested against the enumeration.

    Args:
        reward: Marginal rewards r, shape (N, d).
        cost: Symmetric positive definite cost matrix K, shape (d, d).
        perceive: Boolean perception mask, shape (N, d); the agent acts only where True.

    Returns:
        The optimal actions, shape (N, d), non-negative and zero off the perceived channels.

    Raises:
        ValueError: On shape mismatch, non-finite rewards, a non-symmetric or non positive
            definite ``cost``, or more than :data:`MAX_CHANNELS` channels.
    """
    r, k, p = _check_problem(reward, cost, perceive)
    n, d = r.shape
    if d > MAX_CHANNELS:
        raise ValueError(f"best_response supports at most {MAX_CHANNELS} channels, got {d}")
    if not np.all(np.isfinite(r)):
        raise ValueError("reward must be finite")
    if d == 0:
        return np.zeros((n, 0))
    structure = cost_structure(k)
    eig = structure.eigenvalues
    if eig[0] <= 0.0:
        raise ValueError("cost must be positive definite")
    if n == 0:
        return np.zeros((0, d))
    if structure.diagonal:
        out = np.maximum(r, 0.0)
        out /= np.diag(k)
        out *= p  # multiplying by the mask is ~10x faster than np.where here
        return out
    substitution = structure.substitution
    if substitution is not None:
        return _water_filling(r, np.diag(k), substitution, p)

    unit = np.finfo(float).eps * (eig[-1] / eig[0]) * (1.0 + float(np.max(np.abs(r))))
    # Tolerances on the KKT slack, and on a's sign: a slack error e moves a by ≤ e / λ_min(K).
    tols = [(c * unit, c * unit / eig[0]) for c in _KKT_PASSES]
    if p.all():
        return np.ascontiguousarray(_solve_mask(np.ascontiguousarray(r.T), k, tols).T)
    # Group rows by perception mask; each group solves the QP reduced to its channels.
    out_t = np.zeros((d, n))
    r_t = r.T
    codes = p.astype(np.int64) @ (np.int64(1) << np.arange(d, dtype=np.int64))
    order = np.argsort(codes, kind="stable")
    counts = np.bincount(codes, minlength=1 << d)
    starts = np.concatenate(([0], np.cumsum(counts)))
    for code in np.flatnonzero(counts):
        cols = np.flatnonzero((code >> np.arange(d)) & 1)
        if cols.size == 0:
            continue
        rows = order[starts[code] : starts[code + 1]]
        sol = _solve_mask(r_t[np.ix_(cols, rows)], k[np.ix_(cols, cols)], tols)
        for i, c in enumerate(cols):
            out_t[c, rows] = sol[i]
    return np.ascontiguousarray(out_t.T)


def _shared_budget_substitution(k: np.ndarray) -> float | None:
    """Return s if ``K = D^½((1 − s)I + s·11ᵀ)D^½``, 0 < s < 1 (a shared effort budget), else None.

    That is the form :func:`model.channels.substitution_cost_matrix` builds: every off-diagonal
    entry divided by the geometric mean of its two diagonal entries equals the same s (to 1e-12
    relative).
    """
    d = k.shape[0]
    if d < 2:
        return None
    diag = np.diag(k)
    if np.any(diag <= 0.0):
        return None
    root = np.sqrt(diag)
    off = (k / np.outer(root, root))[~np.eye(d, dtype=bool)]
    s = float(off.mean())
    if not 0.0 < s < 1.0 or np.any(np.abs(off - s) > 1e-12 * s):
        return None
    return s


def _water_filling(r: np.ndarray, costs: np.ndarray, s: float, perceive: np.ndarray) -> np.ndarray:
    """Exact best response when K is a shared effort budget (closed form, no enumeration).

    With ``x = D^½a``, ``u = D^-½r`` and ``T = Σ_k x_k`` (total scaled effort), the KKT
    conditions of ``max rᵀa − ½aᵀKa, a ≥ 0`` read ``x_k = max(u_k − sT, 0) / (1 − s)``: a channel
    is worked iff its scaled reward beats the shared marginal cost ``sT``. The active set is
    therefore the top j channels by u, and ``T = (Σ_{top j} u) / (1 − s + s·j)`` for the largest
    j whose j-th reward still exceeds ``sT_j`` — the water-filling (or simplex-projection)
    argument of Held, Wolfe & Crowder (1974) and Duchi et al. (2008). Channels outside the
    perception mask get u = −∞. Each row costs a d-element sorting network and a few vector
    operations over all rows at once, instead of up to 2^d linear solves.

    Args:
        r: Marginal rewards, (N, d).
        costs: Diagonal of K, (d,), positive.
        s: Substitution strength, 0 < s < 1.
        perceive: Perception mask, (N, d).

    Returns:
        The optimal actions, (N, d).
    """
    n, d = r.shape
    root = np.sqrt(costs)
    # Scaled rewards, one contiguous vector per channel; unperceived channels never enter.
    u = [np.where(perceive[:, c], r[:, c] / root[c], -np.inf) for c in range(d)]
    ranked = list(u)
    for top in range(d - 1):  # bubble-sort network: ranked[0] ≥ ranked[1] ≥ ... per row
        for c in range(d - 1, top, -1):
            hi = np.maximum(ranked[c - 1], ranked[c])
            ranked[c] = np.minimum(ranked[c - 1], ranked[c])
            ranked[c - 1] = hi
    total = np.zeros(n)  # T for the active set; 0 when nothing is worth doing
    running = np.zeros(n)
    for j in range(1, d + 1):
        running += ranked[j - 1]  # −∞ once past the perceived channels: never valid
        candidate = running / (1.0 - s + s * j)
        np.copyto(total, candidate, where=ranked[j - 1] > s * candidate)
    out = np.empty((n, d))
    shared = s * total
    for c in range(d):
        out[:, c] = np.maximum(u[c] - shared, 0.0) / ((1.0 - s) * root[c])
    return out


def _solve_mask(r_t: np.ndarray, k: np.ndarray, tols: list[tuple[float, float]]) -> np.ndarray:
    """Active-set enumeration for rows that all perceive every channel of the reduced problem.

    Works on transposed arrays (channels × rows) so that every operation streams over rows.
    Subsets are visited by increasing size and solved rows are dropped as they are found; a row
    keeps the first active set that passes the KKT test. Rows that no set passes (rounding in a
    near-degenerate tie) are retried with the next, looser, pair of tolerances.

    Args:
        r_t: Marginal rewards on the perceived channels, transposed: shape (m, n).
        k: Cost matrix restricted to those channels, shape (m, m).
        tols: Successive ``(slack, sign)`` tolerances: on ``r_k − K_{k,S} a_S ≤ tol`` and on
            ``a_S ≥ −tol``.

    Returns:
        The optimal actions, transposed: shape (m, n).

    Raises:
        RuntimeError: If some row passes no KKT test even with the loosest tolerances.
    """
    m, n = r_t.shape
    out_t = np.zeros((m, n))
    pending = np.arange(n)
    rp = r_t
    idx = np.arange(m)
    subsets = sorted(range(1, 1 << m), key=lambda s: (s.bit_count(), s))
    for tol, tol_a in tols:
        # The empty active set, a = 0, is optimal iff every marginal reward is ≤ 0.
        # np.take with integer indices is several times faster than boolean column indexing.
        keep = np.flatnonzero(np.any(rp > tol, axis=0))
        pending = pending[keep]
        rp = np.take(rp, keep, axis=1)
        for s in subsets:
            if pending.size == 0:
                return out_t
            in_s = ((s >> idx) & 1).astype(bool)
            act, rest = idx[in_s], idx[~in_s]
            a_t = np.linalg.inv(k[np.ix_(act, act)]) @ rp[act]
            ok = np.all(a_t >= -tol_a, axis=0)
            if rest.size:
                slack = rp[rest] - k[np.ix_(rest, act)] @ a_t
                ok &= np.all(slack <= tol, axis=0)
            found = np.flatnonzero(ok)
            if found.size:
                hit = pending[found]
                sol = np.maximum(np.take(a_t, found, axis=1), 0.0)
                for i, c in enumerate(act):
                    out_t[c, hit] = sol[i]
                keep = np.flatnonzero(~ok)
                pending = pending[keep]
                rp = np.take(rp, keep, axis=1)
        if pending.size == 0:
            return out_t
    raise RuntimeError(
        f"active-set enumeration found no KKT point for {pending.size} rows; "
        "is the cost matrix badly conditioned?"
    )


def best_of_k(
    reward: np.ndarray,
    cost: np.ndarray,
    perceive: np.ndarray,
    k: int,
    model_noise: float,
    rng: np.random.Generator,
    *,
    chunk: int = 65536,
) -> np.ndarray:
    """Best of k sampled candidate actions, scored by a noisy internal model.

    Each agent draws k candidate actions with ``a_c ~ Uniform(0, 2·ā_c)`` independently per
    perceived channel, where ``ā_c = max(r_c, 0) / K_cc`` is the diagonal best response (zero off
    the perceived channels), scores every candidate with its model ``rᵀa − ½aᵀKa`` plus
    independent ``N(0, model_noise²)`` noise, and returns the best-scored candidate. Selecting
    one of k candidates is log2 k bits of optimization (Yudkowsky 2008, "Measuring Optimization
    Power"); it is the best-of-n policy of Gao, Schulman & Hilton (2023, "Scaling Laws for
    Reward Model Overoptimization"), and with model noise it exhibits regressional Goodhart
    (Manheim & Garrabrant 2018, "Categorizing Variants of Goodhart's Law").

    Random numbers: every draw comes from ``rng``, as ``k·(d + 1)`` uniforms per row in row
    order (``k·d`` for the candidates, ``k`` turned into Gaussian score noise by the inverse
    normal CDF). The stream is therefore consumed identically whatever ``chunk`` is, and the
    result does not depend on ``chunk``.

    Args:
        reward: Marginal rewards r, shape (N, d).
        cost: Symmetric positive definite cost matrix K, shape (d, d).
        perceive: Boolean perception mask, shape (N, d).
        k: Number of candidates per agent, at least 1.
        model_noise: Standard deviation of the score noise, at least 0.
        rng: Source of all randomness.
        chunk: Memory budget, in candidate actions (rows × k) held at once; rows are processed
            ``max(1, chunk // k)`` at a time, so peak memory is about ``chunk·(d + 1)`` floats.

    Returns:
        The selected actions, shape (N, d), non-negative and zero off the perceived channels.

    Raises:
        ValueError: On shape mismatch, ``k < 1``, ``model_noise < 0``, ``chunk < 1`` or a
            non-positive diagonal of ``cost``.
    """
    r, kmat, p = _check_problem(reward, cost, perceive)
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if not model_noise >= 0.0:
        raise ValueError(f"model_noise must be non-negative, got {model_noise}")
    if chunk < 1:
        raise ValueError(f"chunk must be at least 1, got {chunk}")
    diag = np.diag(kmat)
    if np.any(diag <= 0.0):
        raise ValueError("cost must have a positive diagonal")
    n, d = r.shape
    width = np.maximum(r, 0.0)  # 2·ā, ā = max(r, 0) / K_cc on perceived channels
    width /= diag
    width *= 2.0
    width *= p
    out = np.empty((n, d))
    rows = max(1, chunk // k)
    for lo in range(0, n, rows):
        hi = min(n, lo + rows)
        m = hi - lo
        u = rng.random((m, k * (d + 1)))
        cand = u[:, : k * d].reshape(m, k, d) * width[lo:hi, None, :]
        score = np.einsum("mkd,md->mk", cand, r[lo:hi])
        score -= 0.5 * np.einsum(
            "mkd,mkd->mk", _times_cost(cand.reshape(-1, d), kmat).reshape(cand.shape), cand
        )
        if model_noise > 0.0:
            # Map [0, 1) to the open interval so that ndtri stays finite.
            score += model_noise * ndtri(u[:, k * d :] + 2.0**-54)
        best = np.argmax(score, axis=1)
        out[lo:hi] = cand[np.arange(m), best]
    return out


def control_update(
    action: np.ndarray, gradient: np.ndarray, gain: float, perceive: np.ndarray
) -> np.ndarray:
    """One step of a projected feedback controller.

    Returns ``a' = max(0, a + gain·gradient)`` on perceived channels and 0 elsewhere: projected
    gradient ascent (Goldstein 1964; Levitin & Polyak 1966), the discrete-time gradient dynamics
    of Arrow, Hurwicz & Uzawa (1958). Fed with :func:`reward_gradient` and a gain below
    ``2 / λ_max(K)`` it converges to :func:`best_response`; fed with a noisy realized gradient it
    adapts with lag and chases the noise.

    Args:
        action: Current actions a, shape (N, d).
        gradient: Observed reward gradient, shape (N, d).
        gain: Step size (controller gain): a float, or one per row, shape (N, 1).
        perceive: Boolean perception mask, shape (N, d).

    Returns:
        The updated actions, shape (N, d).

    Raises:
        ValueError: On shape mismatch or a negative or non-finite ``gain``.
    """
    a = np.asarray(action, dtype=float)
    g = np.asarray(gradient, dtype=float)
    p = np.asarray(perceive, dtype=bool)
    if a.shape != g.shape or a.shape != p.shape:
        raise ValueError(
            f"action, gradient and perceive must share a shape, got {a.shape}, {g.shape}, {p.shape}"
        )
    gains = np.asarray(gain, dtype=float)
    if not (np.all(np.isfinite(gains)) and np.all(gains >= 0.0)):
        raise ValueError(f"gain must be finite and non-negative, got {gain}")
    out = np.maximum(a + gain * g, 0.0)
    out *= p  # faster than np.where; non-finite input propagates
    return out


def control_episodes(
    reward: np.ndarray,
    cost: np.ndarray,
    perceive: np.ndarray,
    gain: np.ndarray,
    episode_noise: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Run control laws from rest through noisy episodes (a control candidate in a sandbox).

    Episode e plays a_e and realizes y_e = a_e + ε_e; the law then moves to
    ``a_{e+1} = max(0, a_e + γ(r − K y_e))`` on the perceived channels (:func:`control_update`
    fed with :func:`reward_gradient` at the realized output), starting from a_0 = 0.

    Args:
        reward: Marginal rewards r, shape (R, d).
        cost: Symmetric cost matrix K, shape (d, d).
        perceive: Boolean perception mask, shape (R, d).
        gain: Each law's gain γ, shape (R,).
        episode_noise: Output noise per episode, shape (E, R, d).

    Returns:
        The mean effort over the E episodes (a_0 … a_{E−1}) and the effort after the last
        update a_E, shape (R, d) each.
    """
    action = np.zeros_like(np.asarray(reward, dtype=float))
    total = np.zeros_like(action)
    for noise in episode_noise:
        total += action
        felt = reward_gradient(reward, cost, action + noise)
        action = control_update(action, felt, np.asarray(gain)[:, None], perceive)
    return total / len(episode_noise), action


def _times_cost(a: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Row-wise ``aK`` for symmetric ``K``, computed as ``(K aᵀ)ᵀ``.

    Same result as ``a @ k``, but OpenBLAS handles the wide (d, d) × (d, N) product far better
    than the tall (N, d) × (d, d) one when the CPU is oversubscribed (measured 8 ms vs 80 ms
    for N = 100,000, d = 4 with another process busy; equal on an idle machine).
    """
    return (k @ a.T).T


def reward_gradient(reward: np.ndarray, cost: np.ndarray, action: np.ndarray) -> np.ndarray:
    """Gradient ``r − Ka`` of the quadratic payoff ``rᵀa − ½aᵀKa``, row by row.

    Args:
        reward: Marginal rewards r, shape (N, d).
        cost: Symmetric cost matrix K, shape (d, d).
        action: Actions a, shape (N, d).

    Returns:
        The gradients, shape (N, d).
    """
    a = np.asarray(action, dtype=float)
    k = np.asarray(cost, dtype=float)
    return np.asarray(reward, dtype=float) - _times_cost(a, k)


def quadratic_payoff(reward: np.ndarray, cost: np.ndarray, action: np.ndarray) -> np.ndarray:
    """Quadratic payoff ``rᵀa − ½aᵀKa`` of each row.

    Args:
        reward: Marginal rewards r, shape (N, d).
        cost: Symmetric cost matrix K, shape (d, d).
        action: Actions a, shape (N, d).

    Returns:
        The payoffs, shape (N,).
    """
    r = np.asarray(reward, dtype=float)
    a = np.asarray(action, dtype=float)
    k = np.asarray(cost, dtype=float)
    return np.einsum("nd,nd->n", r - 0.5 * _times_cost(a, k), a)


def plan_actions(
    graph: Graph, world: WorldArrays, population: PopulationArrays, beta: np.ndarray
) -> PlanArrays:
    """Step 3 for every agent: neighbours' effort, marginal reward, new effort, own optimum.

    The reference of :func:`agents.response_jit.plan_actions` (which fills the same arrays in
    one compiled pass over the rows). For agent i of principal j, with ``a`` the efforts of the
    previous step and G the network:

    * neighbours' effort ``n_i = (G a)_i = Σ_l G_il a_l``;
    * marginal reward ``r_i = θ_i + β_j m + δ ⊙ n_i``: objective, the contract's incentive
      (LEN, Holmström & Milgrom 1987, 1991) and the peer-effect complementarity of the
      linear-quadratic network game (Ballester, Calvó-Armengol & Zenou 2006, "Who's who in
      networks": iterating these best responses converges to their equilibrium
      ``(I − δG)⁻¹θ`` for unit costs and ``δ·ρ(G) < 1``);
    * a direct agent's effort: :func:`best_response` to ``r_i`` on its perceived channels (the
      current world; the model re-plans stale and best-of-k planners itself);
    * a control agent's effort: :func:`control_update` of ``a_i`` with its own gain ``γ_i``
      along the felt gradient ``r_i − K(a_i + ε_i)`` (:func:`reward_gradient` at last step's
      realized output: the controller feels its marginal cost at the output it realized, as it
      cannot tell its effort from its luck; docs/model.md, "Control laws");
    * own optimum ``½ r_iᵀa*_i`` with ``a*_i`` the best response on every channel: the payoff
      ``rᵀa* − ½a*ᵀKa*`` at the optimum, where the first-order conditions give
      ``a*ᵀKa* = rᵀa*`` (the benchmark of the mesa loss).

    Args:
        graph: The network G (``in_weight`` is not read).
        world: The current world's channels (``externality``, ``root`` and ``substitution``
            are not read: :func:`best_response` recognises the shared-budget K itself).
        population: The agents at the start of the step (``capacity`` is not read).
        beta: Contract slope per principal, (J,).

    Returns:
        ``n``, ``r``, the new efforts, ``½ rᵀa*`` and a*.
    """
    n = len(population.theta)
    adjacency = sp.csr_array((graph.data, graph.indices, graph.indptr), shape=(n, n))
    previous = population.last_action
    neighbour_effort = adjacency @ previous
    reward = (
        population.theta
        + beta[population.principal, None] * world.metric
        + world.peer * neighbour_effort
    )
    optimum = best_response(reward, world.cost, np.ones_like(population.perceive))
    own_best = 0.5 * np.einsum("ij,ij->i", reward, optimum)
    direct = best_response(reward, world.cost, population.perceive)
    felt = reward_gradient(reward, world.cost, previous + population.last_noise)
    steered = control_update(previous, felt, population.gain[:, None], population.perceive)
    action = np.where(population.is_control[:, None], steered, direct)
    return PlanArrays(neighbour_effort, reward, action, own_best, optimum)
