"""A Mesa ``DataCollector`` of the model's headline metrics, for ``mesa.batch_run`` and Mesa tools.

mesaopt records its tables through :class:`model.recording.Recorder`; Mesa's own tooling
(``mesa.batch_run``, visualization) reads ``model.datacollector`` instead.
:func:`make_datacollector` gives the model a collector whose model reporters read the ``all``
row of the last step's ``steps`` rows (NaN before the first step), so it costs a few dictionary
look-ups per step and no per-agent records.
"""

from __future__ import annotations

import math
from typing import Any

import mesa

#: ``steps`` columns (``principal = "all"`` row) reported to Mesa's DataCollector.
REPORTED = (
    "proxy",
    "value",
    "pay",
    "profit",
    "utility",
    "welfare",
    "principal_loss",
    "mesa_loss",
    "goodhart_regressional",
    "goodhart_extremal",
    "goodhart_causal",
    "goodhart_adversarial",
    "corr_proxy_value",
    "gini_utility",
    "share_stale",
    "n_caught",
)


def _all_row(model: Any) -> dict[str, Any]:
    for row in getattr(model, "last_steps", ()):
        if row.get("principal") == "all":
            return row
    return {}


def _reporter(name: str):
    def report(model: Any) -> float:
        value = _all_row(model).get(name, math.nan)
        return float(value) if value is not None else math.nan

    report.__name__ = f"report_{name}"
    return report


def make_datacollector() -> mesa.DataCollector:
    """Return a DataCollector with one model reporter per name in :data:`REPORTED`."""
    return mesa.DataCollector(model_reporters={name: _reporter(name) for name in REPORTED})
