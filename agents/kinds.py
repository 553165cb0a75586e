"""The kinds of mesa-optimizer, in one registry: what each perceives, carries and can lose.

A mesa-optimizer is an optimizer that selection built (the essay's "mesa-optimizers are control
systems built within selection systems"). Its *kind* is how it turns the reward it is paid into
effort. Each kind is a small class that declares (the way Axelrod's strategies declare a
``classifier``; ``can_go_stale`` and ``compiled`` are read by the step, ``perceives`` and
``carries`` are for readers of the model and its docs):

- ``name``: the scenario's ``agents.optimizer`` value and the ``optimizer`` column of the
  ``agents`` table;
- ``perceives``: what the agent observes when it acts;
- ``carries``: what it carries from its sandbox into deployment, as names of
  :class:`agents.population.Population` fields;
- ``can_go_stale``: what a regime change can make wrong, e.g. ``("world_model",)`` for a planner
  whose channel parameters date from its deployment. Agents of such a kind plan with a stale
  model after an unannounced change, which the measures count as causal Goodhart;
- ``compiled``: whether the compiled step kernel (:func:`agents.response_jit.plan_actions`) plans
  its rows itself (the built-in ``direct`` and ``control`` only; a new kind plans in ``replan``).

Every step the compiled kernel plans every row (a row of a kind it does not know gets the exact
best response in the current world); then each registered kind may re-plan its own rows in place
(:meth:`OptimizerKind.replan`), in registration order. A new kind (say, a learned policy trained
by gradient steps) is one file: a subclass with its declarations and a NumPy ``replan``, passed
to :func:`register_kind`. Codes are small integers in registration order (``direct`` 0,
``control`` 1), stored per agent in ``Population.kind``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from mesaopt.agents.planning import Planning
from mesaopt.agents.response import best_of_k, best_response, control_episodes, cost_structure
from mesaopt.agents.response_jit import OwnWorldRows, plans_in_own_worlds
from mesaopt.model.channels import World
from mesaopt.model.errors import ScenarioError


@dataclass(frozen=True)
class SandboxTrial:
    """What a kind may use to play its candidates in a principal's sandbox (no network).

    Arrays cover the candidates being played (rows ``rows`` of the batch).

    Attributes:
        world: The sandbox's channel parameters (the principal's model, or the true world).
        reward: Each candidate's marginal reward θ + βm in the sandbox, (C, d).
        perceive: The channels each candidate can act on in the sandbox, (C, d) bool.
        power: Planning power, (C,) (0 = exact).
        gain: Control gains, (C,).
        episodes: Number of sandbox episodes (``selection.eval_samples``).
        model_noise: Scoring noise of best-of-k planning (``agents.model_noise``).
        rng: The run's generator (every draw must come from it).
    """

    world: World
    reward: np.ndarray
    perceive: np.ndarray
    power: np.ndarray
    gain: np.ndarray
    episodes: int
    model_noise: float
    rng: np.random.Generator


class OptimizerKind:
    """A kind of mesa-optimizer; subclasses declare their properties and may re-plan rows."""

    name: ClassVar[str]
    perceives: ClassVar[str]
    carries: ClassVar[tuple[str, ...]]
    can_go_stale: ClassVar[tuple[str, ...]] = ()
    compiled: ClassVar[bool] = False
    code: ClassVar[int] = -1  # set by register_kind

    @classmethod
    def replan(cls, planning: Planning, rows: np.ndarray) -> None:
        """Re-plan ``planning.action[rows]`` in place where the compiled plan is not this kind's.

        Args:
            planning: The step's planning inputs.
            rows: The agents of this kind, (R,) sorted.
        """
        if not cls.compiled:
            raise NotImplementedError(f"kind {cls.name!r} must define replan")

    @classmethod
    def sandbox_actions(
        cls, trial: SandboxTrial, rows: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Play candidates of this kind in the sandbox: what they show and what they carry.

        The default is a planner that plays its exact best response in every episode. A kind
        whose behaviour differs (a learned policy, say) overrides it; the built-in kinds are
        also played by the compiled sandbox kernel (:mod:`agents.sandbox_jit`), which this
        method defines for them.

        Args:
            trial: The sandbox and the candidates' traits.
            rows: The candidates of this kind, (R,), indices into the trial's arrays.

        Returns:
            ``(shown, carried)``: the mean effort over the episodes (what the principal scores)
            and the effort carried into deployment, (R, d) each.
        """
        plan = best_response(trial.reward[rows], trial.world.cost_matrix, trial.perceive[rows])
        return plan, plan


#: The registered kinds by name, in code order.
KINDS: dict[str, type[OptimizerKind]] = {}
#: The kinds the compiled step kernel plans itself (it knows feedback control and direct planning).
_COMPILED = ("direct", "control")


def register_kind(kind: type[OptimizerKind]) -> type[OptimizerKind]:
    """Register a kind (usable as a class decorator); its code is the next free integer.

    The registry is per process: a kind registered in a notebook exists in that notebook's runs
    (``engine="serial"`` sweeps included), not in separately started sweep workers or in the
    ``mesaopt`` command, unless the module that registers it is imported there too.

    Args:
        kind: The kind's class.

    Returns:
        The class, with its ``code`` set.

    Raises:
        ValueError: If a kind of that name is registered already, the name is reserved, a
            declaration is missing, or a kind the compiled kernel does not know claims
            ``compiled = True``.
    """
    if kind.name in KINDS or kind.name == "mixed":
        raise ValueError(f"optimizer kind {kind.name!r} is registered already or reserved")
    for attribute in ("perceives", "carries"):
        if not hasattr(kind, attribute):
            raise ValueError(f"optimizer kind {kind.name!r} must declare {attribute!r}")
    if kind.compiled and kind.name not in _COMPILED:
        raise ValueError(
            f"optimizer kind {kind.name!r}: only {', '.join(_COMPILED)} are planned by the "
            "compiled kernel; a new kind sets compiled = False and plans in replan()"
        )
    kind.code = max((k.code for k in KINDS.values()), default=-1) + 1
    if kind.code > np.iinfo(np.int8).max:
        raise ValueError("too many optimizer kinds for an int8 code")
    KINDS[kind.name] = kind
    return kind


def unregister_kind(name: str) -> None:
    """Remove a kind added with :func:`register_kind` (the built-in kinds stay).

    Raises:
        KeyError: If no such kind is registered.
        ValueError: For a built-in kind.
    """
    if name in _COMPILED:
        raise ValueError(f"optimizer kind {name!r} is built in")
    del KINDS[name]


def kind_names() -> np.ndarray:
    """Kind names by code, as an object array (``kind_names()[population.kind]``)."""
    names = np.full(max((k.code for k in KINDS.values()), default=-1) + 1, "", dtype=object)
    for kind in KINDS.values():
        names[kind.code] = kind.name
    return names


def check_optimizer(name: str, source: str | None = None) -> None:
    """Refuse an ``agents.optimizer`` that names no registered kind (before anything runs).

    Args:
        name: The scenario's ``agents.optimizer``.
        source: The scenario file, for the message.

    Raises:
        ScenarioError: Naming ``agents.optimizer`` and the registered kinds.
    """
    if name != "mixed" and name not in KINDS:
        registered = ", ".join([*KINDS, "mixed"])
        raise ScenarioError(
            "agents.optimizer",
            f"unknown optimizer kind {name!r}; registered: {registered}",
            source,
        )


def kind_of(name: str) -> type[OptimizerKind]:
    """The registered kind called ``name``.

    Raises:
        KeyError: With the registered names, if there is none.
    """
    try:
        return KINDS[name]
    except KeyError:
        raise KeyError(f"unknown optimizer kind {name!r}; registered: {', '.join(KINDS)}") from None


def codes_that_can_go_stale(what: str) -> np.ndarray:
    """Codes of the kinds whose ``can_go_stale`` includes ``what``, (K,) int."""
    return np.array([k.code for k in KINDS.values() if what in k.can_go_stale], dtype=np.int8)


@register_kind
class Direct(OptimizerKind):
    """A planner: it optimizes on the world model its sandbox gave it.

    With ``agents.power = "exact"`` it plays the exact best response (a quadratic programme
    over a ≥ 0 on the channels it perceives, :func:`agents.response.best_response`); with
    ``power = k`` it plays the best of k sampled plans scored with model noise
    (:func:`agents.response.best_of_k`: log2 k bits of optimization). Its world model is the
    world epoch it was deployed into, so after an unannounced regime change it plans for a world
    that is gone until it is retrained (the essay's stale direct mesa-optimizer).
    """

    name = "direct"
    perceives = "its world model (channel parameters as of its deployment), its neighbours' efforts"
    carries = ("theta", "epoch")
    can_go_stale = ("world_model",)
    compiled = True

    @classmethod
    def exact_plans(
        cls, planning: Planning, rows: np.ndarray, into: np.ndarray | None = None
    ) -> np.ndarray:
        """Exact best responses of ``rows``, each in its own world model (its deployment epoch).

        Compiled (:func:`agents.response_jit.plans_in_own_worlds`); the definition is
        :meth:`exact_plans_numpy`.

        Args:
            planning: The step's planning inputs.
            rows: Agents, (R,) sorted.
            into: Every agent's efforts, (N, d): if given, the plans are written into its rows
                ``rows`` (no (R, d) copy to scatter) and it is returned.

        Returns:
            Their efforts, (R, d), or ``into``.
        """
        pop = planning.population
        rows = np.asarray(rows, dtype=np.int64)
        plans = np.empty((len(rows), planning.world.d)) if into is None else into
        if len(rows) == 0:
            return plans
        epochs = pop.epoch[rows]
        used = np.flatnonzero(np.bincount(epochs))  # the world models in use, ascending
        worlds = [planning.worlds[int(e)] for e in used]
        # K as best_response sees it: diagonal, or a shared budget with the s it reads off K.
        structures = [cost_structure(w.cost_matrix) for w in worlds]
        if any(not c.diagonal and c.substitution is None for c in structures):
            found = cls.exact_plans_numpy(planning, rows)  # another K: the enumeration
            if into is None:
                return found
            into[rows] = found
            return into
        index = np.zeros(int(used[-1]) + 1, dtype=np.int64)  # epoch -> its world model's row
        index[used] = np.arange(len(used))
        plans_in_own_worlds(
            OwnWorldRows(
                rows=rows,
                model=index[epochs],
                theta=pop.theta,
                beta_of=np.ascontiguousarray(planning.beta_of, dtype=float),
                neighbour_effort=planning.neighbour_effort,
                capacity=pop.capacity,
                metric=np.stack([w.metric for w in worlds]).astype(float),
                peer=np.stack([w.peer for w in worlds]).astype(float),
                level=np.stack([w.level for w in worlds]).astype(np.int64),
                cost=np.stack([np.diag(w.cost_matrix) for w in worlds]).astype(float),
                root=np.stack([np.sqrt(np.diag(w.cost_matrix)) for w in worlds]).astype(float),
                substitution=np.array([c.substitution or 0.0 for c in structures]),
                diagonal=np.array([c.diagonal for c in structures], dtype=np.bool_),
                out=plans,
                out_row=rows if into is not None else np.arange(len(rows), dtype=np.int64),
            )
        )
        return plans

    @classmethod
    def exact_plans_numpy(cls, planning: Planning, rows: np.ndarray) -> np.ndarray:
        """:meth:`exact_plans` in NumPy: the definition the compiled kernel is held to."""
        pop = planning.population
        plans = np.empty((len(rows), planning.world.d))
        epochs = pop.epoch[rows]
        for epoch in np.unique(epochs):
            mine = epochs == epoch
            model = planning.worlds[int(epoch)]
            plans[mine] = best_response(
                planning.reward_in(model, rows[mine]),
                model.cost_matrix,
                model.perceives(pop.capacity[rows[mine]]),
            )
        return plans

    @classmethod
    def replan(cls, planning: Planning, rows: np.ndarray) -> None:
        """Stale and best-of-k planners: the compiled kernel planned in the current world."""
        pop = planning.population
        power = pop.power[rows]
        exact = rows[power == 0]
        stale = exact[pop.epoch[exact] != planning.world.epoch]  # exact: only the stale ones
        if len(stale):
            cls.exact_plans(planning, stale, into=planning.action)
        sampled = rows[power > 0]
        if len(sampled) == 0:
            return
        keys = pop.epoch[sampled] * (int(power.max()) + 1) + pop.power[sampled]
        for key in np.unique(keys):  # one call per (world model, power), in key order
            group = sampled[keys == key]
            model = planning.worlds[int(pop.epoch[group[0]])]
            planning.action[group] = best_of_k(
                planning.reward_in(model, group),
                model.cost_matrix,
                model.perceives(pop.capacity[group]),
                int(pop.power[group[0]]),
                planning.agents.model_noise,
                planning.rng,
            )

    @classmethod
    def sandbox_actions(
        cls, trial: SandboxTrial, rows: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact planners play their best response; best-of-k ones sample one plan and keep it.

        A best-of-k planner plans once per sandbox (its plan is a fixed effort, like the exact
        planner's), so its episodes differ only by their noise.
        """
        shown = np.empty((len(rows), trial.world.d))
        power = trial.power[rows]
        for k in np.unique(power):
            mine = power == k
            group = rows[mine]
            if k == 0:
                shown[mine] = best_response(
                    trial.reward[group], trial.world.cost_matrix, trial.perceive[group]
                )
            else:
                shown[mine] = best_of_k(
                    trial.reward[group],
                    trial.world.cost_matrix,
                    trial.perceive[group],
                    int(k),
                    trial.model_noise,
                    trial.rng,
                )
        return shown, shown


@register_kind
class Control(OptimizerKind):
    """A feedback controller: it follows the realized, noisy gradient of its own reward.

    Sensing model: each step it knows the marginal reward r of its effort in the current world
    (its goals, its piece rate, its neighbours' pull: it is paid and moved by them as they are),
    and it feels its marginal cost at the output it realized last step, K(a + ε): it cannot
    tell its effort from its luck. Its law is projected gradient ascent with its own gain γ,
    ``a ← max(0, a + γ·(r − K(a + ε)))`` on its perceived channels
    (:func:`agents.response.control_update`). It needs no model of levels, so it tracks a
    shifted optimum with lag; but γ was tuned by selection in the sandbox's cost curvature.
    On one channel of cost c the error shrinks by the factor 1 − γc per step: γc < 1 crawls
    towards the optimum, 1 < γc < 2 overshoots and rings down, and γc ≥ 2 never settles (with
    a ≥ 0 it falls into a cycle between 0 and γr). A gain tuned for the sandbox's cost goes
    stale when cost changes: a cost rise past 2/γ makes a tuned controller oscillate, a fall
    makes it crawl.
    """

    name = "control"
    perceives = (
        "the marginal reward of its effort in the current world, and its marginal cost at "
        "last step's realized output"
    )
    carries = ("theta", "gain", "action")
    can_go_stale = ("gain",)
    compiled = True

    @classmethod
    def replan(cls, planning: Planning, rows: np.ndarray) -> None:
        """Nothing: the compiled kernel's feedback step is final."""

    @classmethod
    def sandbox_actions(
        cls, trial: SandboxTrial, rows: np.ndarray, episode_noise: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Run each candidate's control law for ``trial.episodes`` episodes from rest.

        Episode e plays a_e and realizes y_e = a_e + ε_e; the law then moves to
        ``a_{e+1} = max(0, a_e + γ(r − K y_e))`` on the perceived channels, starting from
        a_0 = 0. The principal scores the mean outcome, so a gain that crawls or rings scores
        less than one that settles fast: selection tunes γ to the sandbox's curvature.

        Args:
            trial: The sandbox and the candidates' traits.
            rows: The control candidates, (R,).
            episode_noise: Their noise per episode, (E, R, d); drawn from the sandbox world
                (``trial.world.sample_noise``) when None.

        Returns:
            The mean effort over the episodes and the effort after the last update, (R, d).
        """
        if episode_noise is None:
            episode_noise = np.stack(
                [trial.world.sample_noise(trial.rng, len(rows)) for _ in range(trial.episodes)]
            )
        return control_episodes(
            trial.reward[rows],
            trial.world.cost_matrix,
            trial.perceive[rows],
            trial.gain[rows],
            episode_noise,
        )
