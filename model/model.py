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
   contract if ``beta = "optimal"`` (:mod:`model.selection`, :mod:`agents.sandbox`).
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

import copy
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import mesa
import numpy as np
from mesa.agentset import AgentSet
from mesa.experimental.scenarios import Scenario as MesaScenario

from mesaopt.agents.candidates import Pool, pool_of
from mesaopt.agents.kinds import (
    KINDS,
    Control,
    Direct,
    Planning,
    codes_that_can_go_stale,
)
from mesaopt.agents.optimizer import MesaOptimizer
from mesaopt.agents.population import Population
from mesaopt.agents.principal import Principal
from mesaopt.agents.response_jit import plan_actions
from mesaopt.model.audit import audit, replace_caught
from mesaopt.model.channels import World, world_from_scenario
from mesaopt.model.collect import make_datacollector
from mesaopt.model.federated import federated_updates
from mesaopt.model.kernel_arrays import (
    Graph,
    PlanArrays,
    PopulationArrays,
    WorldArrays,
)
from mesaopt.model.measurement import StepContracts, agent_rows, measure_step
from mesaopt.model.measures import CATEGORIES, FLAGS
from mesaopt.model.measures_jit import METRIC_ROWS
from mesaopt.model.neighbour_effort import CarriedEffort, refresh_neighbour_effort
from mesaopt.model.network import Network, build_network, network_table
from mesaopt.model.parallel import kernel_threads
from mesaopt.model.regimes import RegimeSchedule, apply_regime_changes
from mesaopt.model.scenario import Scenario, agent_counts
from mesaopt.model.scenario_files import apply_override, load_raw, validate
from mesaopt.model.selection import initial_selection, scheduled_retraining
from mesaopt.model.stability import check_peer_stability
from mesaopt.model.tables import empty_events, event_row

#: Populations smaller than this run the compiled kernels on one thread (see ``step``).
PARALLEL_MIN_AGENTS = 8_192

#: Agent snapshots are on by default up to this many agents (``run.agent_snapshots = "auto"``).
SNAPSHOT_LIMIT = 10_000


class MesaOptModel(mesa.Model):
    """Principals, their mesa-optimizers and the network they share.

    Args:
        scenario: A validated scenario, a dict of a scenario file's tables (validated as the
            file would be), or a Mesa scenario made by :func:`run_scenario` (as SolaraViz passes
            back); None loads the embedded default.
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
        kind_rows: The agents of each mesa-optimizer kind, by kind code (kinds are fixed).
        is_control: Rows the compiled kernel steers by feedback (the ``control`` kind), (N,).
        can_go_stale: Agents of a kind whose world model can go stale, (N,).
    """

    def __init__(
        self,
        scenario: Scenario | MesaScenario | Mapping[str, Any] | None = None,
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
        if isinstance(scenario, Mapping):  # a scenario file's tables, as Python data
            scenario = validate(copy.deepcopy(dict(scenario)), "<scenario dict>")
        elif scenario is not None and not isinstance(scenario, Scenario):
            raise TypeError(
                "scenario must be a Scenario (mesaopt.load_scenario), a dict of its tables or "
                f"None, got {type(scenario).__name__}"
            )
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

        counts = agent_counts(scenario)
        self.network: Network = build_network(
            scenario.network, self.rng, block_sizes=counts, base_dir=base_dir
        )
        self._record("network", network_table(self.network))
        self._check_peer_stability()
        self.adjacency = self.network.adjacency
        self.in_weight = np.asarray(self.adjacency.sum(axis=0)).ravel()

        principal_of = self._assign_principals(counts)
        # Each principal's candidate pool; kind, capacity, power and gain are chosen by
        # selection, so the population holds placeholders until the initial selection.
        self.pools = [pool_of(scenario, j, self.d) for j in range(n_principals)]
        self.population = Population.empty(
            principal_of,
            np.zeros(n_agents, dtype=np.int64),
            np.full(n_agents, Direct.code, dtype=np.int8),
            self.d,
        )
        self.kinds_changed()

        self.principals: list[Principal] = make_principals(self, scenario, self.world, self.pools)
        self.members = [np.flatnonzero(principal_of == j) for j in range(n_principals)]

        self.regimes = RegimeSchedule(scenario)

        self._views: dict[int, MesaOptimizer] = {}  # created on first use (_create_views)

        self.snapshots_on = scenario.run.agent_every > 0 and (
            scenario.run.agent_snapshots == "on"
            or (scenario.run.agent_snapshots == "auto" and n_agents <= SNAPSHOT_LIMIT)
        )
        self.last_steps: list[dict[str, Any]] = []
        self.last_agent_metrics: dict[str, np.ndarray] = {}
        # G a of the last step's efforts, from its outcomes, for the next plan (None: gather).
        self._carried_effort: CarriedEffort | None = None
        self.primary_code = np.full(n_agents, CATEGORIES.index("aligned"), dtype=np.int64)

        self._declare_tables()
        initial_selection(self)
        # Mesa compatibility (mesa.batch_run reads model.datacollector; see model/collect.py).
        self.datacollector = make_datacollector()

    # ------------------------------------------------------------------ construction helpers

    def _check_peer_stability(self) -> None:
        """Refuse peer effects under which best responses do not contract (model/stability.py).

        The condition is ρ(K⁻¹Δ)·ρ(G) < 1 (one channel: δ·ρ(G) < c), for the initial world and
        after every regime change; the error names the key and the numbers.
        """
        check_peer_stability(self.config, self.network.adjacency)

    def _assign_principals(self, counts: list[int]) -> np.ndarray:
        labels = np.repeat(np.arange(len(counts)), counts)
        if self.network.blocks is not None and self.config.network.blocks is None:
            return labels  # SBM blocks are the principals' groups, in node order
        return self.rng.permutation(labels)

    def kinds_changed(
        self, slots: np.ndarray | None = None, old_kind: np.ndarray | None = None
    ) -> None:
        """Refresh what depends on who is of which kind and capacity (after every selection).

        Who is of which kind (``kind_rows``), who the compiled kernel steers by feedback
        (``is_control``), who can go stale (``can_go_stale``), and the perception cache. With
        ``slots`` (the agents just deployed) and their ``old_kind``, only those rows are
        refreshed, and the kind index only when a kind changed: a replacement of a few agents
        at a million costs a few rows, not a pass over the population.
        """
        pop = self.population
        kind = pop.kind
        if slots is None:
            self._perceive_cache: dict[int, np.ndarray] = {}
            self.is_control = kind == Control.code
            self.can_go_stale = np.isin(kind, codes_that_can_go_stale("world_model"))
            self.kind_rows = {k.code: np.flatnonzero(kind == k.code) for k in KINDS.values()}
            return
        for epoch, cached in self._perceive_cache.items():
            cached[slots] = self.worlds[epoch].perceives(pop.capacity[slots])
        new_kind = kind[slots]
        if old_kind is not None and np.array_equal(old_kind, new_kind):
            return
        self.is_control[slots] = new_kind == Control.code
        self.can_go_stale[slots] = np.isin(new_kind, codes_that_can_go_stale("world_model"))
        self.kind_rows = {k.code: np.flatnonzero(kind == k.code) for k in KINDS.values()}

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
        return CATEGORIES[int(self.primary_code[index])]

    @property
    def _primary(self) -> np.ndarray:
        """Primary category names of all agents as of the last step (built on demand)."""
        return np.asarray(CATEGORIES, dtype=object)[self.primary_code]

    # ------------------------------------------------------------------------ mechanisms

    def record(self, table: str, rows: list[dict[str, Any]] | dict[str, np.ndarray]) -> None:
        """Hand a batch of rows of ``table`` to the run's recorder (see :mod:`model.tables`)."""
        self._record(table, rows)

    def record_event(self, kind: str, **fields: Any) -> None:
        """Record one ``events`` row of ``kind`` at the current step."""
        self._record("events", [event_row(int(self.time), kind, **fields)])

    # ------------------------------------------------------------------------------ step

    def perceives(self, world: World) -> np.ndarray:
        """Channels each agent perceives in ``world`` (cached per epoch: capacity is fixed)."""
        cached = self._perceive_cache.get(world.epoch)
        if cached is None:
            cached = self._perceive_cache[world.epoch] = world.perceives(self.population.capacity)
        return cached

    def step(self) -> None:
        """Advance the model by one step (see the module docstring for the order)."""
        # Below PARALLEL_MIN_AGENTS waking a second thread costs more than it saves. A number
        # that overflows is caught where it is recorded (model.finite: the run stops in one
        # line); NumPy's warnings on the way there would only be more lines.
        threads = 1 if self.population.size < PARALLEL_MIN_AGENTS else None
        with kernel_threads(threads), np.errstate(over="ignore", invalid="ignore"):
            self._step()

    def _step(self) -> None:
        t = int(self.time)
        pop = self.population
        self.selection_stats = []
        apply_regime_changes(self, t)  # 1. regime changes
        scheduled_retraining(self, t)  # 2. selection

        # 3. action: the compiled kernel plans every row, then each kind re-plans its own
        world = self.world
        contracts = StepContracts.of(self.principals)
        n, d = pop.size, self.d
        graph = Graph.of(self.adjacency, self.in_weight)
        plan = PlanArrays.empty(n, d)
        carried, self._carried_effort = self._carried_effort, None
        # Last step's outcomes gathered G a; rows whose neighbours were replaced since (or whose
        # efforts anything else wrote) are gathered again, so it equals G @ a; if most rows
        # would be (after a selection), the plan gathers them all itself.
        gathered = (
            carried is not None
            and carried.adjacency is self.adjacency
            and refresh_neighbour_effort(
                graph, pop.action, carried.gathered_from, carried.neighbour_effort
            )
            is not None
        )
        if gathered:
            plan = plan._replace(neighbour_effort=carried.neighbour_effort)
        plan_actions(
            graph,
            WorldArrays.of(world),
            PopulationArrays.of(pop, self.perceives(world), self.is_control),
            contracts.beta,
            plan,
            gathered=gathered,
        )
        planning = Planning(
            world=world,
            worlds=self.worlds,
            population=pop,
            beta_of=np.take(contracts.beta, pop.principal),
            neighbour_effort=plan.neighbour_effort,
            reward=plan.reward,
            action=plan.action,
            optimum=plan.optimum,
            agents=self.config.agents,
            rng=self.rng,
        )
        for kind in KINDS.values():
            rows = self.kind_rows.get(kind.code)
            if rows is not None and len(rows):
                kind.replan(planning, rows)

        noise = world.sample_noise(self.rng, n)  # 4. outcomes (measured below)
        caught = audit(self, plan.action)  # 5. audits
        self._carried_effort = measure_step(  # 4 and 6
            self, t, contracts, planning, noise, plan.own_best, caught
        )
        pop.action = plan.action
        pop.last_noise = noise
        pop.last_proxy = self.last_agent_metrics["proxy"]

        replace_caught(self, caught, t)  # 7. replacement
        federated_updates(self, t, plan.action, noise)  # 8. federated updates
        self.datacollector.collect(self)

    def _declare_tables(self) -> None:
        """Record zero-row batches so that every table has its columns even when left empty."""
        none = np.arange(0)
        self._record(
            "agents",
            agent_rows(
                self,
                0,
                none,
                np.zeros((0, len(FLAGS)), dtype=bool),
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
    ``rng``, and the whole validated scenario as ``config`` (a copy: changing it changes nothing
    in the run), so that ``MesaOptModel(scenario=model.scenario)`` builds the same model again
    when the run was seeded with a number (a ``Generator`` has moved on by then).

    Args:
        config: The validated scenario.
        rng: The run's seed or generator.

    Returns:
        The Mesa scenario.
    """
    copy = config.model_copy(deep=True)  # editing it must not edit the run's own scenario
    sections = {name: getattr(copy, name) for name in type(copy).model_fields}
    return MesaScenario(rng=rng, config=copy, **sections)


def make_principals(
    model: mesa.Model, scenario: Scenario, world: World, pools: list[Pool] | None = None
) -> list[Principal]:
    """Create the scenario's principals as Mesa agents of ``model``, knowing ``world``.

    Each principal's true values are the channels' values with its own ``values`` overrides; the
    shared intrinsic goals of its pool (``agents.goals.mean``, or its ``selection.pool.goals``)
    centre its selection prior.

    Args:
        model: The Mesa model the principals belong to.
        scenario: The validated scenario.
        world: The initial world.
        pools: Each principal's candidate pool (resolved from the scenario when None).

    Returns:
        The principals, in scenario order.
    """
    if pools is None:
        pools = [pool_of(scenario, j, world.d) for j in range(len(scenario.principals))]
    principals = []
    for j, config in enumerate(scenario.principals):
        values = world.value.copy()
        for name, value in config.values.items():
            values[scenario.channel_index(name)] = value
        principals.append(Principal(model, j, config, values, world, pools[j].goals_mean.copy()))
    return principals
