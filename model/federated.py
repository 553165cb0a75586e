"""Federated (post-hoc) updates: a principal refits its value belief from its agents' reports.

Every ``federated.every`` steps (step 8 of :mod:`model.model`) each agent of the principal reports
the value it realized per channel, ``y_k · v_jk`` plus ``report_noise`` noise; a ``misreport``
share of them spoof it with their own objective, ``y_k · θ_ik`` (input spoofing). The principal
refits v̂ by least squares on the channels it perceives
(:meth:`agents.principal.Principal.refit_values`), takes the current world as its world model (so
a regime change it had missed is now in its sandbox and contract), and redesigns its contract.
When it trains on value, the refit belief is its new training signal and it retrains its worst
agents with it (the essay's post-hoc updating). One ``events`` row per perceived channel.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from mesaopt.model.selection import redesign_contract, retrain_worst

if TYPE_CHECKING:
    from mesaopt.agents.principal import Principal
    from mesaopt.model.model import MesaOptModel


def federated_updates(model: MesaOptModel, step: int, outputs: np.ndarray) -> None:
    """Step 8: update every principal whose ``federated.every`` divides ``step``.

    Args:
        model: The model.
        step: The current step.
        outputs: This step's realized outputs y = a + ε, (N, d).
    """
    for principal in model.principals:
        every = principal.config.federated.every
        if every and step % every == 0:
            federated_update(model, principal, outputs, step)


def federated_update(
    model: MesaOptModel, principal: Principal, outputs: np.ndarray, step: int
) -> None:
    """Refit one principal's value belief from its agents' (possibly spoofed) reports.

    Args:
        model: The model.
        principal: The updating principal.
        outputs: This step's realized outputs, (N, d).
        step: The current step.
    """
    config = principal.config.federated
    members = model.members[principal.index]
    if len(members) == 0:
        return
    y = outputs[members]
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
    if principal.config.train_on == "value":
        # Post-hoc updating: the refit belief is the new training signal; retrain with it.
        retrain_worst(model, principal, reason="federated", step=step)
