"""Compiled principal-loss decomposition: the Shapley parts of many agents in one pass over rows.

The definition, with its equations and literature, is :mod:`model.decomposition` (NumPy):
``decompose(agent_attributes(...))``. This module computes the same parts for the same agents,
and ``tests/model/test_decomposition.py`` holds it to that definition. Why compiled: after a
regime change most direct planners are stale, and every stale agent is decomposed every step (its
world-model part is causal Goodhart); at 10⁵ agents the NumPy definition took ~65 ms per step
(measured: ~17 ms gathering each agent's attributes into (R, d) arrays, ~49 ms for the plans, the
surpluses and the Shapley sums), more than the rest of the step. One pass per row keeps a row's
numbers in registers and gathers nothing.

Per row (agent i of principal j, world model e; e = 0 is the current world):

* the plans without the goals player depend on (j, C_i, e) only: :func:`decompose_agents`
  solves them once per combination in NumPy (:func:`agents.response.best_response`);
* the plans with it are exact best responses by water filling
  (:func:`agents.response_jit.water_fill`, the shared-budget K of every world), with the
  marginal reward θ_i + β_j m_e + δ_e ⊙ (G a)_i and the perception C_i ≥ level_e of world e;
  an exact direct planner's effort is its own plan a_GCW (and a_GC when e = 0);
* the three-player Shapley sums, then the kind and noise parts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import numba as nb
import numpy as np

from mesaopt.agents.planning import Planning
from mesaopt.agents.response import best_response
from mesaopt.agents.response_jit import water_fill
from mesaopt.model.decomposition import CAPACITY, GOALS, WORLD_MODEL, surplus
from mesaopt.model.measures import PARTS
from mesaopt.model.parallel import parallel_map, row_ranges

if TYPE_CHECKING:
    from mesaopt.model.channels import World

__all__ = ["decompose_agents"]


class _Rows(NamedTuple):
    """Every array the row kernel reads or writes (whole-population arrays are indexed by i)."""

    rows: np.ndarray  # (R,) the agents
    model: np.ndarray  # (R,) world-model index e of each row
    principal: np.ndarray  # (N,)
    capacity: np.ndarray  # (N,)
    theta: np.ndarray  # (N, d)
    beta_of: np.ndarray  # (N,)
    neighbour_effort: np.ndarray  # (N, d)
    reward: np.ndarray  # (N, d) marginal reward in the current world
    action: np.ndarray  # (N, d)
    noise: np.ndarray  # (N, d)
    has_plan: np.ndarray  # (N,) bool: the action is the exact plan a_GCW
    metric: np.ndarray  # (E, d) per world model
    peer: np.ndarray  # (E, d)
    level: np.ndarray  # (E, d)
    root: np.ndarray  # (E, d) sqrt(diag K_e)
    substitution: float  # s, the same in every epoch
    cost: np.ndarray  # (d, d) the current world's K (surpluses)
    values: np.ndarray  # (J, d)
    optimum: np.ndarray  # (N, d) every agent's best response on every channel, current world
    table: np.ndarray  # (4, C): f(∅), f(C), f(W), f(CW) of each (principal, capacity, model)
    code: np.ndarray  # (R,) each row's column of the table
    parts: np.ndarray  # (5, R) out


def decompose_agents(
    planning: Planning,
    rows: np.ndarray,
    values: np.ndarray,
    noise: np.ndarray,
    has_world_model: np.ndarray,
    plans_exactly: np.ndarray,
) -> np.ndarray:
    """The Shapley parts of the principal loss of agents ``rows``, (len(PARTS), R).

    The same as ``decompose(agent_attributes(planning, rows, values[principal[rows]],
    noise[rows], has_world_model, plans_exactly))`` of :mod:`model.decomposition`, to rounding.

    Args:
        planning: The step's planning (current world, every world epoch, the population, each
            agent's reward and the neighbours' efforts of this step, the efforts chosen).
        rows: The agents, (R,) int, sorted.
        values: Each principal's true values, (J, d).
        noise: Every agent's realized output noise, (N, d).
        has_world_model: Agents of a kind whose world model can go stale, (N,) bool.
        plans_exactly: Agents whose effort is their exact plan (exact direct planners), (N,).

    Returns:
        The parts, (5, R), rows in :data:`model.measures.PARTS` order.
    """
    pop = planning.population
    world = planning.world
    rows = np.asarray(rows, dtype=np.int64)
    epoch = np.where(has_world_model[rows], pop.epoch[rows], world.epoch)
    # World models as indices: 0 the current world, then the older epochs in use.
    in_use = np.flatnonzero(np.bincount(epoch))  # = np.unique(epoch): epochs are small ints
    epochs = [world.epoch, *(int(e) for e in in_use if e != world.epoch)]
    model = np.zeros(len(rows), dtype=np.int64)
    for e in range(1, len(epochs)):
        model[epoch == epochs[e]] = e
    worlds = [world, *(planning.worlds[e] for e in epochs[1:])]

    # The four coalitions without the goals player, once per (principal, capacity, world model).
    capacity = pop.capacity[rows]
    principal = pop.principal[rows]
    levels = int(capacity.max(initial=0)) + 1
    code = (principal * levels + capacity) * len(epochs) + model
    present = np.flatnonzero(np.bincount(code))
    table = _benchmark_table(values, present, levels, worlds)

    parts = np.empty((len(PARTS), len(rows)))
    data = _Rows(
        rows=rows,
        model=model,
        principal=pop.principal,
        capacity=pop.capacity,
        theta=pop.theta,
        beta_of=planning.beta_of,
        neighbour_effort=planning.neighbour_effort,
        reward=planning.reward,
        action=planning.action,
        noise=noise,
        has_plan=np.asarray(plans_exactly, dtype=np.bool_),
        metric=np.stack([w.metric for w in worlds]).astype(float),
        peer=np.stack([w.peer for w in worlds]).astype(float),
        level=np.stack([w.level for w in worlds]).astype(np.int64),
        root=np.stack([np.sqrt(w.costs) for w in worlds]).astype(float),
        substitution=float(world.substitution),
        cost=np.ascontiguousarray(world.cost_matrix, dtype=float),
        values=np.ascontiguousarray(values, dtype=float),
        optimum=(
            planning.optimum
            if planning.optimum is not None
            else best_response(planning.reward, world.cost_matrix, np.ones(pop.theta.shape, bool))
        ),
        table=table,
        code=code,
        parts=parts,
    )
    kernel = _DECOMPOSE_ROWS.get(pop.theta.shape[1], _decompose_rows)
    parallel_map(lambda span: kernel(span[0], span[1], data), row_ranges(len(rows)))
    return parts


#: Tables of :func:`_benchmark_table` by their inputs: a run asks for the same few every step
#: (the same principals, capacities and world models), and each costs eight small best
#: responses in NumPy (~1 ms per step at any number of agents, measured).
_TABLES: dict[tuple, np.ndarray] = {}


def _benchmark_table(
    values: np.ndarray, present: np.ndarray, levels: int, worlds: list[World]
) -> np.ndarray:
    """f(∅), f(C), f(W), f(CW) of each (principal, capacity, world model) code in ``present``.

    Code ``(j·levels + C)·len(worlds) + e``: principal j's surplus, in the current world
    ``worlds[0]``, of its own values' best response on the channels of the coalition: every
    channel, or those capacity C perceives (C), in the current world or in world model e (W).

    Returns:
        The table, (4, max code + 1) (columns of absent codes are 0).
    """
    key = (
        values.dtype.str,
        values.shape,
        values.tobytes(),
        present.tobytes(),
        levels,
        tuple((w.cost_matrix.tobytes(), w.level.tobytes()) for w in worlds),
    )
    table = _TABLES.get(key)
    if table is not None:
        return table
    world = worlds[0]
    j_of, rest = np.divmod(present, levels * len(worlds))
    c_of, e_of = np.divmod(rest, len(worlds))
    table = np.zeros((4, int(present.max(initial=-1)) + 1))
    v = values[j_of]
    k_now = world.cost_matrix
    every = np.ones(v.shape, dtype=bool)
    for slot, coalition in enumerate((0, CAPACITY, WORLD_MODEL, CAPACITY | WORLD_MODEL)):
        plan = np.empty(v.shape)
        for e in np.unique(e_of):
            mine = e_of == e
            used = worlds[int(e)] if coalition & WORLD_MODEL else world
            perceive = used.perceives(c_of[mine]) if coalition & CAPACITY else every[mine]
            plan[mine] = best_response(v[mine], used.cost_matrix, perceive)
        table[slot, present] = surplus(v, k_now, plan)
    if len(_TABLES) >= 64:
        _TABLES.clear()
    _TABLES[key] = table
    return table


@nb.njit(inline="always", error_model="numpy")
def _surplus(values: np.ndarray, cost: np.ndarray, a: np.ndarray) -> float:
    """``vᵀa − ½aᵀKa`` of one row."""
    d = a.shape[0]
    total = 0.0
    for k in range(d):
        pushed = 0.0
        for m in range(d):
            pushed += cost[k, m] * a[m]
        total += (values[k] - 0.5 * pushed) * a[k]
    return total


@nb.njit(inline="always", error_model="numpy")
def _decompose_body(lo: int, hi: int, d: int, x: _Rows) -> None:
    """The parts of rows ``lo..hi`` with ``d`` channels (inlined into the kernels below).

    Rows are copied into scratch vectors, not viewed (``x.reward[i]``), and every field is read
    into a local once, before the loop: each view or field read that Numba makes in the loop is a
    new reference to an array, an atomic increment and decrement of its count, and the threads
    contend for that count's cache line (:func:`agents.response_jit._plan_body`).
    """
    rows, model, principal, capacity = x.rows, x.model, x.principal, x.capacity
    theta, beta_of, neighbour_effort = x.theta, x.beta_of, x.neighbour_effort
    current_reward, chosen, realized_noise = x.reward, x.action, x.noise
    has_plan, metric, peer, level = x.has_plan, x.metric, x.peer, x.level
    cost, values, optimum = x.cost, x.values, x.optimum
    table, code, parts = x.table, x.code, x.parts
    root = x.root
    s = x.substitution
    every = np.ones(d, dtype=np.bool_)
    perceive = np.empty(d, dtype=np.bool_)
    v = np.empty(d)
    action = np.empty(d)
    current = np.empty(d)  # the row's marginal reward in the current world
    reward = np.empty(d)  # ... and as its stale world model has it
    root_now = np.empty(d)
    root_then = np.empty(d)
    plan = np.empty(d)
    scaled = np.empty(d)
    ranked = np.empty(d)
    worth = np.empty(8)
    for k in range(d):
        root_now[k] = root[0, k]
    for r in range(lo, hi):
        i = rows[r]
        e = model[r]
        for k in range(d):
            v[k] = values[principal[i], k]
            action[k] = chosen[i, k]
            current[k] = current_reward[i, k]
        c = code[r]
        worth[0] = table[0, c]
        worth[CAPACITY] = table[1, c]
        worth[WORLD_MODEL] = table[2, c]
        worth[CAPACITY | WORLD_MODEL] = table[3, c]
        realized = _surplus(v, cost, action)
        # Goals, current world: every channel (the plan kernel's optimum a*, the same water
        # filling of the same reward), then its own perception.
        for k in range(d):
            plan[k] = optimum[i, k]
        worth[GOALS] = _surplus(v, cost, plan)
        if has_plan[i] and e == 0:
            worth[GOALS | CAPACITY] = realized
        else:
            for k in range(d):
                perceive[k] = capacity[i] >= level[0, k]
            water_fill(current, root_now, s, perceive, scaled, ranked, plan)
            worth[GOALS | CAPACITY] = _surplus(v, cost, plan)
        if e == 0:  # no stale world model: the world-model player changes nothing
            worth[GOALS | WORLD_MODEL] = worth[GOALS]
            worth[GOALS | CAPACITY | WORLD_MODEL] = worth[GOALS | CAPACITY]
        else:
            for k in range(d):
                reward[k] = (
                    theta[i, k] + beta_of[i] * metric[e, k] + peer[e, k] * neighbour_effort[i, k]
                )
                perceive[k] = capacity[i] >= level[e, k]
                root_then[k] = root[e, k]
            water_fill(reward, root_then, s, every, scaled, ranked, plan)
            worth[GOALS | WORLD_MODEL] = _surplus(v, cost, plan)
            if has_plan[i]:
                worth[GOALS | CAPACITY | WORLD_MODEL] = realized
            else:
                water_fill(reward, root_then, s, perceive, scaled, ranked, plan)
                worth[GOALS | CAPACITY | WORLD_MODEL] = _surplus(v, cost, plan)
        # Shapley values of the loss game L(T) = f(∅) − f(T): weights 1/3, 1/6, 1/6, 1/3.
        for p in range(3):
            bit = 1 << p
            total = 0.0
            for coalition in range(8):
                if not coalition & bit:
                    members = (coalition & 1) + ((coalition >> 1) & 1) + ((coalition >> 2) & 1)
                    weight = 1.0 / 3.0 if members != 1 else 1.0 / 6.0
                    total += weight * (worth[coalition] - worth[coalition | bit])
            parts[p, r] = total
        parts[3, r] = worth[GOALS | CAPACITY | WORLD_MODEL] - realized
        luck = 0.0
        for k in range(d):
            luck -= v[k] * realized_noise[i, k]
        parts[4, r] = luck


# One compiled kernel per small channel count, as for the plan kernel: with d a constant the
# compiler unrolls the per-channel loops, and with no loops left inside the water fillings it
# can drop the reference counts of the scratch vectors that each inlined call takes (measured at
# 1e5 agents past a regime change: with d a run-time value those counts were half the kernel's
# time; docs/performance.md). Written out, not made by a factory: Numba's on-disk cache keys a
# function by its name and place in the source.
@nb.njit(cache=True, nogil=True, error_model="numpy")
def _decompose_rows(lo: int, hi: int, x: _Rows) -> None:
    """The parts of rows ``lo..hi``, any number of channels (compiled; runs without the GIL)."""
    _decompose_body(lo, hi, x.theta.shape[1], x)


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _decompose_rows_1(lo: int, hi: int, x: _Rows) -> None:
    _decompose_body(lo, hi, 1, x)


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _decompose_rows_2(lo: int, hi: int, x: _Rows) -> None:
    _decompose_body(lo, hi, 2, x)


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _decompose_rows_3(lo: int, hi: int, x: _Rows) -> None:
    _decompose_body(lo, hi, 3, x)


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _decompose_rows_4(lo: int, hi: int, x: _Rows) -> None:
    _decompose_body(lo, hi, 4, x)


_DECOMPOSE_ROWS = {
    1: _decompose_rows_1,
    2: _decompose_rows_2,
    3: _decompose_rows_3,
    4: _decompose_rows_4,
}
