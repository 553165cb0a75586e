"""Regime changes: scheduled replacements of channel fields, each one a new epoch of the world.

A ``[[regimes]]`` entry replaces fields of one channel (value, metric, cost, noise, externality,
peer, level) at step ``at``. The world moves to its next epoch
(:meth:`model.channels.World.changed`) and every earlier epoch is kept in ``model.worlds``:
deployed agents go on planning with the epoch their sandbox gave them until they are retrained,
and principals keep theirs until a federated update refreshes it, so after an unannounced change
both can be stale (the essay's "shared model" failure, measured as causal Goodhart). A change of
``value`` is a change of what the principals truly want, so it moves their true values too. Each
replaced field is an ``events`` row.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from mesaopt.model.model import MesaOptModel
    from mesaopt.model.scenario import Scenario


class RegimeSchedule:
    """The scenario's regime changes, by step.

    Args:
        scenario: The validated scenario.
    """

    def __init__(self, scenario: Scenario) -> None:
        self._at: dict[int, list[tuple[int, dict[str, Any]]]] = {}
        for regime in scenario.regimes:
            self._at.setdefault(regime.at, []).append(
                (scenario.channel_index(regime.channel), dict(regime.set))
            )

    def changes_at(self, step: int) -> list[tuple[int, dict[str, Any]]]:
        """The ``(channel index, fields)`` changes scheduled at ``step``, in scenario order."""
        return self._at.get(step, [])


def apply_regime_changes(model: MesaOptModel, step: int) -> None:
    """Step 1: apply the changes scheduled at ``step``, one new world epoch per change.

    Args:
        model: The model whose world changes.
        step: The current step.
    """
    for channel, fields in model.regimes.changes_at(step):
        before = model.world
        model.world = model.world.changed(channel, fields)
        model.worlds.append(model.world)
        name = model.world.names[channel]
        for field, new in fields.items():
            if field == "value":
                for principal in model.principals:
                    principal.true_values[channel] = float(new)
            old = getattr(before, "costs" if field == "cost" else field, None)
            numeric = field != "noise"
            model.record_event(
                "regime",
                channel=name,
                field=field,
                old=float(old[channel]) if numeric else np.nan,
                new=float(new) if numeric else np.nan,
                detail="" if numeric else str(new),
            )
