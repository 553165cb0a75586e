"""Selection in the model: which slots a principal retrains when, and what it deploys there.

A principal fills a slot by best-of-n selection in its sandbox (:func:`agents.sandbox.
select_best_of_n`: n whole candidate optimizers from its pool, each played with its own kind and
scored on the training signal over ``eval_samples`` noisy episodes). This module is the schedule
around it, the sandbox it runs in, and the deployment after it:

- **when**: at the initial build (every slot, ``reason = "initial"``), every ``selection.every``
  steps for the worst ``selection.fraction`` of a principal's agents by last step's proxy
  (``scheduled``), after an audit catch with ``audit.replace`` (``audit``, :mod:`model.audit`) and
  after a federated update when training on value (``federated``, :mod:`model.federated`);
- **where**: :func:`sandbox_of`: the principal's own model of the world (its world epoch, only
  the channels within its capacity) with ``selection.sandbox = "model"``, the true current world
  with ``"world"``;
- **what is deployed**: the winner whole — its kind, power, capacity and gain; its objective
  (a deceptive winner's own goals, without the imprinted part it showed) plus the agent's
  private goal noise; the effort it carries out of the sandbox; the sandbox's world epoch as its
  world model; and a clean slate (no felt noise; ranked by its own proxy until it has acted);
- **what is recorded**: one ``selections`` row per slot (:func:`model.tables.selection_rows`) and
  the step's regressional-Goodhart statistics (winner's curse, shrinkage);
- **what follows**: the principal re-estimates its agents' mean objective ḡ from who was
  selected and redesigns its contract (:func:`redesign_contract`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from mesaopt.agents.kinds import kind_names
from mesaopt.agents.response import best_response
from mesaopt.agents.sandbox import Sandbox, select_best_of_n
from mesaopt.model.group_stats_jit import smallest
from mesaopt.model.tables import selection_rows

if TYPE_CHECKING:
    from mesaopt.agents.principal import Principal
    from mesaopt.model.model import MesaOptModel


def sandbox_of(model: MesaOptModel, principal: Principal) -> Sandbox:
    """The sandbox ``principal`` selects in now (``selection.sandbox``).

    ``"model"``: the principal's world model (the world epoch of its last federated update, or
    the initial one), in which only the channels within its capacity exist. ``"world"``: the
    true current world, each candidate acting on the channels its own capacity perceives.
    """
    config = principal.config.selection
    own = config.sandbox == "model"
    return Sandbox(
        world=principal.world_model if own else model.world,
        capacity=principal.capacity if own else None,
        beta=principal.beta,
        score_weights=principal.signal,
        true_values=principal.true_values,
        eval_samples=config.eval_samples,
        model_noise=model.config.agents.model_noise,
    )


def retrain(
    model: MesaOptModel, principal: Principal, slots: np.ndarray, *, reason: str, step: int
) -> None:
    """Fill ``slots`` with newly selected mesa-optimizers and record one row per slot.

    Args:
        model: The model.
        principal: The principal that selects.
        slots: Agent ids to fill, (S,) (sorted; nothing happens when empty).
        reason: Why (``initial``, ``scheduled``, ``audit``, ``federated``).
        step: The current step.
    """
    if len(slots) == 0:
        return
    pop = model.population
    config = principal.config.selection
    pool = model.pools[principal.index]
    sandbox = sandbox_of(model, principal)
    result = select_best_of_n(
        sandbox=sandbox,
        pool=pool,
        slots=len(slots),
        prior_mean=principal.prior_mean(),
        prior_scale=config.prior_scale,
        imprinted=config.imprint * principal.signal,
        n=config.n,
        rng=model.rng,
    )
    traits = result.traits
    old_kind = pop.kind[slots].copy()
    private = pool.goals_scale * model.rng.standard_normal(result.theta.shape)
    pop.selected[slots] = result.theta
    pop.theta[slots] = result.own_theta + private
    pop.capacity[slots] = traits.capacity
    pop.kind[slots] = traits.kind
    pop.power[slots] = traits.power
    pop.gain[slots] = traits.gain
    pop.deceptive[slots] = traits.deceptive
    pop.action[slots] = result.action
    pop.sandbox_action[slots] = result.shown
    pop.epoch[slots] = sandbox.world.epoch
    pop.deployed_at[slots] = step
    # A new agent has felt no noise yet, and is ranked by its own proxy, not by the proxy of
    # the agent it replaced.
    pop.last_noise[slots] = 0.0
    pop.last_proxy[slots] = result.action @ model.world.metric
    model.kinds_changed(slots, old_kind)
    principal.record_selection_range(result.action_low, result.action_high)
    deployed = deployed_true_value(model, principal, slots)
    model.record(
        "selections",
        selection_rows(
            step=step,
            principal=principal.name,
            slots=slots,
            reason=reason,
            n=config.n,
            eval_samples=config.eval_samples,
            beta=principal.beta,
            sandbox=config.sandbox,
            sandbox_epoch=sandbox.world.epoch,
            result=result,
            kind_names=kind_names(),
            deployed_true=deployed,
        ),
    )
    model.selection_stats.append(
        (
            principal.index,
            result.chosen_score - result.chosen_expected_score,
            result.chosen_expected_score - result.candidates_mean_expected_score,
            result.chosen_score - result.candidates_mean_score,
        )
    )


def deployed_true_value(model: MesaOptModel, principal: Principal, slots: np.ndarray) -> np.ndarray:
    """The true value to its principal of what each new agent will do once deployed.

    Recorded, never shown to the principal: the exact best response of the agent's deployed
    objective (its private goal noise included) under the contract, with its own capacity, on
    no network, in the world it acts on — its world model for a planner (a kind whose world
    model can go stale), the current world for every other kind — valued with the principal's
    true values. Against ``chosen_true`` (the value of what it showed in the sandbox) it is
    the sandbox-versus-deployment gap: a deceptive agent, or a super-optimizer gaming a channel
    the sandbox did not have.
    """
    pop = model.population
    world_model = model.can_go_stale[slots]
    plan = np.empty((len(slots), model.d))
    for planner, world in ((True, model.worlds[int(pop.epoch[slots[0]])]), (False, model.world)):
        rows = np.flatnonzero(world_model == planner)
        if len(rows):
            agents = slots[rows]
            plan[rows] = best_response(
                pop.theta[agents] + principal.beta * world.metric,
                world.cost_matrix,
                world.perceives(pop.capacity[agents]),
            )
    return plan @ principal.true_values


def retrain_worst(model: MesaOptModel, principal: Principal, *, reason: str, step: int) -> None:
    """Retrain the worst ``selection.fraction`` of a principal's agents by last step's proxy.

    Args:
        model: The model.
        principal: The principal that retrains.
        reason: Why (``scheduled`` or ``federated``).
        step: The current step.
    """
    members = model.members[principal.index]
    count = int(np.floor(principal.config.selection.fraction * len(members) + 0.5))
    if count:
        worst = smallest(model.population.last_proxy[members], count)  # ties: first by index
        retrain(model, principal, members[worst], reason=reason, step=step)
        redesign_contract(model, principal)


def scheduled_retraining(model: MesaOptModel, step: int) -> None:
    """Step 2: every principal whose ``selection.every`` divides ``step`` retrains its worst.

    Args:
        model: The model.
        step: The current step.
    """
    for principal in model.principals:
        config = principal.config.selection
        if config.every and step % config.every == 0 and config.fraction > 0:
            retrain_worst(model, principal, reason="scheduled", step=step)


def initial_selection(model: MesaOptModel) -> None:
    """Step 0: design each contract on the prior, then fill every slot and redesign on the result.

    Args:
        model: The model being built.
    """
    risk = model.config.agents.risk_aversion
    for principal in model.principals:
        principal.design_contract(risk)
    for j, principal in enumerate(model.principals):
        retrain(model, principal, model.members[j], reason="initial", step=0)
        redesign_contract(model, principal)


def redesign_contract(model: MesaOptModel, principal: Principal) -> None:
    """Re-estimate the principal's belief ḡ of its agents' mean objective; redesign its contract.

    ḡ is the mean of the objectives selection put into its agents (without their private goal
    noise, which the principal cannot see). A change of β, and one of α, is an ``events`` row
    each (``contract``, field ``beta`` / ``alpha``).

    Args:
        model: The model.
        principal: The principal.
    """
    members = model.members[principal.index]
    if len(members):
        principal.mean_objective = model.population.selected[members].mean(axis=0)
    old = {"beta": principal.beta, "alpha": principal.alpha}
    design = principal.design_contract(model.config.agents.risk_aversion)
    for field, new in (("beta", design.beta), ("alpha", design.alpha)):
        if new != old[field]:
            model.record_event(
                "contract", principal=principal.name, field=field, old=old[field], new=new
            )
