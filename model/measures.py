"""What is measured per agent, in NumPy: the definition the compiled :mod:`model.measures_jit` runs.

The step computes these measures with the compiled kernels of :mod:`model.measures_jit`; the
functions here are their readable definitions, with the same names, and the tests hold the
kernels to them (``tests/model/test_measures_jit.py``). Every column is also described in
``docs/tables.md``. The simulator knows everything: these measures use ground truth that
principals never see.

Payoff accounting, per agent i of principal j and per step, with output ``y = a + ε``:

- pay ``w_i = α_j + β_j·M_i`` (proxy ``M_i = mᵀy_i``) is a transfer from principal to agent, and
  so is an audit penalty;
- principal profit = V_i − w_i + penalty_i (value ``V_i = v_jᵀy_i``);
- private payoff = ``θ_iᵀa_i − ½a_iᵀKa_i − (ρ/2)β_j²σ_M² + Σ_k δ_k a_ik (G a_·k)_i``;
- utility U_i = w_i + private payoff + externality received − penalty_i;
- welfare = V_i + externality received + peer payoff − ½a_iᵀKa_i − (ρ/2)β_j²σ_M²: what the
  agent's work is worth to the society of principals and agents, pay and penalties being
  transfers. The agent's intrinsic goals ``θ_iᵀa_i`` (``agent_goal_payoff``) are not social value
  by default — selection put them into the agent, and counting them would make gaming look
  valuable — and enter welfare only with ``metrics.welfare_counts_agent_goals = true``. So
  profit + utility = welfare + agent_goal_payoff (without the switch).

The contract and the risk premium are those of the linear-exponential-normal (LEN) agency model:
an agent with CARA risk aversion ρ paid ``α + βM`` with ``Var M = σ_M²`` values the pay at its
certainty equivalent, the mean less ``(ρ/2)β²σ_M²`` (Holmström & Milgrom 1987, "Aggregation and
Linearity in the Provision of Intertemporal Incentives"; the multitask version with an effort
cost matrix K, Holmström & Milgrom 1991). The peer term ``Σ_k δ_k a_ik (G a)_ik`` is the
complementarity of the linear-quadratic network game (Ballester, Calvó-Armengol & Zenou 2006,
"Who's Who in Networks"), realized with the neighbours' efforts of the same step (as the
externality is, and as the planner's welfare W(a) counts it); an agent *chose* its effort against
last step's (the reward r, which the mesa loss keeps). The Goodhart measures follow the four
variants of Manheim & Garrabrant (2018, "Categorizing Variants of Goodhart's Law"); the mesa loss
the inner-alignment framing of Hubinger et al. (2019, "Risks from Learned Optimization").
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from mesaopt.model.kernel_arrays import (
    Graph,
    PopulationArrays,
    PrincipalArrays,
    StepArrays,
    WorldArrays,
)

__all__ = [
    "ALIGNED_TOLERANCE",
    "CATEGORIES",
    "FLAGS",
    "PARTS",
    "categorize",
    "group_sums",
    "outcomes_and_measures",
    "primary_category",
]

#: Flags of a mesa-optimizer relative to its principal (any number may hold at once), in the
#: order of the ``is_<flag>`` columns. The compiled kernel writes its flags in this order.
FLAGS = ("super", "sub", "trans", "deceptive", "aligned")

#: The parts of the principal loss (:mod:`model.decomposition`): due to the agent's goals, its
#: capacity, its world model, its optimizer kind and power, and the output noise. In the order of
#: the ``loss_<part>`` columns.
PARTS = ("goals", "capacity", "world_model", "kind", "noise")

#: Primary categories: the cause of the largest part of an agent's principal loss
#: (:func:`primary_category`), in the order of the ``n_<category>`` columns.
CATEGORIES = ("super", "sub", "trans", "stale", "kind", "aligned")

#: A part counts as a cause of loss only above this (times max(1, |benchmark surplus|)): parts
#: that are rounding errors of exact plans (~1e-15) never name a category.
ALIGNED_TOLERANCE = 1e-9


def categorize(
    agent_capacity: np.ndarray,
    principal_capacity: np.ndarray,
    objective: np.ndarray,
    principal_values: np.ndarray,
    trans_cosine: float,
    deceptive: np.ndarray | None = None,
) -> np.ndarray:
    """Flag each agent super / sub / trans / deceptive / aligned relative to its principal.

    ``super``: C_i > C_j (it perceives channels its principal cannot). ``sub``: C_i < C_j.
    ``trans``: ``cos(θ_i, v_j) = θ_iᵀv_j / (‖θ_i‖‖v_j‖) < trans_cosine`` (its goals differ from the
    principal's true values, through selection on a proxy or private goals; the cosine of a zero
    vector counts as 0). ``deceptive``: it told its sandbox from deployment
    (``Population.deceptive``). ``aligned``: none of these. Flags are not exclusive; the primary
    category is the cause of the largest part of the loss (:func:`primary_category`).

    Args:
        agent_capacity: C_i, (N,).
        principal_capacity: C_j of each agent's principal, (N,).
        objective: θ_i, (N, d).
        principal_values: v_j of each agent's principal, (N, d).
        trans_cosine: Cosine threshold below which goals count as misaligned.
        deceptive: Deceptive agents, (N,) bool (None: none).

    Returns:
        Flags (N, 5) bool in the order of :data:`FLAGS`.
    """
    norms = np.sqrt(
        np.einsum("ij,ij->i", objective, objective)
        * np.einsum("ij,ij->i", principal_values, principal_values)
    )
    dot = np.einsum("ij,ij->i", objective, principal_values)
    cosine = np.divide(dot, norms, out=np.zeros_like(dot), where=norms > 0)
    is_super = agent_capacity > principal_capacity
    is_sub = agent_capacity < principal_capacity
    is_trans = cosine < trans_cosine
    is_deceptive = (
        np.zeros(len(agent_capacity), dtype=bool) if deceptive is None else deceptive.astype(bool)
    )
    aligned = ~(is_super | is_sub | is_trans | is_deceptive)
    return np.column_stack([is_super, is_sub, is_trans, is_deceptive, aligned])


def primary_category(
    parts: np.ndarray,
    agent_capacity: np.ndarray,
    principal_capacity: np.ndarray,
    benchmark: np.ndarray,
) -> np.ndarray:
    """Each agent's primary category: the cause of the largest part of its principal loss.

    The parts are those of :func:`model.decomposition.decompose` (rows in :data:`PARTS` order).
    The largest of the goals, capacity, world-model and kind parts names the category:

    * goals → ``trans`` (its marginal reward is not the principal's values);
    * capacity → ``super`` if C_i > C_j, else ``sub`` (the part compares the agent's perception
      with every channel; its sign relative to the principal's capacity names it, as the flags
      do; C_i = C_j counts as ``sub``: it lacks what the benchmark agent has);
    * world model → ``stale`` (it plans with the channel parameters of a world that is gone:
      causal Goodhart);
    * kind → ``kind`` (its optimizer falls short of the exact plan: control lag, best-of-k);
    * ``aligned`` when none of these is positive (above :data:`ALIGNED_TOLERANCE` times
      ``max(1, |benchmark|)``).

    The noise part never names a category: it is the luck of the draw (mean zero), not an
    attribute of the agent; an agent whose only loss is bad luck is ``aligned``.

    Args:
        parts: The loss parts, (len(PARTS), N).
        agent_capacity: C_i, (N,).
        principal_capacity: C_j of each agent's principal, (N,).
        benchmark: The benchmark surplus of each agent's principal, (N,).

    Returns:
        Category codes, (N,) int64, indices into :data:`CATEGORIES`.
    """
    causes = parts[: PARTS.index("noise")]  # goals, capacity, world model, kind
    largest = np.argmax(causes, axis=0)
    top = np.take_along_axis(causes, largest[None, :], axis=0)[0]
    capacity_code = np.where(
        agent_capacity > principal_capacity, CATEGORIES.index("super"), CATEGORIES.index("sub")
    )
    by_part = np.stack(
        [
            np.full(len(largest), CATEGORIES.index("trans")),
            capacity_code,
            np.full(len(largest), CATEGORIES.index("stale")),
            np.full(len(largest), CATEGORIES.index("kind")),
        ]
    )
    code = np.take_along_axis(by_part, largest[None, :], axis=0)[0]
    positive = top > ALIGNED_TOLERANCE * np.maximum(1.0, np.abs(benchmark))
    return np.where(positive, code, CATEGORIES.index("aligned")).astype(np.int64)


def outcomes_and_measures(
    graph: Graph,
    world: WorldArrays,
    population: PopulationArrays,
    principals: PrincipalArrays,
    step: StepArrays,
    *,
    deceptive: np.ndarray | None = None,
    welfare_counts_agent_goals: bool = False,
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Steps 4–6 for every agent: outcomes, payoffs, losses, Goodhart measures, flags.

    The reference of :func:`model.measures_jit.outcomes_and_measures`. For agent i of
    principal j with effort a, output noise ε, marginal reward r, G the network and
    ``e`` the per-unit externality on each neighbour:

    * ``proxy = mᵀy``, ``value = v_jᵀy`` with ``y = a + ε``; ``pay = α_j + β_j·proxy``;
    * ``agent_goal_payoff = θᵀa``; ``peer = Σ_k δ_k a_k (G a)_k`` (``G a`` of this step's
      efforts); ``private_payoff = θᵀa − ½aᵀKa − risk_j + peer`` (risk_j the LEN risk premium
      ``(ρ/2)β_j²σ_M²``);
    * ``externality_given = (eᵀa)·Σ_l G_li`` (its harm times its weight in others' rows);
      ``externality_received = Σ_l G_il (eᵀa_l)``;
    * ``welfare = value + externality_received + peer − ½aᵀKa − risk_j`` (+ ``θᵀa`` with
      ``welfare_counts_agent_goals``);
    * ``penalty = penalty_j`` if caught by the audit, else 0;
    * ``utility = pay + private_payoff + externality_received − penalty``;
      ``profit = value − pay + penalty``;
    * ``principal_loss = benchmark_j − (value − ½aᵀKa)``: the surplus of the principal's aligned
      benchmark agent less the realized surplus (split into its causes by
      :mod:`model.decomposition`);
    * ``mesa_loss = ½rᵀa* − (rᵀa − ½aᵀKa + β_j(proxy − mᵀa))``: the agent's decision payoff at
      its true optimum a* (where ``rᵀa* − ½a*ᵀKa* = ½rᵀa*``) less what it realized, its pay
      noise included;
    * ``goodhart_adversarial = −Σ_k v_jk a_k`` over the principal's hostile channels;
      ``goodhart_causal`` is 0 here (the model fills it with the world-model part of the
      decomposition for agents with a stale world model);
    * ``outside``: some ``a_k`` outside ``[low_jk, high_jk]``, the range of actions the principal
      saw in selection (extremal Goodhart);
    * the flags of :func:`categorize`.

    Args:
        graph: The network G and its column sums.
        world: The current world's channels (``root`` and ``substitution`` are not read).
        population: The agents (``theta``, ``capacity`` and ``principal`` are read).
        principals: Contracts, values and yardsticks per principal.
        step: The plan (``plan.reward`` holds the rewards the agents chose by, with
            ``plan.neighbour_effort`` = G a of the previous step), output noise, audit catches.
        deceptive: Deceptive agents, (N,) bool (None: none).
        welfare_counts_agent_goals: Count ``θᵀa`` in welfare
            (``metrics.welfare_counts_agent_goals``).

    Returns:
        ``(metrics, flags, outside)``: every per-agent metric by its name in
        :data:`model.measures_jit.METRIC_ROWS`, (N,) each; the flags (N, 5) in the order of
        :data:`FLAGS`; whether the action leaves the selection range (N,).
    """
    j = population.principal
    a = step.plan.action
    values = principals.values[j]
    beta = principals.beta[j]
    n = len(a)
    adjacency = sp.csr_array((graph.data, graph.indices, graph.indptr), shape=(n, n))

    y = a + step.noise
    proxy = y @ world.metric
    value = np.einsum("ij,ij->i", y, values)
    pay = principals.alpha[j] + beta * proxy
    effort_cost = 0.5 * np.einsum("ij,ij->i", a @ world.cost, a)
    goals = np.einsum("ij,ij->i", population.theta, a)
    peer = np.einsum("ij,ij->i", a * world.peer, adjacency @ a)
    private = goals - effort_cost - principals.risk_premium[j] + peer
    harm = a @ world.externality
    received = adjacency @ harm
    penalty = np.where(step.caught, principals.penalty[j], 0.0)
    welfare = value + received + peer - effort_cost - principals.risk_premium[j]
    if welfare_counts_agent_goals:
        welfare = welfare + goals
    realized = (
        np.einsum("ij,ij->i", step.plan.reward, a) - effort_cost + beta * (proxy - a @ world.metric)
    )
    metrics = {
        "proxy": proxy,
        "value": value,
        "pay": pay,
        "profit": value - pay + penalty,
        "utility": pay + private + received - penalty,
        "private_payoff": private,
        "agent_goal_payoff": goals,
        "externality_given": harm * graph.in_weight,
        "externality_received": received,
        "welfare": welfare,
        "penalty": penalty,
        "principal_loss": principals.benchmark[j] - (value - effort_cost),
        "mesa_loss": step.plan.own_best - realized,
        "goodhart_causal": np.zeros(n),
        "goodhart_adversarial": np.einsum("ij,ij->i", -values * principals.hostile[j], a),
    }
    outside = ((a < principals.low[j]) | (a > principals.high[j])).any(axis=1)
    flags = categorize(
        population.capacity,
        principals.capacity[j],
        population.theta,
        values,
        principals.trans_cosine,
        deceptive,
    )
    return metrics, flags, outside


def group_sums(
    columns: np.ndarray, group: np.ndarray, n_groups: int, rows: list[int] | None = None
) -> np.ndarray:
    """Sum each column's entries per group: ``S[g, q] = Σ_{i: group_i = g} columns[q, i]``.

    The reference of :func:`model.measures_jit.group_sums` (which adds fixed blocks of rows in
    block order, so that its sums do not depend on the number of threads).

    Args:
        columns: Values, (M, N): M quantities over N agents (booleans count as 0/1).
        group: Group index of each agent in ``0 .. n_groups-1``, (N,).
        n_groups: Number of groups.
        rows: Only these rows of ``columns`` (all by default).

    Returns:
        The sums, (n_groups, len(rows)).
    """
    picked = range(len(columns)) if rows is None else rows
    if len(picked) == 0:
        return np.zeros((n_groups, 0))
    sums = [np.bincount(group, weights=columns[q], minlength=n_groups) for q in picked]
    return np.stack(sums, axis=1).reshape(n_groups, len(picked))
