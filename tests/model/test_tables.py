"""Table schemas are declared once (model/tables.py) and every row batch follows them."""

from __future__ import annotations

import numpy as np
import pytest

from mesaopt.model.model import MesaOptModel
from mesaopt.model.tables import (
    EVENT_DEFAULTS,
    SELECTION_COLUMNS,
    empty_events,
    event_row,
)


class _Recorder:
    def __init__(self) -> None:
        self.batches: dict[str, list] = {}

    def __call__(self, table, rows) -> None:
        self.batches.setdefault(table, []).append(rows)


def _columns(batch) -> tuple[str, ...]:
    return tuple(batch[0]) if isinstance(batch, list) else tuple(batch)


def test_every_batch_of_a_table_has_the_declared_columns_in_order():
    recorder = _Recorder()
    model = MesaOptModel(
        network__n_agents=60,
        rng=3,
        recorder=recorder,
        principals__0__audit__rate=0.5,
        principals__0__audit__replace=True,
        run__agent_every=1,
    )
    model.run_for(10)  # selection.every = 10 in the default scenario
    for batch in recorder.batches["selections"]:
        assert _columns(batch) == SELECTION_COLUMNS
    reasons = {r for batch in recorder.batches["selections"] for r in batch["reason"]}
    assert {"initial", "scheduled"} <= reasons
    events = recorder.batches["events"]
    assert _columns(events[0]) == tuple(EVENT_DEFAULTS)  # the empty declaration
    assert all(_columns(batch) == tuple(EVENT_DEFAULTS) for batch in events)
    snapshots = recorder.batches["agents"]
    assert len({_columns(batch) for batch in snapshots}) == 1  # declaration = every snapshot


def test_event_rows_refuse_unknown_columns_and_fill_defaults():
    row = event_row(3, "audit", principal="lab", new=2.0)
    assert row["step"] == 3 and row["agent_id"] == -1 and np.isnan(row["old"])
    with pytest.raises(KeyError, match="not an events column"):
        event_row(3, "audit", colour="red")
    assert {name: len(col) for name, col in empty_events().items()} == dict.fromkeys(
        EVENT_DEFAULTS, 0
    )
