"""The schemas of the tables a run records, declared once: ``agents``, ``selections``, ``events``.

Every row batch the model hands its recorder (:class:`model.recording.Recorder`) is built here,
so a table's columns, their order and their types are written down in one place; docs/tables.md
documents each column. The ``steps`` rows are built by :func:`model.metrics.aggregate_steps` (one
row per principal and ``all``), the ``network`` table by the network module. Everything here is
plain column assembly: no model state, no random draws.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

#: ``events`` columns and the value a row leaves unset takes.
EVENT_DEFAULTS: dict[str, Any] = {
    "step": 0,
    "kind": "",
    "principal": "",
    "agent_id": -1,
    "channel": "",
    "field": "",
    "old": np.nan,
    "new": np.nan,
    "detail": "",
}
_EVENT_DTYPES = {
    "step": np.int64,
    "kind": object,
    "principal": object,
    "agent_id": np.int64,
    "channel": object,
    "field": object,
    "old": float,
    "new": float,
    "detail": object,
}

#: ``selections`` columns, one row per slot filled (docs/tables.md).
SELECTION_COLUMNS = (
    "step",
    "principal",
    "agent_id",
    "reason",
    "n",
    "eval_samples",
    "beta",
    "chosen_proxy",
    "chosen_expected_proxy",
    "winners_curse",
    "chosen_true",
    "candidates_mean_true",
    "candidates_sd_true",
    "candidates_max_true",
    "candidates_mean_proxy",
    "candidates_mean_expected_proxy",
    "sandbox",
    "sandbox_epoch",
    "kind",
    "capacity",
    "power",
    "gain",
    "deceptive",
    "deployed_true",
    "sandbox_gap",
)


def event_row(step: int, kind: str, **fields: Any) -> dict[str, Any]:
    """One ``events`` row: ``kind`` at ``step`` with the given fields, the rest at their defaults.

    Args:
        step: The step the event happened at.
        kind: ``regime``, ``contract``, ``audit`` or ``federated``.
        **fields: Any other ``events`` column.

    Returns:
        The row, in column order.

    Raises:
        KeyError: If a field is not an ``events`` column.
    """
    unknown = set(fields) - set(EVENT_DEFAULTS)
    if unknown:
        raise KeyError(f"not an events column: {sorted(unknown)}")
    return {**EVENT_DEFAULTS, "step": step, "kind": kind, **fields}


def empty_events() -> dict[str, np.ndarray]:
    """The ``events`` table with no rows (so that its columns exist when nothing happens)."""
    return {name: np.zeros(0, dtype=dtype) for name, dtype in _EVENT_DTYPES.items()}


def selection_rows(
    *,
    step: int,
    principal: str,
    slots: np.ndarray,
    reason: str,
    n: int,
    eval_samples: int,
    beta: float,
    sandbox: str,
    sandbox_epoch: int,
    result: Any,
    kind_names: np.ndarray,
    deployed_true: np.ndarray,
) -> dict[str, np.ndarray]:
    """The ``selections`` rows of one retraining: one per slot, from its best-of-n result.

    Args:
        step: The step of the retraining (0 for the initial build).
        principal: The principal's name.
        slots: The agent ids filled, (S,).
        reason: ``initial``, ``scheduled``, ``audit`` or ``federated``.
        n: Candidates per slot.
        eval_samples: Sandbox episodes per candidate.
        beta: The contract slope the candidates were scored under.
        sandbox: ``model`` or ``world`` (``selection.sandbox``).
        sandbox_epoch: The world epoch the sandbox ran.
        result: The :class:`agents.sandbox.SelectionResult` of the retraining.
        kind_names: Kind names by code.
        deployed_true: True value of each winner's deployed plan, (S,).

    Returns:
        Columns of :data:`SELECTION_COLUMNS`.
    """
    count = len(slots)
    columns = {  # in SELECTION_COLUMNS order (tests/model/test_tables.py holds it to that)
        "step": np.full(count, step, dtype=np.int64),
        "principal": np.full(count, principal, dtype=object),
        "agent_id": slots.astype(np.int64),
        "reason": np.full(count, reason, dtype=object),
        "n": np.full(count, n, dtype=np.int64),
        "eval_samples": np.full(count, eval_samples, dtype=np.int64),
        "beta": np.full(count, beta),
        "chosen_proxy": result.chosen_score,
        "chosen_expected_proxy": result.chosen_expected_score,
        "winners_curse": result.chosen_score - result.chosen_expected_score,
        "chosen_true": result.chosen_true,
        "candidates_mean_true": result.candidates_mean_true,
        "candidates_sd_true": result.candidates_sd_true,
        "candidates_max_true": result.candidates_max_true,
        "candidates_mean_proxy": result.candidates_mean_score,
        "candidates_mean_expected_proxy": result.candidates_mean_expected_score,
        "sandbox": np.full(count, sandbox, dtype=object),
        "sandbox_epoch": np.full(count, sandbox_epoch, dtype=np.int64),
        "kind": kind_names[result.traits.kind],
        "capacity": result.traits.capacity.astype(np.int64),
        "power": result.traits.power.astype(np.int64),
        "gain": result.traits.gain.astype(float),
        "deceptive": result.traits.deceptive.astype(bool),
        "deployed_true": deployed_true,
        "sandbox_gap": result.chosen_true - deployed_true,
    }
    return columns


def agent_snapshot(
    *,
    step: int,
    index: np.ndarray,
    principal_names: np.ndarray,
    principal: np.ndarray,
    kind_names: np.ndarray,
    capacity: np.ndarray,
    category_names: Sequence[str],
    primary: np.ndarray,
    flag_names: Sequence[str],
    flags: np.ndarray,
    deployed_at: np.ndarray,
    stale: np.ndarray,
    outside: np.ndarray,
    channel_names: Sequence[str],
    action: np.ndarray,
    theta: np.ndarray,
    per_agent: dict[str, np.ndarray],
    parts: dict[str, np.ndarray],
) -> dict[str, np.ndarray]:
    """Columns of the ``agents`` table (one row per agent of a snapshot step; docs/tables.md).

    Args:
        step: The snapshot's step.
        index: Agent ids of the rows, (R,).
        principal_names: Principal names by principal index, (J,).
        principal: Each row's principal index, (R,).
        kind_names: Each row's mesa-optimizer kind name, (R,).
        capacity: Each row's capacity, (R,).
        category_names: Primary category names, by code.
        primary: Each row's primary category code, (R,).
        flag_names: Flag names, in flag-column order.
        flags: Flags, (R, len(flag_names)).
        deployed_at: Step each row's agent was deployed at, (R,).
        stale: Whether each row plans with a stale world model, (R,).
        outside: Whether each row acts outside its principal's selection range, (R,).
        channel_names: Channel names, in column order.
        action: Efforts, (R, d).
        theta: Objectives, (R, d).
        per_agent: Per-agent metrics of the step, each (R,).
        parts: The principal loss's parts by part name (:data:`model.measures.PARTS`), each
            (R,): the ``loss_<part>`` columns.

    Returns:
        The columns, in table order.
    """
    snapshot: dict[str, np.ndarray] = {
        "step": np.full(len(index), step, dtype=np.int64),
        "agent_id": index,
        "node": index.copy(),
        "principal": principal_names[principal],
        "optimizer": kind_names,
        "capacity": capacity,
        "category": np.asarray(category_names, dtype=object)[primary],
    }
    for name, column in zip(flag_names, flags.T, strict=True):
        snapshot[f"is_{name}"] = column.copy()
    snapshot["deployed_at"] = deployed_at
    snapshot["stale"] = stale.copy()
    snapshot["outside_selection_range"] = outside.copy()
    for k, name in enumerate(channel_names):
        snapshot[f"effort_{name}"] = action[:, k].copy()
    for k, name in enumerate(channel_names):
        snapshot[f"objective_{name}"] = theta[:, k].copy()
    snapshot.update({key: value.copy() for key, value in per_agent.items()})
    snapshot.update({f"loss_{part}": value.copy() for part, value in parts.items()})
    return snapshot
