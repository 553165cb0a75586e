"""The planner's first best on the whole network, and the price of anarchy it measures.

A planner who knows everything (every principal's true values, every externality and peer effect,
the current world) chooses every agent's effort to maximise the welfare the model reports. Pay
and audit penalties are transfers, and the first best needs no risky pay, so there is no risk
premium; in expectation there is no noise either. Agent i of principal j contributes

    w_i(a) = v_jᵀa_i + Σ_l G_il eᵀa_l + Σ_k δ_k a_ik (G a)_ik − ½ a_iᵀK a_i,

its principal's value, the externalities it receives, its peer payoff and its effort cost (the
agents' own goals θᵀa are not social value; with ``metrics.welfare_counts_agent_goals = true``
they are, w_i gains θ_iᵀa_i and b_i below gains θ_i). Summed,

    W(a) = Σ_i [ b_iᵀa_i − ½ a_iᵀK a_i ] + ½ Σ_k δ_k a_·kᵀ S a_·k,   a ≥ 0 (every channel),

with b_i = v_{j(i)} + (Σ_l G_li)·e (agent i's value to its principal plus what its effort gives
its neighbours) and S = G + Gᵀ (the peer effect counted for both partners). The Hessian is
H = −(I ⊗ K) + S ⊗ Δ. With M = K^-½ Δ K^-½ and λ = λ_max(S):

* **concave** iff K − λΔ ≻ 0, i.e. q = λ·ρ(K⁻¹Δ) < 1 (diagonalise S). Then W is strictly concave,
  the first best is unique and is the fixed point of the planner's simultaneous best responses
  a_i ← argmax_{a ≥ 0} (b_i + Δ(S a)_i)ᵀa − ½aᵀKa, a contraction of modulus q in the K-norm (the
  argument of :mod:`model.stability`, with S in place of G; S is symmetric);
* **unbounded** iff some δ_k·λ ≥ c_k: along a_·k = t·u (u the Perron vector of S) the
  welfare's curvature is −(c_k − λδ_k)‖u‖² ≥ 0, so more effort always pays (at equality the
  direction is flat; reported the same way). Because K ≥ 0 entrywise these are exactly the cases
  where the quadratic form is not copositive;
* in between (only with substitution s > 0 and peer effects on a channel whose substitutes are
  worked) W is bounded on a ≥ 0 but not concave: a non-convex QP whose global optimum this module
  does not compute.

Only the concave case has a number; the other two give NaN with their status (``unbounded``,
``nonconcave``), never a wrong number. The planner internalises the peer effect for both
partners, so its condition, 2ρ(G)·ρ(K⁻¹Δ) < 1 for a symmetric G, is twice as strict as the
agents' (:mod:`model.stability`): a stable game can have an unbounded first best.

**Solver.** Projected block successive over-relaxation (Cryer 1971, "The solution of a quadratic
programming problem using systematic overrelaxation", SIAM J. Control 9:385–392; Mangasarian
1977, J. Optim. Theory Appl. 22:465–485), one block per agent: a_i ← P^K(a_i + ω(K⁻¹r_i − a_i))
with r_i = b_i + Δ(S a)_i at the current efforts, computed as the exact best response to
ω r_i + (1 − ω)K a_i (the water filling of :func:`agents.response_jit.water_fill`, which
:func:`agents.response.best_response` defines). It is a K-metric projected gradient step of
length ω on each block, so W rises at every block for 0 < ω < 2; ω = 2/(1 + √(1 − q²)) (Young's
optimum for the Jacobi modulus q). Agents are visited colour by colour of a greedy colouring of S
(multicolour SOR, Adams & Ortega 1982): agents of one colour share no edge, so they are updated
in parallel and the result is that of the sequential sweep, whatever the number of threads. The
result is certified: W is μ-strongly concave in the K-norm with μ = 1 − q, so
W(a*) − W(a) ≤ Σ_i max_{x ≥ 0} g_iᵀ(x − a_i) − ½μ‖x − a_i‖²_K (g = ∇W(a)), a bound computed
agent by agent; the solver stops when it is below ``rtol``·|W(a)| (:data:`RTOL`; the efforts are
then within √(2·bound/μ) of a* in the K-norm). λ is bracketed by power iteration on S + I
(Rayleigh quotient below, Collatz–Wielandt maximum ratio above) until the bracket decides the
case, with :func:`model.network.spectral_radius` as the fall-back. The start is the previous
epoch's first best, or a mean-field guess; without peer effects the problem separates and one
pass is exact.

The model calls :func:`add_planner_columns` at the end of each step's measurement: the first best
is solved once per world epoch (it depends only on the world, the network and the principals'
true values — and on the agents' goals when welfare counts them, so then again whenever
selection changes them) and cached on the model (``model._planner_cache``); each ``steps`` row
gets
``welfare_planner``, ``welfare_gap`` and ``price_of_anarchy`` (Koutsoupias & Papadimitriou
1999, "Worst-case equilibria"; Roughgarden & Tardos 2002) and ``planner_status``.

Numba's on-disk cache of the sweep and certificate kernels inlines
:func:`agents.response_jit.water_fill`: after editing that function, delete the ``*.nbi`` and
``*.nbc`` files in ``model/__pycache__`` too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import numba as nb
import numpy as np
import scipy.sparse as sp

from mesaopt.agents.response import best_response
from mesaopt.agents.response_jit import water_fill
from mesaopt.model.channels import substitution_cost_matrix
from mesaopt.model.network import spectral_radius
from mesaopt.model.parallel import block_ranges, parallel_map, thread_count
from mesaopt.model.stability import peer_gain

__all__ = [
    "COLUMNS",
    "FirstBest",
    "add_planner_columns",
    "first_best",
    "planner_welfare",
    "symmetric_part",
]

#: The ``steps`` columns this module adds (docs/tables.md).
COLUMNS = ("welfare_planner", "welfare_gap", "price_of_anarchy", "planner_status")

#: Certified relative accuracy of the first best's welfare: the solver stops when its bound on
#: W(a*) − W(a) is below RTOL·|W(a)|. Six digits, far below the Monte Carlo error of the realized
#: welfare it is compared with (~1e-3 relative at 10⁶ agents); each further digit costs about a
#: sweep (~0.1 s at 10⁶ agents).
RTOL = 1e-6

#: Sweeps before the first certificate; later ones are planned from the observed rate.
FIRST_CHECK = 3

#: Fixed blocks the certificate's sums are split into (added in order: thread-independent).
MEASURE_BLOCKS = 16

#: Most sweeps before the solver gives up (status ``not_converged``).
MAX_SWEEPS = 20_000


@dataclass(frozen=True)
class FirstBest:
    """The planner's solution.

    Attributes:
        action: First-best efforts (N, d); None unless ``status == "ok"``.
        status: ``ok``, ``unbounded`` (more effort always pays), ``nonconcave`` (bounded, not
            concave: not computed) or ``not_converged`` (the sweep limit was hit).
        reason: One sentence with the numbers behind the status.
        modulus: q = λ_max(G + Gᵀ)·ρ(K⁻¹Δ) (an upper bound when the bracket sufficed).
        growth: max_k δ_k·λ_max(G + Gᵀ)/c_k (unbounded iff ≥ 1), at the same λ.
        sweeps: Over-relaxation sweeps run.
        error: Certified bound on (W(a*) − W(a)) / |W(a)| (0 when exact; NaN without a
            solution).
        bracket: The ``(low, high)`` bracket of λ_max(G + Gᵀ) used (None when not needed); it
            belongs to the network, so later epochs reuse it.
    """

    action: np.ndarray | None
    status: str
    reason: str
    modulus: float
    growth: float
    sweeps: int
    error: float
    bracket: tuple[float, float] | None = None


def symmetric_part(adjacency: sp.sparray | sp.spmatrix) -> tuple[sp.csr_matrix, float]:
    """S = G + Gᵀ as (matrix, factor) with S = factor·matrix, sharing G when G is symmetric.

    Args:
        adjacency: The network G (square, non-negative, no self-loops).

    Returns:
        ``(G, 2.0)`` for a symmetric G (no copy), else ``(G + Gᵀ, 1.0)`` in CSR with sorted
        indices.

    Raises:
        ValueError: If G is not square or has a non-zero diagonal (a self-loop would change each
            agent's own curvature, which the block solver does not model).
    """
    g = sp.csr_matrix(adjacency, dtype=np.float64)
    if g.shape[0] != g.shape[1]:
        raise ValueError(f"adjacency must be square, got {g.shape}")
    if g.nnz and np.any(g.diagonal() != 0.0):
        raise ValueError("adjacency must have no self-loops")
    if g.nnz == 0 or abs(g - g.T).max() == 0.0:
        return g, 2.0
    s = (g + g.T).tocsr()
    s.sort_indices()
    return s, 1.0


def perron_bracket(
    matrix: sp.csr_matrix, factor: float, gain: float, *, max_iter: int = 60
) -> tuple[float, float]:
    """Bracket λ_max of the symmetric non-negative ``factor·matrix`` until it decides q < 1 or not.

    Power iteration on S + I from the all-ones vector (the shift keeps every iterate positive,
    isolated nodes included): the Rayleigh quotient is a lower bound of λ_max + 1 and the
    Collatz–Wielandt ratio max_i ((S + I)x)_i / x_i an upper bound (Horn & Johnson, *Matrix
    Analysis*, 8.1.26). It stops when the bracket puts q = λ·gain clearly on one side of 1 (the
    upper end at most half-way from the estimate to 1) or after ``max_iter`` products.

    Args:
        matrix: S / factor in CSR.
        factor: The scale of ``matrix``.
        gain: ρ(K⁻¹Δ) > 0.
        max_iter: Most matrix products.

    Returns:
        ``(low, high)`` with low ≤ λ_max(S) ≤ high.
    """
    n = matrix.shape[0]
    x = np.ones(n)
    low, high = 0.0, math.inf
    for _ in range(max_iter):
        y = factor * (matrix @ x)
        y += x
        # Sums of products by NumPy's pairwise add, not BLAS's dot: OpenBLAS's SkylakeX and Haswell
        # kernels round this dot differently, and the bound steers the planner's sweeps, so its
        # welfare differed in the last bit between CPUs (docs/performance.md, "Across machines").
        low = max(low, float(np.add.reduce(x * y)) / float(np.add.reduce(x * x)) - 1.0)
        high = min(high, float(np.max(y / x)) - 1.0)
        if low * gain >= 1.0 or (high * gain < 1.0 and 1.0 - high * gain >= 0.5 * (1 - low * gain)):
            break
        x = y / np.max(y)
    return low, high


def planner_welfare(
    adjacency: sp.sparray | sp.spmatrix,
    action: np.ndarray,
    values: np.ndarray,
    principal: np.ndarray,
    cost_matrix: np.ndarray,
    externality: np.ndarray,
    peer: np.ndarray,
    goals: np.ndarray | None = None,
) -> np.ndarray:
    """Each agent's welfare w_i(a) without noise or risk premium (the planner's objective).

    Args:
        adjacency: G, (N, N).
        action: Efforts a, (N, d).
        values: True values per principal, (J, d).
        principal: Principal of each agent, (N,).
        cost_matrix: K, (d, d).
        externality: e, (d,).
        peer: δ, (d,).
        goals: θ (N, d) when welfare counts the agents' goals (adds θ_iᵀa_i).

    Returns:
        w_i = v_jᵀa_i + Σ_l G_il eᵀa_l + Σ_k δ_k a_ik (G a)_ik − ½a_iᵀKa_i, (N,).
    """
    g = sp.csr_matrix(adjacency)
    a = np.asarray(action, dtype=float)
    own = np.einsum("ij,ij->i", a, np.asarray(values, dtype=float)[principal])
    received = g @ (a @ externality)
    peer_payoff = np.einsum("ij,ij->i", a * peer, g @ a)
    cost = 0.5 * np.einsum("ij,ij->i", a @ cost_matrix, a)
    goal_payoff = 0.0 if goals is None else np.einsum("ij,ij->i", a, goals)
    return own + received + peer_payoff - cost + goal_payoff


@dataclass(eq=False)
class PlannerNetwork:
    """What the solver needs of the network, computed once per run and reused by every epoch.

    The solver sweeps the agents colour by colour of a greedy colouring of S (neighbours never
    share a colour), so that the agents of one colour can be updated in parallel with the result
    of a sequential sweep in that order (multicolour SOR; Adams & Ortega 1982, "A multi-color SOR
    method for parallel computation"). For speed it works on S renumbered so that each colour's
    agents are contiguous (``order``).

    Attributes:
        matrix: S / factor in CSR, in agent order (S = G + Gᵀ).
        factor: 2 for a symmetric G (then ``matrix`` is G itself), else 1.
        in_weight: Column sums of G, in agent order, (N,).
        order: Agent at each position of the renumbering: colour by colour, by index within one.
        offsets: Where each colour starts in the renumbering, (colours + 1,).
        indptr: Row pointers of the renumbered S / factor.
        indices: Its column indices (sorted within a row).
        data: Its weights; empty when every weight equals ``weight``.
        weight: The common weight (1.0 when ``data`` is not empty).
        bracket: Known bounds ``(low, high)`` of λ_max(S), narrowed as epochs need (None until
            first needed).
    """

    matrix: sp.csr_matrix
    factor: float
    in_weight: np.ndarray
    order: np.ndarray
    offsets: np.ndarray
    indptr: np.ndarray
    indices: np.ndarray
    data: np.ndarray
    weight: float
    bracket: tuple[float, float] | None = None

    @classmethod
    def of(cls, adjacency: sp.sparray | sp.spmatrix) -> PlannerNetwork:
        """Prepare G: its symmetric part, column sums, colouring and renumbering (no draws)."""
        matrix, factor = symmetric_part(adjacency)
        g = sp.csr_matrix(adjacency, dtype=np.float64)
        n = matrix.shape[0]
        colours = _greedy_colours(matrix.indptr, matrix.indices, n)
        order = np.argsort(colours, kind="stable").astype(np.int64)
        rank = np.empty(n, dtype=np.int64)
        rank[order] = np.arange(n)
        counts = np.bincount(colours) if n else np.zeros(0, dtype=np.int64)
        offsets = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
        data = matrix.data
        # Unweighted networks (every stored weight equal) skip reading the weights.
        uniform = data.size > 0 and bool(np.all(data == data[0]))
        indptr, indices, weights = _renumber(
            matrix.indptr, matrix.indices, data, order, rank, not uniform
        )
        return cls(
            matrix,
            factor,
            np.asarray(g.sum(axis=0)).ravel(),
            order,
            offsets,
            indptr,
            indices,
            weights,
            float(data[0]) if uniform else 1.0,
        )


def first_best(
    adjacency: sp.sparray | sp.spmatrix | PlannerNetwork,
    values: np.ndarray,
    principal: np.ndarray,
    costs: np.ndarray,
    substitution: float,
    externality: np.ndarray,
    peer: np.ndarray,
    *,
    start: np.ndarray | None = None,
    goals: np.ndarray | None = None,
    rtol: float = RTOL,
    max_sweeps: int = MAX_SWEEPS,
    omega: float | None = None,
) -> FirstBest:
    """Solve the planner's problem max_{a ≥ 0} W(a) (see the module docstring).

    Args:
        adjacency: The network G, (N, N), non-negative, no self-loops, or its
            :class:`PlannerNetwork` (reused across epochs; its bracket of λ_max is updated).
        values: Each principal's true values v_j, (J, d).
        principal: Each agent's principal, (N,).
        costs: Channel costs c > 0, (d,).
        substitution: s of K in [0, 1).
        externality: e, (d,).
        peer: δ ≥ 0, (d,).
        start: Initial efforts (N, d), e.g. the previous epoch's first best; by default the
            mean-field guess on the peer channels.
        goals: The agents' goals θ (N, d), added to b_i when welfare counts them
            (``metrics.welfare_counts_agent_goals``); None by default.
        rtol: Certified relative accuracy of the welfare: stop when the bound on
            W(a*) − W(a) is at most ``rtol``·|W(a)|.
        max_sweeps: Most sweeps.
        omega: Over-relaxation factor in (0, 2); None for Young's 2/(1 + √(1 − q²)) at the
            estimated modulus q.

    Returns:
        The :class:`FirstBest`.

    Raises:
        ValueError: For ``omega`` outside (0, 2) or a network with self-loops.
    """
    net = adjacency if isinstance(adjacency, PlannerNetwork) else PlannerNetwork.of(adjacency)
    c = np.asarray(costs, dtype=float)
    delta = np.asarray(peer, dtype=float)
    e = np.asarray(externality, dtype=float)
    v = np.ascontiguousarray(values, dtype=float)
    j = np.ascontiguousarray(principal, dtype=np.int64)
    k = substitution_cost_matrix(c, substitution)
    n, d = len(j), len(c)
    gain = peer_gain(k, delta)
    ratio = float(np.max(delta / c)) if d else 0.0
    if omega is not None and not 0.0 < omega < 2.0:
        raise ValueError(f"omega must lie in (0, 2), got {omega}")
    q, growth, bracket = 0.0, 0.0, None
    if gain > 0.0 and net.matrix.nnz:
        low, high = net.bracket or perron_bracket(net.matrix, net.factor, gain)
        concave, not_concave = high * gain < 1.0, low * gain >= 1.0
        if not (concave or (not_concave and (low * ratio >= 1.0 or high * ratio < 1.0))):
            low = high = net.factor * spectral_radius(net.matrix)  # the bracket cannot decide
        bracket = net.bracket = (low, high)
        q, growth = high * gain, high * ratio
        worst = int(np.argmax(delta / c))
        if low * ratio >= 1.0:
            return _without_solution(
                "unbounded",
                f"planner's problem unbounded: peer effect {delta[worst]:g} times "
                f"λ_max(G + Gᵀ) = {low:.4g} is {delta[worst] * low:.4g} ≥ cost {c[worst]:g} "
                f"of channel {worst} (more effort always pays)",
                low * gain,
                low * ratio,
                bracket,
            )
        if low * gain >= 1.0:
            return _without_solution(
                "nonconcave",
                f"planner's problem not concave: λ_max(G + Gᵀ)·ρ(K⁻¹Δ) = {low:.4g} × "
                f"{gain:.4g} = {low * gain:.4g} ≥ 1 with effort substitution {substitution:g} "
                "(bounded on a ≥ 0, but its global optimum is not computed)",
                low * gain,
                low * ratio,
                bracket,
            )
        if omega is None:
            estimate = min(low * gain, 0.999)
            omega = 2.0 / (1.0 + math.sqrt(1.0 - estimate * estimate))
    omega = 1.0 if omega is None else omega
    if start is not None:
        a = np.array(start, dtype=float, copy=True)
    else:
        a = np.zeros((n, d))
        if q > 0.0 and n:
            a[:, delta > 0.0] = _mean_field(net, v, j, e, delta, k, goals)
    if n == 0 or d == 0:
        return FirstBest(a, "ok", "", q, growth, 0, 0.0, bracket)
    active = np.flatnonzero(delta > 0.0).astype(np.int64)
    order = net.order  # the solver works in the renumbering (see PlannerNetwork)
    problem = _Problem(
        net.indptr,
        net.indices,
        net.data,
        v,
        j[order],
        net.in_weight[order],
        e,
        net.factor * delta * net.weight,
        active,
        np.sqrt(c),
        float(substitution),
        np.zeros((0, d)) if goals is None else np.ascontiguousarray(goals[order], dtype=float),
    )
    x = a[order]
    xp = np.ascontiguousarray(x[:, active].T)  # peer channels' efforts, contiguous per channel
    if q == 0.0:  # separable: one pass is the exact solution
        _sweep(problem, 1.0, x, xp, 0, n)
        a[order] = x
        return FirstBest(a, "ok", "", 0.0, 0.0, 1, 0.0, bracket)
    # One colour at a time; its agents share no edge, so its pieces run in parallel and the
    # result is the sequential sweep's whatever the number of threads.
    pieces = []
    for lo, hi in zip(net.offsets[:-1], net.offsets[1:], strict=True):
        parts = max(1, min(thread_count(), int(hi - lo) // 4096))
        pieces.append([(lo + (hi - lo) * t // parts, lo + (hi - lo) * (t + 1) // parts)
                       for t in range(parts)])  # fmt: skip
    blocks = np.array([n * b // MEASURE_BLOCKS for b in range(MEASURE_BLOCKS + 1)], np.int64)
    sweeps, error, todo = 0, math.inf, FIRST_CHECK
    last: tuple[int, float] | None = None
    while sweeps < max_sweeps:
        for _ in range(min(todo, max_sweeps - sweeps)):
            for colour in pieces:
                parallel_map(lambda r: _sweep(problem, omega, x, xp, r[0], r[1]), colour)
            sweeps += 1
        welfare, gap = _welfare_and_gap(blocks, problem, 1.0 - q, x, xp)
        error = gap / abs(welfare) if welfare != 0.0 else (0.0 if gap == 0.0 else math.inf)
        if error <= rtol:
            a[order] = x
            return FirstBest(a, "ok", "", q, growth, sweeps, error, bracket)
        # A certificate costs about a sweep: plan the next one from the observed rate.
        todo = FIRST_CHECK
        if last is not None and 0.0 < error < last[1] and math.isfinite(error):
            rate = (error / last[1]) ** (1.0 / (sweeps - last[0]))
            if rate < 1.0:
                todo = max(1, min(64, math.ceil(math.log(rtol / error) / math.log(rate))))
        last = (sweeps, error)
    return _without_solution(
        "not_converged",
        f"planner's solver did not reach a relative welfare gap of {rtol:g} in {sweeps} sweeps "
        f"(bound {error:.3g}; modulus {q:.6g})",
        q,
        growth,
        bracket,
    )


def _mean_field(
    net: PlannerNetwork,
    values: np.ndarray,
    principal: np.ndarray,
    externality: np.ndarray,
    peer: np.ndarray,
    cost_matrix: np.ndarray,
    goals: np.ndarray | None,
    samples: int = 10_000,
) -> np.ndarray:
    """Mean-field guess of the first best's mean effort on the peer channels (the solver's start).

    The fixed point x̄ = mean_i a*_i(b_i + Δ s_i x̄), s_i the row sums of S, each agent best
    responding as if every neighbour worked x̄, on an evenly spaced sample of agents (no random
    draws). It saves a sweep or two; the solution does not depend on it.
    """
    n = len(principal)
    rows = np.arange(0, n, max(1, n // samples))
    base = values[principal[rows]] + net.in_weight[rows, None] * externality
    if goals is not None:
        base = base + goals[rows]
    degree = net.factor * np.asarray(net.matrix[rows].sum(axis=1)).ravel()
    mask = np.ones(base.shape, dtype=bool)
    mean = np.zeros(len(peer))
    for _ in range(100):
        new = best_response(base + peer * degree[:, None] * mean, cost_matrix, mask).mean(axis=0)
        if np.allclose(new, mean, rtol=1e-6, atol=0.0):
            break
        mean = new
    return new[peer > 0.0]


def _without_solution(
    status: str, reason: str, q: float, growth: float, bracket: tuple[float, float] | None
) -> FirstBest:
    return FirstBest(None, status, reason, q, growth, 0, math.nan, bracket)


def _welfare_and_gap(
    blocks: np.ndarray, problem: _Problem, mu: float, a: np.ndarray, ap: np.ndarray
) -> tuple[float, float]:
    """W(a) and the certified bound on W(a*) − W(a) (partials per fixed block, added in order)."""
    out = np.zeros((len(blocks) - 1, 2))
    parallel_map(
        lambda r: _measure_blocks(r[0], r[1], blocks, problem, mu, a, ap, out),
        block_ranges(len(blocks) - 1),
    )
    return float(out[:, 0].sum()), float(max(out[:, 1].sum(), 0.0))


class _Problem(NamedTuple):
    """The planner's problem as the compiled kernels read it (S = factor·matrix in CSR)."""

    indptr: np.ndarray
    indices: np.ndarray
    data: np.ndarray  # empty when every weight is the same (folded into ``peer``)
    values: np.ndarray  # v_j, (J, d)
    principal: np.ndarray  # (N,)
    in_weight: np.ndarray  # column sums of G, (N,)
    externality: np.ndarray  # e, (d,)
    peer: np.ndarray  # factor·δ (times the common weight when ``data`` is empty), (d,)
    active: np.ndarray  # the channels with δ > 0, (m,)
    root: np.ndarray  # sqrt(c), (d,)
    s: float
    goals: np.ndarray  # θ, (N, d), when welfare counts the agents' goals; else (0, d)


@nb.njit(inline="always", error_model="numpy")
def _reward(i, indptr, indices, data, base, peer, active, ap, r):
    """Fill r with b_i + Δ(S a)_i (only the peer channels enter the neighbour sum)."""
    for k in range(r.shape[0]):
        r[k] = base[k]
    start, stop = indptr[i], indptr[i + 1]
    for q in range(active.shape[0]):
        acc = 0.0
        if data.shape[0] == 0:
            for p in range(start, stop):
                acc += ap[q, indices[p]]
        else:
            for p in range(start, stop):
                acc += data[p] * ap[q, indices[p]]
        k = active[q]
        r[k] += peer[k] * acc


@nb.njit(inline="always", error_model="numpy")
def _base(i, values, principal, in_weight, externality, goals, out):
    """Fill out with b_i = v_{j(i)} + (Σ_l G_li)·e (+ θ_i when ``goals`` is not empty)."""
    j = principal[i]  # indexed, not viewed (values[j]): a view costs an atomic refcount pair
    w = in_weight[i]
    for k in range(out.shape[0]):
        out[k] = values[j, k] + w * externality[k]
    if goals.shape[0]:
        for k in range(out.shape[0]):
            out[k] += goals[i, k]


@nb.njit(inline="always", error_model="numpy")
def _cost_times(x, root, s, out):
    """Fill out with K x for the shared-budget K = D^½((1 − s)I + s·11ᵀ)D^½."""
    total = 0.0
    for k in range(x.shape[0]):
        total += root[k] * x[k]
    for k in range(x.shape[0]):
        out[k] = (1.0 - s) * root[k] * root[k] * x[k] + s * root[k] * total


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _greedy_colours(indptr, indices, n):
    """Greedy colouring in index order: each node takes the least colour its neighbours lack."""
    colours = np.full(n, -1, dtype=np.int64)
    widest = 0
    for i in range(n):
        widest = max(widest, indptr[i + 1] - indptr[i])
    seen = np.full(widest + 2, -1, dtype=np.int64)
    for i in range(n):
        for p in range(indptr[i], indptr[i + 1]):
            c = colours[indices[p]]
            if c >= 0:
                seen[c] = i
        c = 0
        while seen[c] == i:
            c += 1
        colours[i] = c
    return colours


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _renumber(indptr, indices, data, order, rank, weighted):
    """CSR of P S Pᵀ for the renumbering ``order`` (rows sorted; weights only if ``weighted``)."""
    n = order.shape[0]
    out_ptr = np.zeros(n + 1, dtype=np.int64)
    for p in range(n):
        i = order[p]
        out_ptr[p + 1] = out_ptr[p] + indptr[i + 1] - indptr[i]
    out_idx = np.empty(out_ptr[n], dtype=np.int32)  # node ids < 2³¹ (as in SciPy CSR)
    out_data = np.empty(out_ptr[n] if weighted else 0)
    for p in range(n):
        i = order[p]
        start = out_ptr[p]
        length = indptr[i + 1] - indptr[i]
        for t in range(length):  # insertion sort by new index: rows are short
            col = rank[indices[indptr[i] + t]]
            w = data[indptr[i] + t]
            u = t
            while u > 0 and out_idx[start + u - 1] > col:
                out_idx[start + u] = out_idx[start + u - 1]
                if weighted:
                    out_data[start + u] = out_data[start + u - 1]
                u -= 1
            out_idx[start + u] = col
            if weighted:
                out_data[start + u] = w
    return out_ptr, out_idx, out_data


def _sweep(pb: _Problem, omega: float, a: np.ndarray, ap: np.ndarray, lo: int, hi: int) -> None:
    """Projected block-SOR over agents lo..hi (of the renumbering), in order, in place (compiled).

    Agent i's new effort is the exact best response to ω r_i + (1 − ω) K a_i with
    r_i = b_i + Δ(S a)_i at the current efforts: the K-metric projected step
    a_i + ω(K⁻¹r_i − a_i), which raises W for 0 < ω < 2. Small channel counts run a kernel
    compiled for their d (the loops unrolled, as in :mod:`agents.response_jit`).
    """
    _SWEEPS.get(a.shape[1], _sweep_any)(pb, omega, a, ap, lo, hi)


@nb.njit(inline="always", error_model="numpy")
def _sweep_body(pb, omega, a, ap, lo, hi, d):
    """:func:`_sweep` with ``d`` channels (inlined into the kernels below)."""
    # Fields into locals: read through the tuple inside the loop, the kernel runs slower.
    indptr, indices, data = pb.indptr, pb.indices, pb.data
    values, principal, in_weight, externality = (
        pb.values, pb.principal, pb.in_weight, pb.externality
    )  # fmt: skip
    peer, active, root, s = pb.peer, pb.active, pb.root, pb.s
    m = active.shape[0]
    full = np.ones(d, dtype=np.bool_)
    base = np.empty(d)
    r = np.empty(d)
    scaled = np.empty(d)
    ranked = np.empty(d)
    new = np.empty(d)
    for i in range(lo, hi):
        _base(i, values, principal, in_weight, externality, pb.goals, base)
        _reward(i, indptr, indices, data, base, peer, active, ap, r)
        if omega != 1.0:
            total = 0.0
            for k in range(d):
                total += root[k] * a[i, k]
            for k in range(d):  # r ← ω r + (1 − ω) K a_i
                ka = (1.0 - s) * root[k] * root[k] * a[i, k] + s * root[k] * total
                r[k] = omega * r[k] + (1.0 - omega) * ka
        water_fill(r, root, s, full, scaled, ranked, new)
        for k in range(d):
            a[i, k] = new[k]
        for q in range(m):
            ap[q, i] = new[active[q]]


# Written out, not made by a factory: Numba's on-disk cache keys a kernel by its name and place.
@nb.njit(cache=True, nogil=True, error_model="numpy")
def _sweep_any(pb, omega, a, ap, lo, hi):
    _sweep_body(pb, omega, a, ap, lo, hi, a.shape[1])


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _sweep_1(pb, omega, a, ap, lo, hi):
    _sweep_body(pb, omega, a, ap, lo, hi, 1)


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _sweep_2(pb, omega, a, ap, lo, hi):
    _sweep_body(pb, omega, a, ap, lo, hi, 2)


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _sweep_3(pb, omega, a, ap, lo, hi):
    _sweep_body(pb, omega, a, ap, lo, hi, 3)


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _sweep_4(pb, omega, a, ap, lo, hi):
    _sweep_body(pb, omega, a, ap, lo, hi, 4)


_SWEEPS = {1: _sweep_1, 2: _sweep_2, 3: _sweep_3, 4: _sweep_4}


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _measure_blocks(b_lo, b_hi, edges, pb, mu, a, ap, out):
    """Per block: W's part and the gap bound Σ_i max_{x ≥ 0} g_iᵀ(x − a_i) − ½μ‖x − a_i‖²_K.

    g_i = r_i − K a_i is W's gradient; W is μ-strongly concave in the K-norm (μ = 1 − q), so
    W(a*) ≤ W(a) + gᵀ(a* − a) − ½μ‖a* − a‖²_K, and the maximum over x ≥ 0 of the right-hand
    side, separable by agent, bounds W(a*) − W(a). Its maximiser is the best response to
    g_i + μK a_i with cost μK (the water filling with sqrt(μc)).
    """
    indptr, indices, data = pb.indptr, pb.indices, pb.data
    values, principal, in_weight, externality = (
        pb.values, pb.principal, pb.in_weight, pb.externality
    )  # fmt: skip
    peer, active, root, s = pb.peer, pb.active, pb.root, pb.s
    d = a.shape[1]
    full = np.ones(d, dtype=np.bool_)
    base = np.empty(d)
    r = np.empty(d)
    ka = np.empty(d)
    scaled = np.empty(d)
    ranked = np.empty(d)
    x = np.empty(d)
    diff = np.empty(d)
    kd = np.empty(d)
    row = np.empty(d)  # a_i copied out (a view a[i] costs an atomic refcount pair per row)
    root_mu = root * np.sqrt(mu)
    for b in range(b_lo, b_hi):
        lo, hi = edges[b], edges[b + 1]
        welfare = 0.0
        gap = 0.0
        for i in range(lo, hi):
            _base(i, values, principal, in_weight, externality, pb.goals, base)
            _reward(i, indptr, indices, data, base, peer, active, ap, r)
            for k in range(d):
                row[k] = a[i, k]
            _cost_times(row, root, s, ka)
            for k in range(d):
                # b_iᵀa_i − ½a_iᵀKa_i + ½a_iᵀΔ(S a)_i, with Δ(S a)_i = r_i − b_i
                welfare += a[i, k] * (0.5 * base[k] - 0.5 * ka[k] + 0.5 * r[k])
                r[k] += (mu - 1.0) * ka[k]  # g_i + μK a_i
            water_fill(r, root_mu, s, full, scaled, ranked, x)
            for k in range(d):
                diff[k] = x[k] - a[i, k]
            _cost_times(diff, root, s, kd)
            for k in range(d):
                # g = (g + μKa) − μKa
                gap += diff[k] * (r[k] - mu * ka[k]) - 0.5 * mu * diff[k] * kd[k]
        out[b, 0] = welfare
        out[b, 1] = gap


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _welfare_sums(
    indptr, indices, data, a, values, principal, root, s, externality, peer, goals, out
):
    """Add each agent's w_i(a) (:func:`planner_welfare`) to ``out[principal[i]]``, in order."""
    n, d = a.shape
    around = np.empty(d)
    for i in range(n):
        around[:] = 0.0
        received = 0.0
        for p in range(indptr[i], indptr[i + 1]):
            other = indices[p]
            w = data[p]
            for k in range(d):
                around[k] += w * a[other, k]
                received += w * externality[k] * a[other, k]
        j = principal[i]
        total = 0.0
        for k in range(d):
            total += root[k] * a[i, k]
        w_i = received
        for k in range(d):
            cost = (1.0 - s) * root[k] * root[k] * a[i, k] + s * root[k] * total  # (K a_i)_k
            w_i += a[i, k] * (values[j, k] + peer[k] * around[k] - 0.5 * cost)
            if goals.shape[0]:
                w_i += a[i, k] * goals[i, k]
        out[principal[i]] += w_i


# ------------------------------------------------------------------------------ the model's side


def add_planner_columns(model: Any, rows: list[dict[str, Any]]) -> None:
    """Add the planner's columns to a step's ``steps`` rows (one per principal, then ``all``).

    ``welfare_planner`` is the mean over the group's agents of w_i(a*) (the ``welfare``
    column's per-agent-mean convention; the ``all`` row averages over every agent);
    ``welfare_gap = welfare_planner − welfare``; ``price_of_anarchy = welfare_planner / welfare``
    where welfare > 0, NaN otherwise; ``planner_status`` says why ``welfare_planner`` is NaN
    when it is (``unbounded``, ``nonconcave``, ``not_converged``; ``ok`` otherwise), and each
    solve without a solution records a ``planner`` event with the reason and its numbers. The
    first best is solved once per world epoch and set of true values, warm-started from the
    previous one, and cached on ``model._planner_cache``.

    Args:
        model: The :class:`model.model.MesaOptModel` (its world, adjacency, population and
            principals are read; not imported here: this module sits below the model core).
        rows: The step's rows, in :func:`model.metrics.aggregate_steps` order; updated in place.
    """
    cache: dict[str, Any] = getattr(model, "_planner_cache", None) or {}
    values = np.stack([p.true_values for p in model.principals]).astype(float)
    world = model.world
    key = (world.epoch, values.tobytes())
    # With welfare_counts_agent_goals the agents' goals are social value, and the first best
    # changes whenever selection changes them: then the goals are part of the cache key.
    counts_goals = bool(getattr(model.config.metrics, "welfare_counts_agent_goals", False))
    goals = model.population.theta if counts_goals else None
    stale = cache.get("key") != key or (
        counts_goals and not np.array_equal(cache.get("goals"), goals)
    )
    if stale:
        network = cache.get("network")
        if network is None:  # the network is fixed for the run: prepared once
            network = PlannerNetwork.of(model.adjacency)
        previous = cache.get("solution")
        start = previous.action if previous is not None and previous.action is not None else None
        principal = model.population.principal
        solution = first_best(
            network,
            values,
            principal,
            world.costs,
            world.substitution,
            world.externality,
            world.peer,
            start=start,
            goals=goals,
        )
        if solution.action is not None:
            n_groups = len(model.principals)
            g = model.adjacency
            sums = np.zeros(n_groups)
            _welfare_sums(
                g.indptr,
                g.indices,
                g.data,
                solution.action,
                values,
                np.ascontiguousarray(principal, dtype=np.int64),
                np.sqrt(world.costs),
                float(world.substitution),
                world.externality,
                world.peer,
                np.zeros((0, world.d)) if goals is None else np.ascontiguousarray(goals),
                sums,
            )
            counts = np.bincount(principal, minlength=n_groups).astype(float)
            with np.errstate(invalid="ignore", divide="ignore"):  # NaN for an empty group
                means = np.append(sums / counts, sums.sum() / max(len(principal), 1))
        else:
            means = np.full(len(model.principals) + 1, np.nan)
            # The rows say which case (planner_status); the events table keeps the numbers.
            model.record_event("planner", field=solution.status, detail=solution.reason)
        cache = {
            "key": key,
            "goals": None if goals is None else goals.copy(),
            "network": network,
            "solution": solution,
            "means": means,
        }
        model._planner_cache = cache
    solution, means = cache["solution"], cache["means"]
    for row, planner in zip(rows, means, strict=True):
        welfare = row["welfare"]
        row["welfare_planner"] = float(planner)
        row["welfare_gap"] = float(planner - welfare)
        row["price_of_anarchy"] = float(planner / welfare) if welfare > 0 else math.nan
        row["planner_status"] = solution.status
