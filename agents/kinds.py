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
from typing import Any, ClassVar

import numpy as np

from mesaopt.agents.response import best_of_k, best_response
from mesaopt.model.channels import World
from mesaopt.model.errors import ScenarioError


@dataclass(frozen=True)
class Planning:
    """What a kind may use to re-plan its rows in step 3 (arrays are the whole population's).

    Attributes:
        world: The current world.
        worlds: Every world epoch so far (an agent's world model is ``worlds[epoch[i]]``).
        population: The population (its ``action`` is still the previous step's effort).
        beta_of: Each agent's contract slope, (N,).
        neighbour_effort: G a of the previous step, (N, d).
        reward: Marginal reward θ + βm + δ⊙(G a) in the current world, (N, d).
        action: The compiled kernel's efforts, (N, d): re-plan ``action[rows]`` in place.
        agents: The scenario's ``[agents]`` section (power, model noise, gain).
        rng: The run's generator (every draw must come from it).
    """

    world: World
    worlds: list[World]
    population: Any
    beta_of: np.ndarray
    neighbour_effort: np.ndarray
    reward: np.ndarray
    action: np.ndarray
    agents: Any
    rng: np.random.Generator

    def reward_in(self, world: World, rows: np.ndarray) -> np.ndarray:
        """Marginal rewards θ + βm + δ⊙(G a) of ``rows`` as ``world`` says they are."""
        pop = self.population
        return (
            pop.theta[rows]
            + self.beta_of[rows, None] * world.metric
            + world.peer * self.neighbour_effort[rows]
        )


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
    def exact_plans(cls, planning: Planning, rows: np.ndarray) -> np.ndarray:
        """Exact best responses of ``rows``, each in its own world model (its deployment epoch).

        Args:
            planning: The step's planning inputs.
            rows: Agents, (R,) sorted.

        Returns:
            Their efforts, (R, d).
        """
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
        power = planning.agents.power
        if power == "exact":  # only the stale ones
            stale = rows[pop.epoch[rows] != planning.world.epoch]
            if len(stale):
                planning.action[stale] = cls.exact_plans(planning, stale)
            return
        epochs = pop.epoch[rows]
        for epoch in np.unique(epochs):
            group = rows[epochs == epoch]
            model = planning.worlds[int(epoch)]
            planning.action[group] = best_of_k(
                planning.reward_in(model, group),
                model.cost_matrix,
                model.perceives(pop.capacity[group]),
                power,
                planning.agents.model_noise,
                planning.rng,
            )


@register_kind
class Control(OptimizerKind):
    """A feedback controller: it follows the realized, noisy gradient of its own reward.

    Each step it moves its effort by ``gain · (r − K a + ε_last)`` (projected on a ≥ 0 and its
    perceived channels; :func:`agents.response.control_update`): it needs no model of levels,
    so it tracks a shifted optimum with lag, and it chases the noise it felt.
    """

    name = "control"
    perceives = "the realized gradient of its reward in the current world, with last step's noise"
    carries = ("theta",)
    can_go_stale = ()
    compiled = True

    @classmethod
    def replan(cls, planning: Planning, rows: np.ndarray) -> None:
        """Nothing: the compiled kernel's feedback step is final."""
