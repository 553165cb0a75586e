"""Compiled row kernels: every agent's choice of effort in one parallel sweep over the population.

The NumPy kernels of :mod:`agents.response` are the readable definitions and the test oracles; a
step of the model runs the same arithmetic through the Numba kernels here, because a step over
NumPy arrays makes some forty passes over (N, d) arrays and is memory bound (profiled: no part
above 12 %, ~60 ms per step at 1e5 agents). One pass per row keeps a row's numbers in registers.

Rows are split into one range per thread (:func:`model.parallel.row_ranges`) and the compiled
row loop runs on each range without the GIL; a row's result never depends on another row's of
the same step, so the output is the same whatever the number of threads.

The shared-effort-budget cost matrix ``K = D^½((1 − s)I + s·11ᵀ)D^½`` (the only kind the model
builds, :func:`model.channels.substitution_cost_matrix`; ``s = 0`` is a diagonal ``K``) is passed
as ``root = sqrt(diag K)`` and ``s``.
"""

from __future__ import annotations

from typing import NamedTuple

import numba as nb
import numpy as np

from mesaopt.model.kernel_arrays import (
    Graph,
    PlanArrays,
    PopulationArrays,
    WorldArrays,
    check_layout,
)
from mesaopt.model.neighbour_effort import gather_rows
from mesaopt.model.parallel import parallel_map, row_ranges

__all__ = ["OwnWorldRows", "plan_actions", "plans_in_own_worlds", "water_fill"]


#: The fields of :mod:`model.kernel_arrays` these kernels were written for (see
#: :func:`model.kernel_arrays.check_layout`: Numba's cache cannot tell reordered fields apart).
KERNEL_ARRAYS_LAYOUT = "353e5d478d3f"
check_layout(KERNEL_ARRAYS_LAYOUT, __name__)


@nb.njit(cache=True, inline="always", error_model="numpy")
def water_fill(
    r: np.ndarray,
    root: np.ndarray,
    s: float,
    perceive: np.ndarray,
    scaled: np.ndarray,
    ranked: np.ndarray,
    out: np.ndarray,
) -> None:
    """Exact best response of one row under a shared effort budget (see ``_water_filling``).

    Same arithmetic, in the same order, as :func:`agents.response._water_filling`: scaled rewards
    ``u = r / sqrt(c)`` (−∞ off the perceived channels), sorted in descending order by the same
    compare-exchange network (branch free: rewards are random, so branches mispredict); the
    shared marginal cost ``s·T`` of the largest active set whose last channel still beats it;
    then ``a_k = max(u_k − sT, 0) / ((1 − s)·sqrt(c_k))``.

    For finite rewards only (the model's rewards always are); with a NaN the sort differs from
    the NumPy version's. Editing this function: Numba's on-disk cache of a kernel in another file
    that inlines it (:mod:`agents.sandbox_jit`, :mod:`model.decomposition_jit`,
    :mod:`model.planner`) is not invalidated by the edit — delete the ``*.nbi``/``*.nbc`` files
    in ``agents/__pycache__`` and ``model/__pycache__`` after changing it.

    Args:
        r: Marginal rewards of the row, (d,).
        root: sqrt of the channel costs, (d,).
        s: Substitution strength, 0 ≤ s < 1.
        perceive: The row's perception mask, (d,).
        scaled: Scratch space, (d,).
        ranked: Scratch space, (d,).
        out: Receives the action, (d,).
    """
    d = r.shape[0]
    for c in range(d):
        scaled[c] = r[c] / root[c] if perceive[c] else -np.inf
        ranked[c] = scaled[c]
    for top in range(d - 1):
        for c in range(d - 1, top, -1):
            hi = max(ranked[c - 1], ranked[c])
            ranked[c] = min(ranked[c - 1], ranked[c])
            ranked[c - 1] = hi
    total = 0.0
    running = 0.0
    for j in range(1, d + 1):
        running += ranked[j - 1]
        candidate = running / (1.0 - s + s * j)
        total = candidate if ranked[j - 1] > s * candidate else total
    shared = s * total
    for c in range(d):
        out[c] = max(scaled[c] - shared, 0.0) / ((1.0 - s) * root[c])


def plan_actions(
    graph: Graph,
    world: WorldArrays,
    population: PopulationArrays,
    beta: np.ndarray,
    plan: PlanArrays,
    *,
    gathered: bool = False,
) -> None:
    """Step 3 for every row: neighbours' effort, marginal reward, new effort, own optimum.

    The NumPy reference is :func:`agents.response.plan_actions`. Per row i with principal j:

    * ``G a``: the weighted sum of the neighbours' previous efforts (CSR row i, in index order,
      as SciPy's sparse product sums it), unless ``gathered``;
    * ``r = θ_i + β_j·m + δ ⊙ (G a)_i``, the marginal reward in the current world;
    * a direct agent's effort: the exact best response to r on its perceived channels (current
      world model; the caller re-plans stale and best-of-k planners);
    * a control agent's effort: ``max(a + γ_i·(r − K(a + ε_last)), 0)`` on its perceived channels
      (:func:`agents.response.control_update` fed with :func:`agents.response.reward_gradient`);
    * ``½ rᵀa*``, the agent's payoff at its optimum a* over every channel (the mesa-loss
      benchmark: at the optimum ``a*ᵀKa* = rᵀa*``).

    Args:
        graph: The adjacency G (``in_weight`` is not read).
        world: The current world's channels (``externality`` is not read).
        population: The agents at the start of the step (``capacity`` is not read).
        beta: Contract slope per principal, (J,).
        plan: Receives G a, r, the new efforts, ½ rᵀa* and a*.
        gathered: ``plan.neighbour_effort`` already holds G a of the previous efforts (carried
            from the last step's outcomes: :mod:`model.neighbour_effort`); it is read, not
            gathered again.
    """
    rows_kernel = _PLAN_ROWS.get(population.theta.shape[1], _plan_rows)
    gather = not gathered
    parallel_map(
        lambda rows: rows_kernel(*rows, graph, world, population, beta, plan, gather),
        row_ranges(len(population.theta)),
    )


@nb.njit(inline="always", error_model="numpy")
def _plan_body(
    lo: int,
    hi: int,
    d: int,
    graph: Graph,
    world: WorldArrays,
    population: PopulationArrays,
    beta: np.ndarray,
    plan: PlanArrays,
    gather: bool,
) -> None:
    """:func:`plan_actions` for rows ``lo..hi`` with ``d`` channels (inlined into the kernels).

    Rows are read and written element by element, through scratch vectors, never through row
    views (``reward[i]``): every view Numba makes in the loop costs an atomic increment and
    decrement of the array's reference count, and with two threads on the same arrays those
    contend for one cache line (measured: the kernel ran 2.2× faster without them, bit for bit
    the same; docs/performance.md).
    """
    indptr, indices, weights = graph.indptr, graph.indices, graph.data
    previous, neighbour_effort = population.last_action, plan.neighbour_effort
    full = np.ones(d, dtype=np.bool_)
    mask = np.empty(d, dtype=np.bool_)
    r = np.empty(d)
    scaled = np.empty(d)
    ranked = np.empty(d)
    best = np.empty(d)
    chosen = np.empty(d)
    for start in range(lo, hi, _GATHER_TILE):
        stop = min(hi, start + _GATHER_TILE)
        if gather:
            gather_rows(start, stop, d, indptr, indices, weights, previous, neighbour_effort)
        _plan_tile(start, stop, d, world, population, beta, plan, full, mask, r, scaled, ranked,
                   best, chosen)  # fmt: skip


#: Rows whose neighbours' efforts are gathered before they are planned. A tight loop of gathers
#: keeps more of the loads that miss the cache in flight at once than gathers spread between
#: water fillings (measured at 1e6 agents: the plan kernel 15 % faster; docs/performance.md).
_GATHER_TILE = 2048


@nb.njit(inline="always", error_model="numpy")
def _plan_tile(
    start, stop, d, world, population, beta, plan, full, mask, r, scaled, ranked, best, chosen
):
    """Rewards, own optimum and effort of rows ``start..stop`` (their ``G a`` gathered)."""
    metric, peer, cost = world.metric, world.peer, world.cost
    root, s = world.root, world.substitution
    theta, principal, perceive = population.theta, population.principal, population.perceive
    is_control, gain = population.is_control, population.gain
    previous, last_noise = population.last_action, population.last_noise
    neighbour_effort, reward, action, own_best, optimum = (
        plan.neighbour_effort, plan.reward, plan.action, plan.own_best, plan.optimum
    )  # fmt: skip
    for i in range(start, stop):
        b = beta[principal[i]]
        for k in range(d):
            r[k] = theta[i, k] + b * metric[k] + peer[k] * neighbour_effort[i, k]
            reward[i, k] = r[k]
        water_fill(r, root, s, full, scaled, ranked, best)
        value = 0.0
        for k in range(d):
            value += r[k] * best[k]
            optimum[i, k] = best[k]
        own_best[i] = 0.5 * value
        if is_control[i]:
            for k in range(d):
                pushed = 0.0
                for m in range(d):
                    # Marginal cost felt at last step's realized output y = a + ε.
                    pushed += cost[k, m] * (previous[i, m] + last_noise[i, m])
                felt = r[k] - pushed
                step = max(previous[i, k] + gain[i] * felt, 0.0)
                action[i, k] = step if perceive[i, k] else 0.0
        else:
            everything = True
            for k in range(d):
                mask[k] = perceive[i, k]
                everything &= mask[k]
            if everything:  # perceives every channel: its best response is the optimum
                for k in range(d):
                    action[i, k] = best[k]
            else:
                water_fill(r, root, s, mask, scaled, ranked, chosen)
                for k in range(d):
                    action[i, k] = chosen[k]


# One compiled kernel per small channel count, where d is a constant that the compiler unrolls
# the per-channel loops over (measured: 13-18 % faster at d = 4, docs/performance.md), and one
# for any d. Each is compiled on its first call only. They are written out rather than made by
# a factory: Numba's on-disk cache keys a function by its name and place in the source, so
# closures made in a loop would share (and overwrite) one cache entry.
@nb.njit(cache=True, nogil=True, error_model="numpy")
def _plan_rows(
    lo: int,
    hi: int,
    graph: Graph,
    world: WorldArrays,
    population: PopulationArrays,
    beta: np.ndarray,
    plan: PlanArrays,
    gather: bool,
) -> None:
    """:func:`plan_actions` for rows ``lo..hi``, any d (compiled; runs without the GIL)."""
    _plan_body(lo, hi, population.theta.shape[1], graph, world, population, beta, plan, gather)


# The per-d kernels take the arguments of _plan_rows.
@nb.njit(cache=True, nogil=True, error_model="numpy")
def _plan_rows_1(lo, hi, graph, world, population, beta, plan, gather):
    _plan_body(lo, hi, 1, graph, world, population, beta, plan, gather)


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _plan_rows_2(lo, hi, graph, world, population, beta, plan, gather):
    _plan_body(lo, hi, 2, graph, world, population, beta, plan, gather)


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _plan_rows_3(lo, hi, graph, world, population, beta, plan, gather):
    _plan_body(lo, hi, 3, graph, world, population, beta, plan, gather)


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _plan_rows_4(lo, hi, graph, world, population, beta, plan, gather):
    _plan_body(lo, hi, 4, graph, world, population, beta, plan, gather)


_PLAN_ROWS = {1: _plan_rows_1, 2: _plan_rows_2, 3: _plan_rows_3, 4: _plan_rows_4}


class OwnWorldRows(NamedTuple):
    """Rows to plan exactly, each in its own world model (:func:`plans_in_own_worlds`).

    Attributes:
        rows: The agents, (R,) int64.
        model: Each row's world model, an index into the stacks below, (R,) int64.
        theta: Every agent's objective, (N, d).
        beta_of: Every agent's contract slope, (N,).
        neighbour_effort: Every agent's ``G a`` of the previous step, (N, d).
        capacity: Every agent's capacity, (N,) int64.
        metric: Proxy weights of each world model, (E, d).
        peer: Peer-effect strengths of each world model, (E, d).
        level: Channel levels of each world model, (E, d) int64.
        cost: ``diag K`` of each world model, (E, d).
        root: ``sqrt(diag K)`` of each world model, (E, d).
        substitution: Each world model's s as :func:`agents.response.best_response` reads it
            off K, (E,).
        diagonal: Whether each world model's K is diagonal (best_response's ``r⁺/c`` path), (E,).
        out: Receives the efforts: row ``out_row[q]`` gets row q's, (·, d).
        out_row: The row of ``out`` each row's effort goes to, (R,) int64 (``arange(R)`` for an
            (R, d) ``out``; ``rows`` to write straight into the population's (N, d) efforts).
    """

    rows: np.ndarray
    model: np.ndarray
    theta: np.ndarray
    beta_of: np.ndarray
    neighbour_effort: np.ndarray
    capacity: np.ndarray
    metric: np.ndarray
    peer: np.ndarray
    level: np.ndarray
    cost: np.ndarray
    root: np.ndarray
    substitution: np.ndarray
    diagonal: np.ndarray
    out: np.ndarray
    out_row: np.ndarray


def plans_in_own_worlds(x: OwnWorldRows) -> None:
    """Exact best responses of ``x.rows``, each in its own world model, into ``x.out``.

    Row r (agent i, world model e) plays the exact best response to
    ``r = θ_i + β_i·m_e + δ_e ⊙ (G a)_i`` on the channels with ``level_e ≤ C_i``: what a direct
    planner with a stale world model does after a regime change. The NumPy reference is
    :meth:`agents.kinds.Direct.exact_plans_numpy` (the same rewards, :func:`agents.response.
    best_response`). Given the s that best_response reads off each K, and its ``max(r, 0)/c`` path
    for a diagonal K, the arithmetic is the same, so the plans are equal bit for bit.

    Args:
        x: The rows, the population's arrays and the world models' channels.
    """
    kernel = _OWN_WORLD_ROWS.get(x.theta.shape[1], _own_world_rows)
    parallel_map(lambda span: kernel(span[0], span[1], x), row_ranges(len(x.rows)))


@nb.njit(inline="always", error_model="numpy")
def _own_world_body(lo: int, hi: int, d: int, x: OwnWorldRows) -> None:
    """:func:`plans_in_own_worlds` for rows ``lo..hi`` with ``d`` channels (inlined below).

    Every field is read into a local before the loop and rows element by element (no row
    views): see :func:`_plan_body`.
    """
    rows, model, theta, beta_of = x.rows, x.model, x.theta, x.beta_of
    neighbour_effort, capacity, metric, peer = x.neighbour_effort, x.capacity, x.metric, x.peer
    level, cost, roots, substitution = x.level, x.cost, x.root, x.substitution
    diagonal, out, out_row = x.diagonal, x.out, x.out_row
    r = np.empty(d)
    mask = np.empty(d, dtype=np.bool_)
    root = np.empty(d)
    scaled = np.empty(d)
    ranked = np.empty(d)
    plan = np.empty(d)
    for q in range(lo, hi):
        i = rows[q]
        e = model[q]
        b = beta_of[i]
        for k in range(d):
            r[k] = theta[i, k] + b * metric[e, k] + peer[e, k] * neighbour_effort[i, k]
            mask[k] = capacity[i] >= level[e, k]
            root[k] = roots[e, k]
        o = out_row[q]
        if diagonal[e]:  # as best_response: max(r, 0) / c, times the mask
            for k in range(d):
                out[o, k] = max(r[k], 0.0) / cost[e, k] * (1.0 if mask[k] else 0.0)
        else:
            water_fill(r, root, substitution[e], mask, scaled, ranked, plan)
            for k in range(d):
                out[o, k] = plan[k]


# Per channel count, as _PLAN_ROWS (with d a constant the unrolled water filling also lets the
# compiler drop the reference counts of its scratch vectors; docs/performance.md).
@nb.njit(cache=True, nogil=True, error_model="numpy")
def _own_world_rows(lo: int, hi: int, x: OwnWorldRows) -> None:
    """:func:`plans_in_own_worlds` for rows ``lo..hi`` (compiled; runs without the GIL)."""
    _own_world_body(lo, hi, x.theta.shape[1], x)


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _own_world_rows_1(lo: int, hi: int, x: OwnWorldRows) -> None:
    _own_world_body(lo, hi, 1, x)


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _own_world_rows_2(lo: int, hi: int, x: OwnWorldRows) -> None:
    _own_world_body(lo, hi, 2, x)


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _own_world_rows_3(lo: int, hi: int, x: OwnWorldRows) -> None:
    _own_world_body(lo, hi, 3, x)


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _own_world_rows_4(lo: int, hi: int, x: OwnWorldRows) -> None:
    _own_world_body(lo, hi, 4, x)


_OWN_WORLD_ROWS = {
    1: _own_world_rows_1,
    2: _own_world_rows_2,
    3: _own_world_rows_3,
    4: _own_world_rows_4,
}
