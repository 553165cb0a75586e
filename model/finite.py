"""The non-finite guard: no table is written with an inf, or with a NaN where NaN means nothing.

The recorder (:class:`model.recording.Recorder`) checks every row batch before it keeps it: ±inf
is never a value of any column, and NaN only in the columns docs/tables.md gives it a meaning
(:data:`NAN_COLUMNS`: "no value", e.g. ``alpha`` of the ``all`` row, ``goodhart_regressional``
without a selection) and, in ``steps``, in every column of a group with no agents. The first other
non-finite value stops the run with a :class:`NonFiniteError` naming the step, table, column and
principal. Column batches cost one vectorised ``np.isfinite(...).all()`` per float column; row
dicts (the few ``steps`` and ``events`` rows of a step) one ``math.isfinite`` per float value.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

#: Columns where NaN is a documented value (docs/tables.md), by table; ``*`` ends a prefix.
NAN_COLUMNS: dict[str, tuple[str, ...]] = {
    "steps": (
        "alpha",
        "beta",
        "belief_*",
        "welfare_planner",
        "welfare_gap",
        "price_of_anarchy",
        "gini_utility",
        "goodhart_regressional",
        "selection_shrinkage",
        "corr_proxy_value",
        "corr_proxy_value_top",
    ),
    "events": ("old", "new"),
}


class NonFiniteError(RuntimeError):
    """A run produced a non-finite number where the tables allow none.

    Args:
        table: The table the row belonged to.
        column: The column.
        value: The value (inf, -inf or NaN).
        step: The row's step (None when the row has none).
        principal: The row's principal (None when the row has none).
    """

    def __init__(
        self,
        table: str,
        column: str,
        value: float,
        step: int | None = None,
        principal: str | None = None,
    ) -> None:
        self.table = table
        self.column = column
        self.value = value
        self.step = step
        self.principal = principal
        #: The likely cause, when the runner can name one (:meth:`explain`).
        self.cause: str | None = None
        super().__init__(self.one_line())

    def explain(self, cause: str | None) -> None:
        """Add the likely cause to the error's line (and its message)."""
        self.cause = cause
        self.args = (self.one_line(),)

    def one_line(self) -> str:
        """The error as one line: where the value appeared, what it was and, if known, why."""
        at = f"step {self.step}: " if self.step is not None else ""
        who = f" (principal {self.principal})" if self.principal else ""
        why = f"; {self.cause}" if self.cause else ""
        return f"{at}{self.table}.{self.column}{who} is {self.value}: the run is stopped{why}"

    def record(self) -> dict[str, Any]:
        """The failure as manifest data (``manifest["failure"]``)."""
        return {
            "table": self.table,
            "column": self.column,
            "value": str(self.value),
            "step": self.step,
            "principal": self.principal,
            "cause": self.cause,
        }


@functools.cache
def nan_allowed(table: str, column: str) -> bool:
    """Whether NaN is a documented value of ``table.column`` (:data:`NAN_COLUMNS`)."""
    for name in NAN_COLUMNS.get(table, ()):
        if column == name or (name.endswith("*") and column.startswith(name[:-1])):
            return True
    return False


def _scalar(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def check_columns(table: str, columns: dict[str, Any]) -> None:
    """Check a batch of columns (``{name: array}``).

    Args:
        table: The table.
        columns: The batch.

    Raises:
        NonFiniteError: At the first row (in column order) with a value the table does not allow.
    """
    for name, values in columns.items():
        array = np.asarray(values)
        if array.dtype.kind != "f" or not array.size:
            continue
        allow_nan = nan_allowed(table, name)
        if np.isfinite(array).all():
            continue
        bad = np.isinf(array) if allow_nan else ~np.isfinite(array)
        if allow_nan and table == "steps" and "n_agents" in columns:
            bad &= np.asarray(columns["n_agents"]) != 0
        if not bad.any():
            continue
        row = int(np.flatnonzero(bad)[0])
        step = columns.get("step")
        principal = columns.get("principal")
        raise NonFiniteError(
            table,
            name,
            float(array[row]),
            int(step[row]) if step is not None else None,
            str(principal[row]) if principal is not None else None,
        )


def check_rows(table: str, rows: list[dict[str, Any]]) -> None:
    """Check a batch of row dicts.

    Args:
        table: The table.
        rows: The rows.

    Raises:
        NonFiniteError: At the first value the table does not allow.
    """
    for row in rows:
        empty_group = table == "steps" and row.get("n_agents") == 0
        for name, value in row.items():
            if isinstance(value, float) and not math.isfinite(value):
                if math.isnan(value) and (empty_group or nan_allowed(table, name)):
                    continue
                step = row.get("step")
                principal = row.get("principal")
                raise NonFiniteError(
                    table,
                    name,
                    float(value),
                    int(_scalar(step)) if step is not None else None,
                    str(principal) if principal is not None else None,
                )


def check_batch(table: str, rows: list[dict[str, Any]] | dict[str, Any]) -> None:
    """Check a row batch as the model hands it to the recorder (row dicts or columns).

    Raises:
        NonFiniteError: See :func:`check_columns` and :func:`check_rows`.
    """
    if isinstance(rows, dict):
        check_columns(table, rows)
    else:
        check_rows(table, rows)
