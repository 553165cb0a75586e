"""Selection in the model: which slots a principal retrains when, and what it deploys there.

A principal fills a slot by best-of-n selection in its sandbox (:func:`agents.sandbox.
select_best_of_n`: n candidate objectives scored on the training signal over ``eval_samples``
noisy episodes). This module is the schedule around it and the deployment after it:

- **when**: at the initial build (every slot, ``reason = "initial"``), every ``selection.every``
  steps for the worst ``selection.fraction`` of a principal's agents by last step's proxy
  (``scheduled``), after an audit catch with ``audit.replace`` (``audit``, :mod:`model.audit`) and
  after a federated update when training on value (``federated``, :mod:`model.federated`);
- **what is deployed**: the winner's objective plus the agent's private goal noise, its
  sandbox action, the current world epoch as its world model, and a clean slate (no felt noise;
  ranked by its own sandbox proxy until it has acted);
- **what is recorded**: one ``selections`` row per slot (:func:`model.tables.selection_rows`) and
  the step's regressional-Goodhart statistics (winner's curse, shrinkage);
- **what follows**: the principal re-estimates its agents' mean objective ḡ from who was
  selected and redesigns its contract (:func:`redesign_contract`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from mesaopt.agents.sandbox import select_best_of_n
from mesaopt.model.group_stats_jit import radix_argsort
from mesaopt.model.tables import selection_rows

if TYPE_CHECKING:
    from mesaopt.agents.principal import Principal
    from mesaopt.model.model import MesaOptModel


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
    result = select_best_of_n(
        world=model.world,
        capacity=pop.capacity[slots],
        prior_mean=principal.prior_mean(),
        prior_scale=config.prior_scale,
        n=config.n,
        eval_samples=config.eval_samples,
        beta=principal.beta,
        score_weights=principal.signal,
        true_values=principal.true_values,
        rng=model.rng,
    )
    private = model.config.agents.goals.scale * model.rng.standard_normal(result.theta.shape)
    pop.selected[slots] = result.theta
    pop.theta[slots] = result.theta + private
    pop.action[slots] = result.action
    pop.epoch[slots] = model.world.epoch
    pop.deployed_at[slots] = step
    # A new agent has felt no noise yet, and is ranked by its own sandbox proxy, not by the
    # proxy of the agent it replaced.
    pop.last_noise[slots] = 0.0
    pop.last_proxy[slots] = result.action @ model.world.metric
    principal.record_selection_range(result.action_low, result.action_high)
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
            result=result,
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
        order = radix_argsort(model.population.last_proxy[members])  # = stable argsort
        retrain(model, principal, np.sort(members[order[:count]]), reason=reason, step=step)
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
    noise, which the principal cannot see). A change of β is an ``events`` row.

    Args:
        model: The model.
        principal: The principal.
    """
    members = model.members[principal.index]
    if len(members):
        principal.mean_objective = model.population.selected[members].mean(axis=0)
    old = principal.beta
    new = principal.design_contract(model.config.agents.risk_aversion)
    if new != old:
        model.record_event("contract", principal=principal.name, field="beta", old=old, new=new)
