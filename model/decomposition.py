"""The principal loss split exactly into its causes by the Shapley value.

An agent's principal loss (:func:`model.measures.outcomes_and_measures`) is the surplus of its
principal's aligned benchmark agent less the agent's realized surplus,

    L = S(a_bench) − (S(a) + v_jᵀε),    S(a) = v_jᵀa − ½aᵀK_now a,

where the benchmark agent has the principal's true values v_j as its marginal reward, perceives
every channel, plans exactly and knows the current world, and surplus is always counted with the
principal's true values in the current world (output y = a + ε is linear in the noise, so the
realized surplus is S(a) + v_jᵀε). The agent differs from the benchmark in five attributes, the
players of a cooperative game whose worth is the loss they cause together:

* **goals** — its marginal reward r = θ_i + β_j m + δ⊙(G a)_i instead of v_j. Objective,
  incentive pay and peer pull are one player: together they are what the agent maximises, and
  the contract and the neighbours' pull enter the loss only through what the agent wants;
* **capacity** — its perception mask instead of every channel;
* **world model** — the channel parameters it plans with (``model.worlds[epoch_i]``: cost,
  metric, peer effects, levels) instead of the current world's. Only kinds that can go stale
  (``can_go_stale`` includes ``"world_model"``) have one; every other agent plans in the
  current world and this part is exactly 0 for it;
* **kind/power** — its actual effort a instead of the exact plan with all its actual
  attributes a_GCW: the additive deviation S(a_GCW) − S(a). Control lag, best-of-k sampling
  and any registered kind are covered this way without re-running them under counterfactual
  attributes (which a control law's history or a sampler's draws would not allow);
* **noise** — the realized output noise: the additive part −v_jᵀε.

For a coalition T of the first three players the counterfactual plan a_T is the exact best
response (:func:`agents.response.best_response`, which water-fills the model's shared-budget K)
of an agent with the attributes in T taken from the agent and the rest from the benchmark, the
neighbours' efforts held at this step's values; its worth is f(T) = S(a_T). The loss game is

    L(T) = f(∅) − f(T ∩ {G, C, W}) + [kind ∈ T]·(f(GCW) − S(a)) + [noise ∈ T]·(−v_jᵀε),

with f(∅) the benchmark surplus, so L(∅) = 0 and L(all) is the principal loss. The Shapley value
(Shapley 1953, "A Value for n-Person Games") gives each player its average marginal contribution
over all orders in which the players could be switched from the benchmark's attribute to the
agent's: it is order-free, the parts sum exactly to the loss (efficiency), and a player whose
attribute equals the benchmark's contributes nothing in any order (null player). That is the
Shapley decomposition of a difference in outcomes of Shorrocks (2013, "Decomposition procedures
for distributional analysis: a unified framework based on the Shapley value", Journal of Economic
Inequality 11) and the attribution of Lundberg & Lee (2017, "A Unified Approach to Interpreting
Model Predictions", SHAP). It is exact here: the three planning players need 2³ = 8 plans; the
kind and noise players are additive (they act only on the realized effort and output), so their
Shapley values are their own terms. The world-model part is causal Goodhart (Manheim &
Garrabrant 2018, "Categorizing Variants of Goodhart's Law"): value lost because the agent's model
of how actions cause outcomes is wrong.

Cost: the plans of the four coalitions without the goals player depend only on the principal,
the capacity and the world model, so they are solved once per such combination; for agents
without a stale world model the world-model coalitions equal the others; an exact direct
planner's effort is its own a_GCW. At most four plans per agent remain.

The model decomposes every agent on snapshot steps, every stale agent every step (its world-model
part is ``goodhart_causal``), and a fixed sample of agents every step for the ``steps`` table
(:func:`fixed_sample`, :func:`model.metrics.aggregate_steps`). The step runs the compiled
:func:`model.decomposition_jit.decompose_agents`, which computes
``decompose(agent_attributes(...))`` row by row; the tests hold it to this definition.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import factorial

import numpy as np

from mesaopt.agents.planning import Planning
from mesaopt.agents.response import best_response
from mesaopt.model.measures import PARTS

__all__ = [
    "CAPACITY",
    "DECOMPOSITION_SAMPLE",
    "GOALS",
    "WORLD_MODEL",
    "Attributes",
    "agent_attributes",
    "coalition_surpluses",
    "decompose",
    "fixed_sample",
    "shapley",
    "surplus",
]

#: Coalition bits of the three planning players: coalition T is the integer with these bits set.
GOALS, CAPACITY, WORLD_MODEL = 1, 2, 4

#: Agents decomposed every step for the ``steps`` table: all of them up to this many, else a
#: fixed sample of about this many (:func:`fixed_sample`).
DECOMPOSITION_SAMPLE = 4096

#: Smallest sample of one principal's agents (all of them if it has fewer), so that every
#: principal's means have a standard error.
MIN_PER_PRINCIPAL = 32


@dataclass(frozen=True)
class Attributes:
    """The agents to decompose, one row each, with their attributes and the benchmark's.

    Attributes:
        values: The principal's true values v_j, (R, d): the benchmark's marginal reward and
            the yardstick of every surplus.
        reward: The agent's marginal reward in the current world, (R, d).
        model_reward: Its marginal reward as its world model says it is, (R, d).
        perceive: The channels it perceives in the current world, (R, d) bool.
        model_perceive: The channels it perceives in its world model, (R, d) bool.
        model: Index into ``costs`` of its world model's cost matrix, (R,) int; 0 = the current
            world, for which ``model_reward`` and ``model_perceive`` must equal ``reward`` and
            ``perceive``.
        costs: Cost matrices, (E, d, d); ``costs[0]`` is the current world's K.
        action: Its actual effort, (R, d).
        noise: Its realized output noise, (R, d).
        plan: Its exact plan with all its actual attributes (a_GCW), (R, d), read where
            ``has_plan``; or None.
        has_plan: Rows whose ``plan`` is given, (R,) bool; or None.
        group: Rows with equal ``group`` share ``values``, ``perceive``, ``model_perceive`` and
            ``model`` (the plans without the goals player are solved once per group); or None.
    """

    values: np.ndarray
    reward: np.ndarray
    model_reward: np.ndarray
    perceive: np.ndarray
    model_perceive: np.ndarray
    model: np.ndarray
    costs: np.ndarray
    action: np.ndarray
    noise: np.ndarray
    plan: np.ndarray | None = None
    has_plan: np.ndarray | None = None
    group: np.ndarray | None = None


def surplus(values: np.ndarray, cost: np.ndarray, action: np.ndarray) -> np.ndarray:
    """The principal's surplus of each row's effort: ``S(a) = vᵀa − ½aᵀKa``, (R,).

    Args:
        values: v_j per row, (R, d).
        cost: The current world's K, (d, d).
        action: Efforts, (R, d).
    """
    return np.einsum("ij,ij->i", values - 0.5 * (action @ cost), action)


def _plans(reward: np.ndarray, perceive: np.ndarray, model: np.ndarray, costs: np.ndarray):
    """Exact best responses, each row with the cost matrix ``costs[model[row]]``."""
    out = np.empty(reward.shape)
    for e in np.unique(model):
        rows = model == e
        out[rows] = best_response(reward[rows], costs[e], perceive[rows])
    return out


def coalition_surpluses(attributes: Attributes) -> np.ndarray:
    """The worth f(T) = S(a_T) of every coalition T of the planning players, (8, R).

    Row T of the result is the surplus of the exact plan of an agent whose goals (bit
    :data:`GOALS`), capacity (:data:`CAPACITY`) and world model (:data:`WORLD_MODEL`) are the
    agent's where the bit is set and the benchmark's elsewhere, evaluated with the principal's
    values in the current world. Row 0 is the benchmark surplus; row 7 is S(a_GCW) (from
    ``attributes.plan`` where given).

    Args:
        attributes: The agents.

    Returns:
        The surpluses, (8, R).
    """
    x = attributes
    n, d = x.action.shape
    k_now = x.costs[0]
    out = np.empty((8, n))
    every = np.ones((n, d), dtype=bool)
    current = np.zeros(n, dtype=np.int64)
    stale = np.flatnonzero(x.model != 0)

    # Without the goals player: the plan depends on the row's group only; solve one row each.
    if x.group is None:
        first, inverse = np.arange(n), np.arange(n)
    else:
        _, first, inverse = np.unique(x.group, return_index=True, return_inverse=True)
    v = x.values[first]
    shapes = {  # coalition: (perception, cost index) of the benchmark-goals plan
        0: (every[first], current[first]),
        CAPACITY: (x.perceive[first], current[first]),
        WORLD_MODEL: (every[first], x.model[first]),
        CAPACITY | WORLD_MODEL: (x.model_perceive[first], x.model[first]),
    }
    for coalition, (perceive, model) in shapes.items():
        plan = _plans(v, perceive, model, x.costs)
        out[coalition] = surplus(v, k_now, plan)[inverse]

    # With the goals player: one plan per row. Without a stale world model, W changes nothing;
    # a given plan is a_GCW (and a_GC too when the world model is the current world).
    known = np.zeros(n, dtype=bool) if x.has_plan is None or x.plan is None else x.has_plan
    out[GOALS] = surplus(x.values, k_now, best_response(x.reward, k_now, every))
    solve = np.flatnonzero(~known | (x.model != 0))
    out[GOALS | CAPACITY, solve] = surplus(
        x.values[solve], k_now, best_response(x.reward[solve], k_now, x.perceive[solve])
    )
    given = np.flatnonzero(known)
    if len(given):
        worth = surplus(x.values[given], k_now, x.plan[given])
        out[GOALS | CAPACITY | WORLD_MODEL, given] = worth
        fresh = given[x.model[given] == 0]
        out[GOALS | CAPACITY, fresh] = worth[x.model[given] == 0]
    out[GOALS | WORLD_MODEL] = out[GOALS]
    missing = np.flatnonzero(~known)
    out[GOALS | CAPACITY | WORLD_MODEL, missing] = out[GOALS | CAPACITY, missing]
    if len(stale):
        values, reward, model = x.values[stale], x.model_reward[stale], x.model[stale]
        out[GOALS | WORLD_MODEL, stale] = surplus(
            values, k_now, _plans(reward, every[stale], model, x.costs)
        )
        unknown = stale[~known[stale]]
        out[GOALS | CAPACITY | WORLD_MODEL, unknown] = surplus(
            x.values[unknown],
            k_now,
            _plans(x.model_reward[unknown], x.model_perceive[unknown], x.model[unknown], x.costs),
        )
    return out


def shapley(game: np.ndarray) -> np.ndarray:
    """Exact Shapley values of k players from the worth of every coalition.

    ``φ_i = Σ_{T ∌ i} |T|!(k − |T| − 1)!/k! · (game[T ∪ {i}] − game[T])``, coalition T being the
    integer whose bit i is set when player i is in it (Shapley 1953).

    Args:
        game: Worth of each coalition, (2^k, R): R games at once, ``game[0]`` the empty one.

    Returns:
        The Shapley values, (k, R); they sum to ``game[-1] − game[0]``.
    """
    size = game.shape[0]
    k = size.bit_length() - 1
    if size != 1 << k:
        raise ValueError(f"game needs 2^k coalitions, got {size}")
    weight = [factorial(s) * factorial(k - s - 1) / factorial(k) for s in range(k)]
    values = np.zeros((k, *game.shape[1:]))
    for i in range(k):
        bit = 1 << i
        for coalition in range(size):
            if not coalition & bit:
                members = coalition.bit_count()
                values[i] += weight[members] * (game[coalition | bit] - game[coalition])
    return values


def decompose(attributes: Attributes) -> np.ndarray:
    """Split each row's principal loss into its Shapley parts, (len(PARTS), R).

    Rows in :data:`model.measures.PARTS` order: goals, capacity, world model (the three-player
    Shapley value of the loss game ``f(∅) − f(T)``), kind ``S(a_GCW) − S(a)`` and noise
    ``−vᵀε``. They sum to ``f(∅) − S(a) − vᵀε``, the principal loss (f(∅) is the benchmark
    surplus, here recomputed row by row, so the sum equals the ``principal_loss`` column to
    rounding); each is zero (to rounding; exactly for the world-model part of an agent without a
    stale world model) when the agent's attribute equals the benchmark's.

    Args:
        attributes: The agents.

    Returns:
        The parts, (5, R).
    """
    worth = coalition_surpluses(attributes)
    planning = shapley(worth[0] - worth)  # goals, capacity, world model
    realized = surplus(attributes.values, attributes.costs[0], attributes.action)
    kind = worth[GOALS | CAPACITY | WORLD_MODEL] - realized
    noise = -np.einsum("ij,ij->i", attributes.values, attributes.noise)
    parts = np.concatenate([planning, kind[None], noise[None]])
    assert len(parts) == len(PARTS)
    return parts


def agent_attributes(
    planning: Planning,
    rows: np.ndarray,
    values: np.ndarray,
    noise: np.ndarray,
    has_world_model: np.ndarray,
    plans_exactly: np.ndarray,
) -> Attributes:
    """The attributes of agents ``rows`` of the model in this step, to :func:`decompose`.

    Args:
        planning: The step's planning (current world, every world epoch, the population, each
            agent's reward and the neighbours' efforts of this step, the efforts chosen).
        rows: The agents, (R,) int.
        values: Their principals' true values, (R, d).
        noise: Their realized output noise, (R, d).
        has_world_model: Agents of a kind whose world model can go stale, (N,) bool; the others
            plan in the current world.
        plans_exactly: Agents whose effort is the exact plan with all their attributes (exact
            direct planners), (N,) bool.

    Returns:
        The attributes; ``group`` codes (principal, capacity, world model).
    """
    pop = planning.population
    world = planning.world
    capacity = pop.capacity[rows]
    epoch = np.where(has_world_model[rows], pop.epoch[rows], world.epoch)
    # World models as indices into ``costs``: 0 the current world, then the older epochs in use.
    epochs = [world.epoch, *(int(e) for e in np.unique(epoch) if e != world.epoch)]
    model = np.zeros(len(rows), dtype=np.int64)
    for e in range(1, len(epochs)):
        model[epoch == epochs[e]] = e
    reward = planning.reward[rows]
    perceive = world.perceives(capacity)
    model_reward = reward.copy()
    model_perceive = perceive.copy()
    for e in range(1, len(epochs)):
        mine = np.flatnonzero(model == e)
        old = planning.worlds[epochs[e]]
        model_reward[mine] = planning.reward_in(old, rows[mine])
        model_perceive[mine] = old.perceives(capacity[mine])
    costs = np.stack([world.cost_matrix, *(planning.worlds[e].cost_matrix for e in epochs[1:])])
    exact = plans_exactly[rows]
    group = (pop.principal[rows] * (int(capacity.max(initial=0)) + 1) + capacity) * len(
        epochs
    ) + model
    return Attributes(
        values=values,
        reward=reward,
        model_reward=model_reward,
        perceive=perceive,
        model_perceive=model_perceive,
        model=model,
        costs=costs,
        action=planning.action[rows],
        noise=noise,
        plan=planning.action[rows] if exact.any() else None,
        has_plan=exact,
        group=group,
    )


def fixed_sample(
    rng: np.random.Generator, principal_of: np.ndarray, n_principals: int, size: int
) -> np.ndarray:
    """The agents decomposed every step for the ``steps`` table: every agent, or a fixed sample.

    With at most ``size`` agents, all of them (the means are exact, their standard errors 0).
    Otherwise a stratified random sample without replacement, drawn once: principal j gets
    ``max(round(size·n_j/N), min(n_j, MIN_PER_PRINCIPAL))`` of its n_j agents (proportional
    allocation, so that the ``all`` row's pooled sample is nearly self-weighting; a floor so that a
    small principal still has a standard error).

    Args:
        rng: The generator to draw from (the model spawns one from the run's generator).
        principal_of: Each agent's principal, (N,).
        n_principals: J.
        size: The sample size aimed at.

    Returns:
        The sampled agents, sorted, (S,) int64.
    """
    n = len(principal_of)
    if n <= size:
        return np.arange(n, dtype=np.int64)
    picked = []
    for j in range(n_principals):
        members = np.flatnonzero(principal_of == j)
        share = round(size * len(members) / n)
        m = min(len(members), max(share, MIN_PER_PRINCIPAL))
        picked.append(rng.choice(members, size=m, replace=False))
    return np.sort(np.concatenate(picked)).astype(np.int64)
