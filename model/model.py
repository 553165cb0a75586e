"""The mesaopt model: construction and the step order; each mechanism lives in its own module.

:class:`MesaOptModel` is a ``mesa.Model``. Population state lives in NumPy arrays
(:class:`agents.population.Population`), the network in a SciPy CSR matrix, and one step is a
fixed sequence of compiled row kernels (:mod:`agents.response_jit`, :mod:`model.measures_jit`,
:mod:`model.group_stats_jit`; each has its NumPy reference in the module of the same name without
``_jit``). Principals are Mesa agents; mesa-optimizers are Mesa agents too, as thin views onto
their rows, created on first use, so that ``model.agents`` and ``model.agents_by_type`` always
hold every agent. This module holds only the construction and the order of a step; where each
mechanism is (docs/architecture.md maps every concept to its file):

Step order (one call of ``model.step()``, or ``model.run_for(n)`` for n of them; ``t`` is the step
number, 1-based):

1. **Regime changes** scheduled at ``t`` replace channel fields; the world's epoch advances.
   Deployed agents keep their world model; principals keep theirs until a federated update
   (:mod:`model.regimes`).
2. **Selection**: each principal whose ``selection.every`` divides ``t`` retrains the worst
   ``fraction`` of its agents by last step's proxy (best-of-n in its sandbox), then redesigns its
   contract if ``beta = "optimal"`` (:mod:`model.selection`, :mod:`agents.selection`).
3. **Action**: every agent chooses its effort simultaneously, given its neighbours' efforts of the
   previous step: direct optimizers plan with their own (possibly stale) world model (exact best
   response or best of k); control optimizers take a gain step along the realized, noisy reward
   gradient of the current world (:mod:`agents.response_jit`, :mod:`agents.response`).
4. **Outcomes**: realized output y = a + ε; proxy M = mᵀy; true value V = v_jᵀy; pay
   w = α_j + β_j·M; utilities, externalities and peer payoffs (:mod:`model.measures_jit`).
5. **Audits**: sampled agents caught gaming pay the penalty (a transfer to their principal;
   :mod:`model.audit`).
6. **Measurement**: every metric is computed (:mod:`model.measures_jit`, :mod:`model.metrics`)
   and handed to the recorder: a ``steps`` row per principal plus ``all``, and an agent snapshot
   every ``run.agent_every`` steps (schemas in :mod:`model.tables`).
7. **Replacement**: caught agents are retrained at once when ``audit.replace`` is true
   (:mod:`model.audit`).
8. **Federated updates**: each principal whose ``federated.every`` divides ``t`` refits its value
   belief from its agents' reports (a ``misreport`` share of them spoof it with their own
   objective), refreshes its world model and redesigns its contract (:mod:`model.federated`).

Initialisation (step 0) builds the network from the run's generator, assigns agents to
principals by share, designs each contract on the principal's prior, fills every agent slot by
best-of-n selection and redesigns the contracts on the agents actually selected
(:func:`model.selection.initial_selection`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mesa
import numpy as np
from mesa.agentset import AgentSet
from mesa.experimental.scenarios import Scenario as MesaScenario

from mesaopt.agents.optimizer import MesaOptimizer
from mesaopt.agents.population import Population
from mesaopt.agents.principal import Principal
from mesaopt.agents.response import best_of_k, best_response
from mesaopt.agents.response_jit import plan_actions
from mesaopt.model.audit import audit, replace_caught
from mesaopt.model.channels import World, world_from_scenario
from mesaopt.model.collect import make_datacollector
from mesaopt.model.errors import ScenarioError
from mesaopt.model.federated import federated_updates
from mesaopt.model.kernel_arrays import (
    Graph,
    MeasureArrays,
    PlanArrays,
    PopulationArrays,
    PrincipalArrays,
    StepArrays,
    WorldArrays,
)
from mesaopt.model.measures_jit import METRIC_ROWS, outcomes_and_measures
from mesaopt.model.metrics import CATEGORIES, aggregate_steps
from mesaopt.model.network import Network, build_network, network_table, spectral_radius
from mesaopt.model.noise import metric_noise_variance
from mesaopt.model.parallel import kernel_threads
from mesaopt.model.regimes import RegimeSchedule, apply_regime_changes
from mesaopt.model.scenario import Scenario
from mesaopt.model.scenario_files import apply_override, load_raw, validate
from mesaopt.model.selection import initial_selection, scheduled_retraining
from mesaopt.model.tables import agent_snapshot, empty_events, event_row

#: Populations smaller than this run the compiled kernels on one thread (see ``step``).
PARALLEL_MIN_AGENTS = 8_192

#: Agent snapshots are on by default up to this many agents (``run.agent_snapshots = "auto"``).
SNAPSHOT_LIMIT = 10_000


@dataclass(frozen=True)
class _Contracts:
    """Per-principal parameters of a step as arrays indexed by principal."""

    alpha: np.ndarray
    beta: np.ndarray
    values: np.ndarray  # (J, d) true values

    @classmethod
    def of(cls, principals: list[Principal]) -> _Contracts:
        return cls(
            alpha=np.array([p.alpha for p in principals], dtype=float),
            beta=np.array([p.beta for p in principals], dtype=float),
            values=np.stack([p.true_values for p in principals]).astype(float),
        )


class MesaOptModel(mesa.Model):
    """Principals, their mesa-optimizers and the network they share.

    Args:
        scenario: A validated scenario, or a Mesa scenario made by :func:`run_scenario` (as
            SolaraViz passes back); None loads the embedded default.
        rng: Seed or generator; None uses ``scenario.run.seed``.
        base_dir: Folder that relative paths in the scenario (edge lists) resolve against.
        recorder: Called with ``(table, rows)`` for every row batch the model produces
            (``steps``, ``agents``, ``selections``, ``events``); None keeps only the last step.
        **overrides: ``dotted__key=value`` keyword overrides of the scenario (``__`` for ``.``),
            so that the model can be built from keyword parameters (e.g. by ``mesa.batch_run``).

    Attributes:
        config: The resolved, validated scenario.
        scenario: Mesa's scenario of the run: the same sections as attributes, the run's ``rng``
            and ``config`` (see :func:`run_scenario`).
        world: The current channel parameters.
        worlds: Every world epoch so far (agents' world models index into it).
        network: The agents' network (CSR adjacency).
        population: Per-agent state arrays.
        principals: The principals, in scenario order.
        last_steps: The ``steps`` rows of the last step.
        last_agent_metrics: Per-agent metric arrays of the last step.
    """

    def __init__(
        self,
        scenario: Scenario | MesaScenario | None = None,
        *,
        rng: int | np.random.Generator | None = None,
        base_dir: Path | None = None,
        recorder: Callable[[str, list[dict[str, Any]] | dict[str, np.ndarray]], None] | None = None,
        **overrides: Any,
    ) -> None:
        if isinstance(scenario, MesaScenario):  # e.g. SolaraViz re-creating the model
            if rng is None and scenario.rng is not None:
                rng = scenario.rng
            scenario = getattr(scenario, "config", None)
        if scenario is None or overrides:
            data = scenario.model_dump(mode="json") if scenario is not None else load_raw(None)[0]
            for key, value in overrides.items():
                apply_override(data, key.replace("__", "."), value)
            scenario = validate(data, "<keyword parameters>" if overrides else "<default scenario>")
        if isinstance(rng, int | np.integer) and int(rng) != scenario.run.seed:
            scenario = scenario.model_copy(deep=True)
            scenario.run.seed = int(rng)  # tables and manifests name the seed actually used
        super().__init__(scenario=run_scenario(scenario, scenario.run.seed if rng is None else rng))
        self.config = scenario
        self._record = recorder or (lambda table, rows: None)
        #: Regressional-Goodhart statistics of this step's selections (model.selection).
        self.selection_stats: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]] = []
        self.world: World = world_from_scenario(scenario)
        self.worlds: list[World] = [self.world]
        self.d = self.world.d
        n_agents = scenario.network.n_agents
        n_principals = len(scenario.principals)

        counts = _counts_by_share([p.share for p in scenario.principals], n_agents)
        self.network: Network = build_network(
            scenario.network, self.rng, block_sizes=counts, base_dir=base_dir
        )
        self._record("network", network_table(self.network))
        self._check_peer_stability()
        self.adjacency = self.network.adjacency
        self.in_weight = np.asarray(self.adjacency.sum(axis=0)).ravel()

        principal_of = self._assign_principals(counts)
        capacity = self._draw_capacity(n_agents)
        is_control = self._draw_optimizer_kind(n_agents)
        self.population = Population.empty(principal_of, capacity, is_control, self.d)

        self.principals: list[Principal] = make_principals(self, scenario, self.world)
        self.members = [np.flatnonzero(principal_of == j) for j in range(n_principals)]

        self.regimes = RegimeSchedule(scenario)

        self._perceive_cache: dict[int, np.ndarray] = {}
        self._all_channels = np.ones((n_agents, self.d), dtype=bool)  # the benchmarks' mask
        self._views: dict[int, MesaOptimizer] = {}  # created on first use (_create_views)

        self.snapshots_on = scenario.run.agent_every > 0 and (
            scenario.run.agent_snapshots == "on"
            or (scenario.run.agent_snapshots == "auto" and n_agents <= SNAPSHOT_LIMIT)
        )
        self.last_steps: list[dict[str, Any]] = []
        self.last_agent_metrics: dict[str, np.ndarray] = {}
        self._primary_code = np.full(n_agents, CATEGORIES.index("aligned"), dtype=np.int64)

        self._declare_tables()
        initial_selection(self)
        # Mesa compatibility (mesa.batch_run reads model.datacollector; see model/collect.py).
        self.datacollector = make_datacollector()

    # ------------------------------------------------------------------ construction helpers

    def _check_peer_stability(self) -> None:
        """Refuse a peer effect δ with δ·ρ(G) ≥ 1, initially or after any regime change."""
        peak, key = 0.0, ""
        for k, channel in enumerate(self.config.channels):
            if channel.peer > peak:
                peak, key = channel.peer, f"channels.{k}.peer"
        for i, regime in enumerate(self.config.regimes):
            if float(regime.set.get("peer", 0.0)) > peak:
                peak, key = float(regime.set["peer"]), f"regimes.{i}.set.peer"
        if peak <= 0:
            return
        degrees = np.asarray(abs(self.network.adjacency).sum(axis=1)).ravel()
        if peak * degrees.max(initial=0.0) < 1:  # ρ(G) ≤ max degree: no eigenvalue needed
            return
        radius = spectral_radius(self.network.adjacency)
        if peak * radius >= 1:
            raise ScenarioError(
                key,
                f"peer effect {peak:g} times the network's spectral radius {radius:.3g} is "
                "≥ 1: best responses diverge (lower peer or set network.normalize = true)",
            )

    def _assign_principals(self, counts: list[int]) -> np.ndarray:
        labels = np.repeat(np.arange(len(counts)), counts)
        if self.network.blocks is not None and self.config.network.blocks is None:
            return labels  # SBM blocks are the principals' groups, in node order
        return self.rng.permutation(labels)

    def _draw_capacity(self, n: int) -> np.ndarray:
        spec = self.config.agents.capacity
        if isinstance(spec, int):
            return np.full(n, spec, dtype=np.int64)
        weights = np.ones(len(spec.values)) if spec.weights is None else np.array(spec.weights)
        return self.rng.choice(np.array(spec.values), size=n, p=weights / weights.sum())

    def _draw_optimizer_kind(self, n: int) -> np.ndarray:
        agents = self.config.agents
        if agents.optimizer == "direct":
            return np.zeros(n, dtype=bool)
        if agents.optimizer == "control":
            return np.ones(n, dtype=bool)
        return self.rng.random(n) < agents.control_share

    # ------------------------------------------------------------------------ Mesa views

    def _create_views(self) -> None:
        """Create the Mesa view of every agent, in index order, once (~2.6 µs per agent)."""
        population = getattr(self, "population", None)  # None while Mesa builds the model
        if population is None or len(self._views) == population.size:
            return
        for i in range(population.size):
            self._views[i] = MesaOptimizer(self, i)

    @property
    def agents(self) -> AgentSet:
        """Every agent of the model, principals first, then every mesa-optimizer (Mesa's set).

        The mesa-optimizers' views are created on first access (of this, ``agents_by_type``,
        ``optimizers`` or ``optimizer(i)``), so that a run that never asks for them never pays
        for them (sweeps, 10^6 agents); the set is always complete.
        """
        self._create_views()
        return super().agents

    @property
    def agents_by_type(self) -> dict[type, AgentSet]:
        """Mesa's agent sets by type: ``Principal`` and ``MesaOptimizer``, each complete."""
        self._create_views()
        return super().agents_by_type

    @property
    def optimizers(self) -> AgentSet:
        """Every mesa-optimizer, as a Mesa ``AgentSet`` in agent-id order."""
        return self.agents_by_type[MesaOptimizer]

    def optimizer(self, index: int) -> MesaOptimizer:
        """Return the Mesa view of agent ``index`` (all views are created on first use).

        Raises:
            IndexError: If there is no such agent.
        """
        if not 0 <= index < self.population.size:
            raise IndexError(f"no agent {index}")
        self._create_views()
        return self._views[index]

    def category_of(self, index: int) -> str:
        """Primary category of agent ``index`` as of the last step."""
        return CATEGORIES[int(self._primary_code[index])]

    @property
    def _primary(self) -> np.ndarray:
        """Primary category names of all agents as of the last step (built on demand)."""
        return np.asarray(CATEGORIES, dtype=object)[self._primary_code]

    # ------------------------------------------------------------------------ mechanisms

    def record(self, table: str, rows: list[dict[str, Any]] | dict[str, np.ndarray]) -> None:
        """Hand a batch of rows of ``table`` to the run's recorder (see :mod:`model.tables`)."""
        self._record(table, rows)

    def record_event(self, kind: str, **fields: Any) -> None:
        """Record one ``events`` row of ``kind`` at the current step."""
        self._record("events", [event_row(int(self.time), kind, **fields)])

    # ------------------------------------------------------------------------------ step

    def _perceives(self, world: World) -> np.ndarray:
        """Channels each agent perceives in ``world`` (cached per epoch: capacity is fixed)."""
        cached = self._perceive_cache.get(world.epoch)
        if cached is None:
            cached = self._perceive_cache[world.epoch] = world.perceives(self.population.capacity)
        return cached

    def _reward_in(
        self, world: World, rows: np.ndarray, beta_of: np.ndarray, neighbour_effort: np.ndarray
    ) -> np.ndarray:
        """Marginal rewards θ + βm + δ⊙(G a) of ``rows`` as ``world`` says they are."""
        pop = self.population
        return (
            pop.theta[rows]
            + beta_of[rows, None] * world.metric
            + world.peer * neighbour_effort[rows]
        )

    def _exact_stale_plans(
        self, rows: np.ndarray, beta_of: np.ndarray, neighbour_effort: np.ndarray
    ) -> np.ndarray:
        """Exact best responses of ``rows`` under each one's own (stale) world model."""
        pop = self.population
        plans = np.empty((len(rows), self.d))
        for epoch in np.unique(pop.epoch[rows]):
            mine = pop.epoch[rows] == epoch
            model = self.worlds[int(epoch)]
            plans[mine] = best_response(
                self._reward_in(model, rows[mine], beta_of, neighbour_effort),
                model.cost_matrix,
                model.perceives(pop.capacity[rows[mine]]),
            )
        return plans

    def _replan(
        self, action: np.ndarray, beta_of: np.ndarray, neighbour_effort: np.ndarray
    ) -> None:
        """Step 3, rows the compiled kernel cannot plan: stale and best-of-k planners, in place.

        :func:`agents.response_jit.plan_actions` gives every direct agent its exact best response
        in the current world; a direct agent whose world model predates the current regime plans
        in its own world instead, and a best-of-k planner samples (its draws are per planner).
        """
        pop = self.population
        agents = self.config.agents
        direct = ~pop.is_control
        if agents.power == "exact":
            planned_elsewhere = direct & (pop.epoch != self.world.epoch)
        else:
            planned_elsewhere = direct
        for epoch in np.unique(pop.epoch[planned_elsewhere]):
            rows = np.flatnonzero(planned_elsewhere & (pop.epoch == epoch))
            model = self.worlds[int(epoch)]
            stale_reward = self._reward_in(model, rows, beta_of, neighbour_effort)
            perceive = model.perceives(pop.capacity[rows])
            if agents.power == "exact":
                action[rows] = best_response(stale_reward, model.cost_matrix, perceive)
            else:
                action[rows] = best_of_k(
                    stale_reward,
                    model.cost_matrix,
                    perceive,
                    agents.power,
                    agents.model_noise,
                    self.rng,
                )

    def step(self) -> None:
        """Advance the model by one step (see the module docstring for the order)."""
        # Below PARALLEL_MIN_AGENTS waking a second thread costs more than it saves.
        with kernel_threads(1 if self.population.size < PARALLEL_MIN_AGENTS else None):
            self._step()

    def _step(self) -> None:
        t = int(self.time)
        pop = self.population
        self.selection_stats = []
        apply_regime_changes(self, t)  # 1. regime changes
        scheduled_retraining(self, t)  # 2. selection

        world = self.world
        contracts = _Contracts.of(self.principals)
        n, d = pop.size, self.d
        neighbour_effort = np.empty((n, d))
        reward = np.empty((n, d))
        action = np.empty((n, d))
        own_best = np.empty(n)
        adjacency = self.adjacency
        plan_actions(
            Graph.of(adjacency, self.in_weight),
            WorldArrays.of(world),
            PopulationArrays.of(pop, self._perceives(world), self.config.agents.gain),
            contracts.beta,
            PlanArrays(neighbour_effort, reward, action, own_best),
        )
        beta_of = np.take(contracts.beta, pop.principal)
        self._replan(action, beta_of, neighbour_effort)
        noise = self.world.sample_noise(self.rng, n)
        caught = audit(self, action)  # 5. audits

        self._measure(
            t, contracts, action, noise, beta_of, reward, neighbour_effort, own_best, caught
        )
        pop.action = action
        pop.last_noise = noise
        pop.last_proxy = self.last_agent_metrics["proxy"]

        replace_caught(self, caught, t)  # 7. replacement
        federated_updates(self, t, action + noise)  # 8. federated updates
        self.datacollector.collect(self)

    def _measure(
        self,
        t: int,
        contracts: _Contracts,
        action: np.ndarray,
        noise: np.ndarray,
        beta_of: np.ndarray,
        reward: np.ndarray,
        neighbour_effort: np.ndarray,
        own_best: np.ndarray,
        caught: np.ndarray,
    ) -> None:
        """Steps 4 and 6: outcomes, payoffs, losses, categories and Goodhart measures; rows out.

        ``reward`` is every agent's marginal reward θ + βm + δ⊙(G a) in the current world, with
        ``neighbour_effort`` = G a of the previous step, and ``own_best`` its payoff at its own
        optimum; ``caught`` flags this step's audit catches (a catch counts even when the
        penalty is 0). Per-agent definitions: :func:`model.measures_jit.outcomes_and_measures`.
        """
        world = self.world
        pop = self.population
        cost = world.cost_matrix
        principals = self.principals
        values = contracts.values

        # Principal loss: surplus (value net of effort cost) of an aligned benchmark agent —
        # objective = the principal's true values, full capacity, exact, current world — minus
        # the realized surplus. The benchmark maximizes that surplus, so the loss is ≥ 0 in
        # expectation.
        best = best_response(values, cost, np.ones_like(values, dtype=bool))
        benchmark = np.einsum("jk,jk->j", values, best) - 0.5 * np.einsum(
            "jk,jk->j", best @ cost, best
        )
        # Var(mᵀε); an unmeasured channel adds nothing even when its own variance is infinite.
        # β = 0 carries no risk even when σ_M² is infinite (Student-t, df ≤ 2; scenario checks).
        sigma_m2 = metric_noise_variance(world.metric, world.noise_var, np.ones(self.d, bool))
        with np.errstate(invalid="ignore"):
            risk = np.where(
                contracts.beta == 0,
                0.0,
                0.5 * self.config.agents.risk_aversion * contracts.beta**2 * sigma_m2,
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
        flags = np.empty((n, len(CATEGORIES)), dtype=bool)
        primary = np.empty(n, dtype=np.int64)
        outside = np.empty(n, dtype=bool)
        adjacency = self.adjacency
        outcomes_and_measures(
            Graph.of(adjacency, self.in_weight),
            WorldArrays.of(world),
            PopulationArrays.of(pop, self._perceives(world), self.config.agents.gain),
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
                trans_cosine=float(self.config.metrics.trans_cosine),
            ),
            StepArrays(PlanArrays(neighbour_effort, reward, action, own_best), noise, caught),
            MeasureArrays(metrics, flags, primary, outside, harm=np.empty(n)),
        )

        # Causal Goodhart: value lost because direct agents plan with a stale world model.
        stale = (~pop.is_control) & (pop.epoch != world.epoch)
        if stale.any():
            rows = np.flatnonzero(stale)
            refreshed = best_response(reward[rows], cost, world.perceives(pop.capacity[rows]))
            # Best-of-k planners are compared plan to plan (exact, stale vs refreshed model), so
            # that their sampling loss is not counted as causal Goodhart.
            planned = (
                action[rows]
                if self.config.agents.power == "exact"
                else self._exact_stale_plans(rows, beta_of, neighbour_effort)
            )
            causal = np.einsum("ij,ij->i", refreshed - planned, values[pop.principal[rows]])
            metrics[METRIC_ROWS.index("goodhart_causal"), rows] = causal

        self._primary_code = primary  # names only on demand: an object array costs ~10 ms at 1e6
        per_agent = dict(zip(METRIC_ROWS, metrics, strict=True))
        self.last_agent_metrics = per_agent
        rows = aggregate_steps(
            step=t,
            metrics=metrics,
            principal_of=pop.principal,
            principals=principals,
            flags=flags,
            primary=primary,
            action=action,
            channel_names=world.names,
            outside=outside,
            stale=stale,
            caught=caught,
            selection_stats=self.selection_stats,
            top_quantile=self.config.metrics.top_quantile,
        )
        self.last_steps = rows
        self._record("steps", rows)
        if self.snapshots_on and t % self.config.run.agent_every == 0:
            self._record(
                "agents",
                self._agent_snapshot(t, slice(None), flags, stale, outside, action, per_agent),
            )

    def _agent_snapshot(
        self,
        t: int,
        rows: slice | np.ndarray,
        flags: np.ndarray,
        stale: np.ndarray,
        outside: np.ndarray,
        action: np.ndarray,
        per_agent: dict[str, np.ndarray],
    ) -> dict[str, np.ndarray]:
        """Columns of the ``agents`` table for ``rows`` (the other arrays are already sliced)."""
        pop = self.population
        return agent_snapshot(
            step=t,
            index=np.arange(pop.size, dtype=np.int64)[rows],
            principal_names=np.array([p.name for p in self.principals], dtype=object),
            principal=pop.principal[rows],
            kind_names=np.where(pop.is_control[rows], "control", "direct").astype(object),
            capacity=pop.capacity[rows].copy(),
            category_names=CATEGORIES,
            primary=self._primary_code[rows],
            flags=flags,
            deployed_at=pop.deployed_at[rows].copy(),
            stale=stale,
            outside=outside,
            channel_names=self.world.names,
            action=action,
            theta=pop.theta[rows],
            per_agent=per_agent,
        )

    def _declare_tables(self) -> None:
        """Record zero-row batches so that every table has its columns even when left empty."""
        none = np.arange(0)
        self._record(
            "agents",
            self._agent_snapshot(
                0,
                none,
                np.zeros((0, len(CATEGORIES)), dtype=bool),
                np.zeros(0, dtype=bool),
                np.zeros(0, dtype=bool),
                np.zeros((0, self.d)),
                {name: np.zeros(0) for name in METRIC_ROWS},
            ),
        )
        self._record("events", empty_events())


def run_scenario(config: Scenario, rng: int | np.random.Generator) -> MesaScenario:
    """Mesa's view of a run's scenario: ``model.scenario``.

    Mesa 3.5 gives every model a ``scenario`` (a :class:`mesa.experimental.scenarios.Scenario`:
    parameters as attributes, frozen while the model runs, read by SolaraViz). mesaopt's own,
    validated scenario is ``model.config``; ``model.scenario`` carries the same sections as
    attributes (``model.scenario.network.n_agents``, ``model.scenario.principals``), the run's
    ``rng``, and the whole validated scenario as ``config``, so that
    ``MesaOptModel(scenario=model.scenario)`` builds the same model again.

    Args:
        config: The validated scenario.
        rng: The run's seed or generator.

    Returns:
        The Mesa scenario.
    """
    sections = {name: getattr(config, name) for name in type(config).model_fields}
    return MesaScenario(rng=rng, config=config, **sections)


def _counts_by_share(shares: list[float], total: int) -> list[int]:
    """Split ``total`` agents by ``shares`` with the largest-remainder method (every share ≥ 1)."""
    weights = np.asarray(shares, dtype=float) / sum(shares)
    exact = weights * total
    counts = np.floor(exact).astype(int)
    remainder = total - counts.sum()
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[:remainder]] += 1
    return [int(c) for c in counts]


def make_principals(model: mesa.Model, scenario: Scenario, world: World) -> list[Principal]:
    """Create the scenario's principals as Mesa agents of ``model``, knowing ``world``.

    Each principal's true values are the channels' values with its own ``values`` overrides; its
    agents' shared intrinsic goals (``agents.goals.mean``) centre its selection prior.

    Args:
        model: The Mesa model the principals belong to.
        scenario: The validated scenario.
        world: The initial world.

    Returns:
        The principals, in scenario order.
    """
    intrinsic = np.zeros(world.d)
    for name, mean in scenario.agents.goals.mean.items():
        intrinsic[scenario.channel_index(name)] = mean
    principals = []
    for j, config in enumerate(scenario.principals):
        values = world.value.copy()
        for name, value in config.values.items():
            values[scenario.channel_index(name)] = value
        principals.append(Principal(model, j, config, values, world, intrinsic))
    return principals
