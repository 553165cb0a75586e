"""A step's measurement: what the measures need, the compiled pass, the loss decomposition, rows.

Steps 4 and 6 of :mod:`model.model`. :func:`measure_step` assembles what the per-agent measures
need from the model's state — the aligned benchmark agent's surplus per principal (for the
principal loss), the risk premium ½ρβ²σ_M², the channels each principal's values call hostile
(adversarial Goodhart), the ranges of actions each principal saw in selection (extremal Goodhart)
— runs the compiled outcome kernel (:mod:`model.measures_jit`, defined by
:mod:`model.measures`), splits the principal loss into its causes (:mod:`model.decomposition`:
every agent on snapshot steps, the agents with a stale world model and a fixed sample every step;
causal Goodhart is the world-model part, the primary category the largest part), and hands the
``steps`` rows (:func:`model.metrics.aggregate_steps`) and the agent snapshot (:func:`agent_rows`)
to the recorder.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from mesaopt.agents.kinds import Direct, Planning, kind_names
from mesaopt.agents.response import best_response
from mesaopt.model.decomposition import DECOMPOSITION_SAMPLE, fixed_sample
from mesaopt.model.decomposition_jit import decompose_agents
from mesaopt.model.kernel_arrays import (
    Graph,
    MeasureArrays,
    PlanArrays,
    PopulationArrays,
    PrincipalArrays,
    StepArrays,
    WorldArrays,
)
from mesaopt.model.measures import CATEGORIES, FLAGS, PARTS
from mesaopt.model.measures_jit import (
    METRIC_ROWS,
    DecomposedRows,
    outcomes_and_measures,
    record_decomposition,
)
from mesaopt.model.metrics import aggregate_steps
from mesaopt.model.neighbour_effort import CarriedEffort
from mesaopt.model.noise import metric_noise_variance
from mesaopt.model.planner import add_planner_columns
from mesaopt.model.tables import agent_snapshot

if TYPE_CHECKING:
    from mesaopt.agents.principal import Principal
    from mesaopt.model.model import MesaOptModel


@dataclass(frozen=True)
class StepContracts:
    """The contracts in force in a step, as arrays indexed by principal.

    Attributes:
        alpha: Fixed pay α_j, (J,).
        beta: Slope β_j on the proxy, (J,).
        values: True values v_j per channel, (J, d).
    """

    alpha: np.ndarray
    beta: np.ndarray
    values: np.ndarray  # (J, d) true values

    @classmethod
    def of(cls, principals: list[Principal]) -> StepContracts:
        """The principals' current contracts and true values."""
        return cls(
            alpha=np.array([p.alpha for p in principals], dtype=float),
            beta=np.array([p.beta for p in principals], dtype=float),
            values=np.stack([p.true_values for p in principals]).astype(float),
        )


def measure_step(
    model: MesaOptModel,
    t: int,
    contracts: StepContracts,
    planning: Planning,
    noise: np.ndarray,
    own_best: np.ndarray,
    caught: np.ndarray,
) -> CarriedEffort:
    """Steps 4 and 6: outcomes, payoffs, losses, categories and Goodhart measures; rows out.

    Args:
        model: The model (its world, population, principals; it receives the rows).
        t: The step.
        contracts: The contracts in force this step.
        planning: The step's planning: ``reward`` is every agent's marginal reward
            θ + βm + δ⊙(G a) in the current world with ``neighbour_effort`` = G a of the previous
            step, ``action`` the efforts chosen.
        noise: Realized output noise, (N, d).
        own_best: Each agent's payoff at its own optimum, (N,).
        caught: This step's audit catches (a catch counts even when the penalty is 0), (N,).

    Returns:
        G a of this step's efforts, gathered for the peer payoff, for the next step's plan
        (:mod:`model.neighbour_effort`).

    Per-agent definitions: :func:`model.measures.outcomes_and_measures`.
    """
    world = model.world
    pop = model.population
    action, reward = planning.action, planning.reward
    neighbour_effort = planning.neighbour_effort
    cost = world.cost_matrix
    principals = model.principals
    values = contracts.values

    # Principal loss: surplus (value net of effort cost) of an aligned benchmark agent —
    # objective = the principal's true values, full capacity, exact, current world — minus
    # the realized surplus. The benchmark maximizes that surplus, so the loss is ≥ 0 in
    # expectation.
    best = best_response(values, cost, np.ones_like(values, dtype=bool))
    benchmark = np.einsum("jk,jk->j", values, best) - 0.5 * np.einsum("jk,jk->j", best @ cost, best)
    # Var(mᵀε); an unmeasured channel adds nothing even when its own variance is infinite.
    # β = 0 carries no risk even when σ_M² is infinite (Student-t, df ≤ 2; scenario checks), and
    # neither does any β for risk-neutral agents (ρ = 0; 0·∞ would be NaN).
    sigma_m2 = metric_noise_variance(world.metric, world.noise_var, np.ones(model.d, bool))
    rho = model.config.agents.risk_aversion
    with np.errstate(invalid="ignore"):
        risk = np.where(
            (contracts.beta == 0) | (rho == 0),
            0.0,
            0.5 * rho * contracts.beta**2 * sigma_m2,
        )
    # Adversarial Goodhart: value destroyed on channels the metric rewards and the principal
    # punishes, and on harmful channels beyond the principal's capacity.
    beyond = np.stack([~p.world_model.perceives(p.capacity) for p in principals])
    hostile = (values < 0) & ((world.metric > 0) | beyond)
    # Extremal Goodhart: acting outside the range of actions seen in selection.
    low = np.stack([p.action_low for p in principals])
    high = np.stack([p.action_high for p in principals])
    slack = 1e-9 + 1e-6 * np.maximum(high - low, 0.0)

    n = pop.size
    metrics = np.empty((len(METRIC_ROWS), n))
    flags = np.empty((n, len(FLAGS)), dtype=bool)
    primary = np.empty(n, dtype=np.int64)
    outside = np.empty(n, dtype=bool)
    adjacency = model.adjacency
    carried = CarriedEffort(adjacency, np.empty((n, model.d)), np.empty((n, model.d)))
    sums = outcomes_and_measures(
        Graph.of(adjacency, model.in_weight),
        WorldArrays.of(world),
        PopulationArrays.of(pop, model.perceives(world), model.is_control),
        PrincipalArrays(
            alpha=contracts.alpha,
            beta=contracts.beta,
            risk_premium=risk,
            penalty=np.array([p.config.audit.penalty for p in principals], dtype=float),
            values=values,
            capacity=np.array([p.capacity for p in principals], dtype=np.int64),
            benchmark=benchmark,
            hostile=hostile,
            low=low - slack,
            high=high + slack,
            trans_cosine=float(model.config.metrics.trans_cosine),
        ),
        StepArrays(
            PlanArrays(neighbour_effort, reward, action, own_best, planning.optimum), noise, caught
        ),
        MeasureArrays(
            metrics,
            flags,
            primary,
            outside,
            harm=np.empty(n),
            neighbour_effort=carried.neighbour_effort,
            gathered_from=carried.gathered_from,
        ),
        deceptive=pop.deceptive,
        welfare_counts_agent_goals=model.config.metrics.welfare_counts_agent_goals,
    )

    # The principal loss split into its causes (model.decomposition): every agent on snapshot
    # steps; else the fixed sample (the steps table's part means) and every agent of a kind
    # that can go stale whose world model is stale (causal Goodhart is its world-model part).
    stale = model.can_go_stale & (pop.epoch != world.epoch)
    sample = decomposition_sample(model)
    snapshot = model.snapshots_on and t % model.config.run.agent_every == 0
    if snapshot:
        decomposed = np.arange(n)
    else:
        chosen = stale.copy()
        chosen[sample] = True
        decomposed = np.flatnonzero(chosen)
    parts = decompose_agents(  # the compiled model.decomposition.decompose
        planning,
        decomposed,
        values,
        noise,
        has_world_model=model.can_go_stale,
        plans_exactly=(pop.kind == Direct.code) & (pop.power == 0),
    )
    # Causal Goodhart (the world-model part if stale, exactly 0 if fresh), added into the
    # kernel's group sums in row order, and the primary categories: codes, names only on demand
    # (an object array costs ~10 ms at 1e6). An agent keeps the category of the last step it
    # was decomposed at.
    causal_row = METRIC_ROWS.index("goodhart_causal")
    record_decomposition(
        DecomposedRows(
            rows=decomposed,
            parts=parts,
            stale=stale,
            principal=pop.principal,
            capacity=pop.capacity,
            principal_capacity=np.array([p.capacity for p in principals], dtype=np.int64),
            benchmark=benchmark,
            causal=metrics[causal_row],
            sums=sums.metrics,
            causal_column=causal_row,
            primary=model.primary_code,
        )
    )
    in_sample = np.searchsorted(decomposed, sample)

    per_agent = dict(zip(METRIC_ROWS, metrics, strict=True))
    model.last_agent_metrics = per_agent
    rows = aggregate_steps(
        step=t,
        metrics=metrics,
        principal_of=pop.principal,
        principals=principals,
        flags=flags,
        action=action,
        channel_names=world.names,
        outside=outside,
        stale=stale,
        caught=caught,
        selection_stats=model.selection_stats,
        top_quantile=model.config.metrics.top_quantile,
        sample_rows=sample,
        sample_parts=parts[:, in_sample],
        sample_primary=model.primary_code[sample],
        sums=sums,
    )
    add_planner_columns(model, rows)  # the first best and the price of anarchy
    model.last_steps = rows
    model.record("steps", rows)
    if snapshot:
        model.record(
            "agents",
            agent_rows(model, t, slice(None), flags, stale, outside, action, per_agent, parts),
        )
    return carried


def agent_rows(
    model: MesaOptModel,
    t: int,
    rows: slice | np.ndarray,
    flags: np.ndarray,
    stale: np.ndarray,
    outside: np.ndarray,
    action: np.ndarray,
    per_agent: dict[str, np.ndarray],
    parts: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Columns of the ``agents`` table for ``rows`` (the other arrays are already sliced).

    Args:
        model: The model.
        t: The snapshot's step.
        rows: Which agents (``slice(None)`` for all).
        flags: Their flags, in :data:`model.measures.FLAGS` order.
        stale: Whether each plans with a stale world model.
        outside: Whether each acts outside its principal's selection range.
        action: Their efforts.
        per_agent: Their per-agent metrics.
        parts: Their principal-loss parts, (len(PARTS), R) (None: no rows).

    Returns:
        The columns (:func:`model.tables.agent_snapshot`).
    """
    pop = model.population
    index = np.arange(pop.size, dtype=np.int64)[rows]
    if parts is None:
        parts = np.zeros((len(PARTS), len(index)))
    return agent_snapshot(
        step=t,
        index=index,
        principal_names=np.array([p.name for p in model.principals], dtype=object),
        principal=pop.principal[rows],
        kind_names=kind_names()[pop.kind[rows]],
        capacity=pop.capacity[rows].copy(),
        category_names=CATEGORIES,
        primary=model.primary_code[rows],
        flag_names=FLAGS,
        flags=flags,
        deployed_at=pop.deployed_at[rows].copy(),
        stale=stale,
        outside=outside,
        channel_names=model.world.names,
        action=action,
        theta=pop.theta[rows],
        per_agent=per_agent,
        parts=dict(zip(PARTS, parts, strict=True)),
    )


def decomposition_sample(model: MesaOptModel) -> np.ndarray:
    """The agents whose loss parts feed the ``steps`` table every step (drawn once per run).

    Every agent when there are at most :data:`model.decomposition.DECOMPOSITION_SAMPLE`;
    otherwise a stratified sample (:func:`model.decomposition.fixed_sample`) drawn, on the first
    measured step, from a generator spawned from the run's (``model.rng.spawn(1)[0]``): spawning
    derives a child seed sequence from the run's seed sequence and draws nothing from the run's
    own stream, so every other random number of the run is the same with or without the sample.

    Args:
        model: The model (the sample is kept as ``model.decomposition_sample``).

    Returns:
        The sampled agents, sorted.
    """
    sample = getattr(model, "decomposition_sample", None)
    if sample is None:
        pop = model.population
        if pop.size <= DECOMPOSITION_SAMPLE:
            sample = np.arange(pop.size, dtype=np.int64)
        else:
            sample = fixed_sample(
                model.rng.spawn(1)[0], pop.principal, len(model.principals), DECOMPOSITION_SAMPLE
            )
        model.decomposition_sample = sample
    return sample
