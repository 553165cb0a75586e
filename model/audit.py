"""Audits: principals sample their agents, catch gaming, fine it and may retrain the caught.

Each step (step 5 of :mod:`model.model`) every agent is audited with its principal's
``audit.rate``. An audit observes effort on the channels the principal perceives and calls
gaming whatever the principal's own beliefs call it (:meth:`agents.principal.Principal.
gaming_channels`: perceived, rewarded by the metric, not valued, m_k > 0 ≥ v̂_k): an agent whose
effort there exceeds ``audit.tolerance`` is caught and pays ``audit.penalty``, a transfer to its
principal booked in the step's payoffs (:mod:`model.measures_jit`). Gaming on a channel beyond the
principal's capacity is invisible to its audits: that is how a mesa-superoptimizer escapes them.
With ``audit.replace`` the caught agents are retrained at once, after measurement (step 7).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from mesaopt.model.selection import retrain

if TYPE_CHECKING:
    from mesaopt.model.model import MesaOptModel


def audit(model: MesaOptModel, action: np.ndarray) -> np.ndarray:
    """Step 5: sample audits; return who is caught gaming (they pay the penalty in step 6).

    Args:
        model: The model.
        action: This step's efforts, (N, d).

    Returns:
        Whether each agent was caught, (N,) bool (all False when no principal audits, and then
        no random draw is made).
    """
    pop = model.population
    principals = model.principals
    rates = np.array([p.config.audit.rate for p in principals])
    if not rates.any():
        return np.zeros(pop.size, dtype=bool)
    audited = model.rng.random(pop.size) < rates[pop.principal]
    gaming = np.stack([p.gaming_channels() for p in principals]).astype(float)
    tolerance = np.array([p.config.audit.tolerance for p in principals])
    # Only the audited agents' effort is looked at (a few per cent of them).
    looked = np.flatnonzero(audited)
    of = pop.principal[looked]
    gaming_effort = np.einsum("ij,ij->i", action[looked], gaming[of])
    found = gaming_effort > tolerance[of]
    caught = np.zeros(pop.size, dtype=bool)
    caught[looked] = found
    n_audited = np.bincount(of, minlength=len(principals))
    n_caught = np.bincount(of[found], minlength=len(principals))
    for j, principal in enumerate(principals):
        if n_caught[j]:
            model.record_event(
                "audit",
                principal=principal.name,
                detail=f"{int(n_caught[j])} of {int(n_audited[j])} audited caught",
                new=float(n_caught[j]),
            )
    return caught


def replace_caught(model: MesaOptModel, caught: np.ndarray, step: int) -> None:
    """Step 7: retrain the caught agents of every principal with ``audit.replace``.

    Args:
        model: The model.
        caught: This step's catches, (N,) bool.
        step: The current step.
    """
    everyone = np.flatnonzero(caught)  # sorted, as each principal's members are
    of = model.population.principal[everyone]
    for j, principal in enumerate(model.principals):
        if principal.config.audit.replace:
            retrain(model, principal, everyone[of == j], reason="audit", step=step)
