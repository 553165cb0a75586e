"""Federated (post-hoc) updates: a principal refits its value belief from its agents' reports.

Every ``federated.every`` steps (step 8 of :mod:`model.model`) each agent of the principal reports
the value it realized per channel, ``y_k · v_jk`` plus ``report_noise`` noise; a ``misreport``
share of them spoof it with their own objective, ``y_k · θ_ik`` (input spoofing). The principal
refits v̂ by least squares on the channels it perceives
(:meth:`agents.principal.Principal.refit_values`), takes the current world as its world model (so
a regime change it had missed is now in its sandbox and contract), and redesigns its contract.
When it trains on value, the refit belief is its new training signal and it retrains its worst
agents with it (the essay's post-hoc updating). One ``events`` row per perceived channel.

With ``federated.screen`` the update also screens its agents for departures from what they showed
in selection (:func:`screen_agents`): the principal knows each agent's sandbox effort ā_i, and
under the hypothesis that the agent still acts so, its realized output on the principal's
perceived channels P is ā_i + ε with ε of the variances its world model believes. The statistic
χ²_i = Σ_{k∈P} (y_ik − ā_ik)² / σ_k² is compared with the (1 − ``screen_level``) quantile of the
χ² distribution with |P| degrees of freedom; agents above it are retrained (reason ``screen``).
For Gaussian noise an honest agent that acts as in its sandbox is flagged with probability
``screen_level``, and an agent whose effort departs by Δ on P with probability
``ncx2.sf(q, |P|, Σ Δ_k²/σ_k²)`` (the noncentral χ² with that noncentrality): the screen's
rates are closed-form, which the tests check for deceptive agents. Departures it also flags:
peer effects, stale world models, a control law still moving — anything that makes deployment
differ from the sandbox.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from scipy.special import chdtri

from mesaopt.model.selection import redesign_contract, retrain, retrain_worst

if TYPE_CHECKING:
    from mesaopt.agents.principal import Principal
    from mesaopt.model.model import MesaOptModel


def federated_updates(
    model: MesaOptModel, step: int, action: np.ndarray, noise: np.ndarray
) -> None:
    """Step 8: update every principal whose ``federated.every`` divides ``step``.

    Args:
        model: The model.
        step: The current step.
        action: This step's efforts a, (N, d).
        noise: This step's output noise ε, (N, d): the realized outputs are y = a + ε (added
            only for the members of an updating principal, not every step for everyone).
    """
    for principal in model.principals:
        every = principal.config.federated.every
        if every and step % every == 0:
            federated_update(model, principal, action, noise, step)


def federated_update(
    model: MesaOptModel,
    principal: Principal,
    action: np.ndarray,
    noise: np.ndarray,
    step: int,
) -> None:
    """Refit one principal's value belief from its agents' (possibly spoofed) reports.

    Args:
        model: The model.
        principal: The updating principal.
        action: This step's efforts, (N, d).
        noise: This step's output noise, (N, d).
        step: The current step.
    """
    config = principal.config.federated
    members = model.members[principal.index]
    if len(members) == 0:
        return
    y = action[members] + noise[members]  # realized outputs
    reports = y * principal.true_values + config.report_noise * model.rng.standard_normal(y.shape)
    spoofers = model.rng.random(len(members)) < config.misreport
    reports[spoofers] = (y * model.population.theta[members])[spoofers]
    old = principal.value_belief.copy()
    new = principal.refit_values(y, reports, model.world)
    for k in np.flatnonzero(principal.perceived):
        model.record_event(
            "federated",
            principal=principal.name,
            channel=model.world.names[k],
            field="value_belief",
            old=float(old[k]),
            new=float(new[k]),
            detail=f"{int(spoofers.sum())} of {len(members)} reports spoofed",
        )
    redesign_contract(model, principal)
    if config.screen:
        screen_agents(model, principal, y, step)
    if principal.config.train_on == "value":
        # Post-hoc updating: the refit belief is the new training signal; retrain with it.
        retrain_worst(model, principal, reason="federated", step=step)


def screen_agents(
    model: MesaOptModel, principal: Principal, outputs: np.ndarray, step: int
) -> np.ndarray:
    """Retrain the principal's agents whose output departs from their sandbox effort.

    Args:
        model: The model.
        principal: The screening principal.
        outputs: This step's realized outputs of the principal's agents, in the order of
            ``model.members[principal.index]``, (M, d).
        step: The current step.

    Returns:
        The agents flagged, (F,) sorted ids.
    """
    members = model.members[principal.index]
    world = principal.world_model
    perceived = principal.perceived & (world.noise_var > 0)
    if len(members) == 0 or not perceived.any():
        return members[:0]
    gap = (outputs - model.population.sandbox_action[members])[:, perceived]
    statistic = np.einsum("ij,ij->i", gap, gap / world.noise_var[perceived])
    # chi2.isf(level, |P|) without scipy.stats, whose import costs every command about a second
    # (the same function underneath: scipy.stats computes it with chdtri).
    threshold = chdtri(int(perceived.sum()), principal.config.federated.screen_level)
    flagged = members[statistic > threshold]
    model.record_event(
        "screen",
        principal=principal.name,
        new=float(len(flagged)),
        detail=f"{len(flagged)} of {len(members)} agents depart from their sandbox behaviour",
    )
    if len(flagged):
        retrain(model, principal, flagged, reason="screen", step=step)
        redesign_contract(model, principal)
    return flagged
