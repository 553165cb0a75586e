"""Recording a run: row batches streamed into the run's tables, in fixed row groups.

The model hands row batches to a :class:`Recorder` (``recorder(table, rows)``). Every batch is
first checked for non-finite numbers (:mod:`model.finite`: a :class:`~model.finite.NonFiniteError`
stops the run before the batch is kept). Rows are buffered per table and written into the
table's file as soon as they fill a *row group* (:meth:`Recorder.group_rows` rows: about
``row_group_bytes`` of data, at most 2**20 rows), so memory holds at most one row group per table
whatever the number of steps; row dicts are converted to Arrow every :data:`SETTLE_ROWS` rows.
Row-group boundaries depend only on the rows, never on when they were written, so the same run
gives byte-identical files. :meth:`Recorder.close` writes the rest of every table and then
``manifest.json``.

The recorder writes into a folder that nobody else reads until it is finished: the runner
(:func:`model.runner.run_simulation`) builds the run in a hidden sibling of its target and swaps
it in whole (:mod:`model.atomic_folder`), so half-written files are never visible.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from mesaopt.model.atomic_folder import kill_hook
from mesaopt.model.finite import check_batch

#: The tables of a run folder (columns in docs/tables.md); ``network`` is recorded once, at step 0.
TABLES = ("steps", "agents", "selections", "events", "network")
FORMATS = ("parquet", "csv")
#: Bytes of data (8 per value) a row group holds: what a table buffers in memory at most.
ROW_GROUP_BYTES = 16 * 1024 * 1024
#: Most rows in a row group (pyarrow's default).
MAX_GROUP_ROWS = 1024 * 1024
#: Fewest rows in a row group (tables with very many columns).
MIN_GROUP_ROWS = 1024
#: Row dicts held as Python objects (~100 bytes a value) before they are converted to Arrow.
SETTLE_ROWS = 1024


def dictionary_columns(schema: pa.Schema) -> list[str]:
    """The columns a Parquet file dictionary-encodes: all but the floating-point ones.

    Strings and integers repeat (labels, steps, sizes, ids) and shrink in a dictionary (Parquet
    bit-packs flags whatever is asked); measured floats almost never repeat, so Arrow would build a
    dictionary for each column chunk only to fall back to plain encoding. Measured on the
    ``selections`` table of a run of 10**6 agents × 100 steps (2.2 million rows, 25 columns): 2.7 s
    and 242 MB with every column dictionary-encoded (Arrow's default), 1.0 s and 194 MB like this,
    the same values read back (docs/performance.md).
    """
    return [field.name for field in schema if not pa.types.is_floating(field.type)]


def _column(values: Any) -> pa.Array:
    array = np.asarray(values)
    # Object columns hold strings; an empty one would otherwise get Arrow's null type.
    return pa.array(array, type=pa.string() if array.dtype == object else None)


def _to_arrow(rows: list[dict[str, Any]] | dict[str, np.ndarray]) -> pa.Table:
    if isinstance(rows, dict):
        return pa.table({key: _column(value) for key, value in rows.items()})
    return pa.Table.from_pylist(rows)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary file name next to ``path``; rename it onto ``path`` when the block ends.

    The temporary name keeps ``path``'s suffix, so writers that infer the format from it
    (pandas, ``np.save``, matplotlib) behave as they would on ``path``. If the block raises, the
    temporary file is removed and ``path`` is left as it was.

    Args:
        path: The file to (re)write.

    Yields:
        The temporary path to write to.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` as JSON to ``path`` through a temporary file and an atomic rename."""
    with atomic_path(path) as tmp:
        tmp.write_text(
            json.dumps(data, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8"
        )


class Recorder:
    """Streams the model's tables into one folder.

    Args:
        out_dir: The folder (created if missing); the runner hands a private staging folder.
        fmt: ``"parquet"`` or ``"csv"``.
        group_rows: Rows per row group for every table (default: from ``row_group_bytes``).
        row_group_bytes: Data a row group holds, counted at 8 bytes a value: a table of c
            columns is written in groups of ``row_group_bytes / (8 c)`` rows (between 1,024
            and 2**20). It bounds what the recorder holds in memory per table.
        check_finite: Refuse non-finite numbers (:mod:`model.finite`); on by default.
    """

    def __init__(
        self,
        out_dir: str | Path,
        fmt: str = "parquet",
        group_rows: int | None = None,
        row_group_bytes: int = ROW_GROUP_BYTES,
        check_finite: bool = True,
    ):
        if fmt not in FORMATS:
            raise ValueError(f"format must be one of {FORMATS}")
        if group_rows is not None and group_rows < 1:
            raise ValueError("group_rows must be at least 1")
        self.out_dir = Path(out_dir)
        self.fmt = fmt
        self.fixed_group_rows = group_rows
        self.row_group_bytes = row_group_bytes
        self.check_finite = check_finite
        self._buffers: dict[str, list[pa.Table]] = {t: [] for t in TABLES}
        self._buffered: dict[str, int] = dict.fromkeys(TABLES, 0)
        self._schemas: dict[str, pa.Schema] = {}
        self._writers: dict[str, Any] = {}
        # Row-dict batches whose keys are exactly the table's columns, converted to Arrow in one
        # call when settled (one conversion per SETTLE_ROWS rows instead of one per step).
        self._pending: dict[str, list[list[dict[str, Any]]]] = {t: [] for t in TABLES}
        self._pending_rows: dict[str, int] = dict.fromkeys(TABLES, 0)
        self.row_counts: dict[str, int] = dict.fromkeys(TABLES, 0)
        self.paths: dict[str, Path] = {}
        #: Final tables written straight from memory by :meth:`close` (no row group of theirs
        #: had been written before), so that callers need not read them back.
        self.tables: dict[str, pa.Table] = {}

    def __call__(self, table: str, rows: list[dict[str, Any]] | dict[str, np.ndarray]) -> None:
        """Accept a batch of rows for ``table`` (a list of row dicts or a dict of columns).

        Raises:
            NonFiniteError: A value is not finite where the table allows none; the batch is
                not kept.
        """
        if self.check_finite:
            check_batch(table, rows)
        schema = self._schemas.get(table)
        if schema is not None and isinstance(rows, list):
            names = tuple(schema.names)
            if all(tuple(row) == names for row in rows):
                if rows:
                    self._pending[table].append(rows)
                    self._pending_rows[table] += len(rows)
                    self._count(table, len(rows))
                    if self._pending_rows[table] >= SETTLE_ROWS:
                        self._settle(table)
                return
        self._settle(table)
        batch = _to_arrow(rows)
        if schema is None:
            self._schemas[table] = batch.schema
        elif batch.num_rows and not batch.schema.equals(schema):
            batch = batch.select(schema.names).cast(schema)
        if batch.num_rows == 0:
            return
        self._buffers[table].append(batch)
        self._count(table, batch.num_rows)

    def declare(self, table: str, schema: pa.Schema) -> None:
        """Give ``table`` its columns if no batch has: an empty table is written with them.

        Args:
            table: The table.
            schema: Its columns, as its first batch would have set them.
        """
        self._schemas.setdefault(table, schema)

    def has_columns(self, table: str) -> bool:
        """True once some batch (or :meth:`declare`) has set ``table``'s columns."""
        return table in self._schemas

    def group_rows(self, table: str) -> int:
        """Rows per row group of ``table`` (a function of its columns only)."""
        if self.fixed_group_rows is not None:
            return self.fixed_group_rows
        schema = self._schemas.get(table)
        columns = max(1, len(schema.names)) if schema is not None else 1
        rows = self.row_group_bytes // (8 * columns)
        return int(min(MAX_GROUP_ROWS, max(MIN_GROUP_ROWS, rows)))

    def _count(self, table: str, rows: int) -> None:
        """Count buffered rows; write the table's full row groups once it holds one."""
        self._buffered[table] += rows
        self.row_counts[table] += rows
        if self._buffered[table] >= self.group_rows(table):
            self._write_groups(table, final=False)

    def _settle(self, table: str) -> None:
        """Convert the pending row-dict batches of ``table`` to Arrow, in their order.

        One conversion of all the rows gives the table's schema exactly when every batch, converted
        on its own and cast to the schema, would give the same values; otherwise the batches are
        converted one by one and cast, as the first batch of a table always is.
        """
        pending = self._pending[table]
        if not pending:
            return
        schema = self._schemas[table]
        rows = [row for batch in pending for row in batch]
        merged = pa.Table.from_pylist(rows)
        if merged.schema.equals(schema):
            self._buffers[table].append(merged)
        else:
            for batch in pending:
                self._buffers[table].append(_to_arrow(batch).select(schema.names).cast(schema))
        self._pending[table] = []
        self._pending_rows[table] = 0

    def _merged(self, table: str) -> pa.Table | None:
        """The buffered rows of ``table`` as one table (None when there are none)."""
        self._settle(table)
        buffers = self._buffers[table]
        if not buffers:
            return None
        merged = buffers[0] if len(buffers) == 1 else pa.concat_tables(buffers)
        self._buffers[table] = []
        self._buffered[table] = 0
        return merged

    def _writer(self, table: str) -> Any:
        writer = self._writers.get(table)
        if writer is None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            path = self.out_dir / f"{table}.{self.fmt}"
            schema = self._schemas.get(table, pa.schema([]))
            if self.fmt == "parquet":
                writer = pq.ParquetWriter(
                    path, schema, compression="zstd", use_dictionary=dictionary_columns(schema)
                )
            else:
                writer = pacsv.CSVWriter(path, schema)
            self._writers[table] = writer
            self.paths[table] = path
        return writer

    def _write_groups(self, table: str, final: bool) -> pa.Table | None:
        """Write the buffered rows of ``table`` in whole row groups (and the rest if ``final``).

        Returns:
            When ``final`` and no row group of the table had been written: all its rows, as
            written (else None).
        """
        merged = self._merged(table)
        size = self.group_rows(table)
        first = table not in self._writers
        if merged is None:
            merged = self._schemas.get(table, pa.schema([])).empty_table()
        whole = merged.num_rows if final else merged.num_rows - merged.num_rows % size
        if whole or (final and first):
            writer = self._writer(table)
            if self.fmt == "parquet":
                writer.write_table(merged.slice(0, whole), row_group_size=size)
            else:
                writer.write_table(merged.slice(0, whole))
        if whole < merged.num_rows:  # a partial row group stays in memory
            self._buffers[table] = [merged.slice(whole)]
            self._buffered[table] = merged.num_rows - whole
        return merged if final and first else None

    def close(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Write the rest of every table, then the manifest.

        Args:
            manifest: Run metadata; format, row counts and file names are added.

        Returns:
            The manifest as written (the table paths are in ``self.paths``).
        """
        self.out_dir.mkdir(parents=True, exist_ok=True)
        kill_hook("before_tables")
        for table in TABLES:
            whole = self._write_groups(table, final=True)
            self._writers.pop(table).close()
            if whole is not None:
                self.tables[table] = whole
            kill_hook("table_written")
        kill_hook("before_manifest")
        manifest = dict(manifest)
        manifest["format"] = self.fmt
        manifest["row_counts"] = dict(self.row_counts)
        manifest["files"] = {table: path.name for table, path in self.paths.items()}
        write_json_atomic(self.out_dir / "manifest.json", manifest)
        return manifest

    def discard(self) -> None:
        """Close open files and drop what is buffered (the caller removes the folder)."""
        for writer in self._writers.values():
            try:
                writer.close()
            except (OSError, pa.ArrowException):  # the folder is thrown away anyway
                pass
        self._writers.clear()
        self._buffers = {t: [] for t in TABLES}
        self._pending = {t: [] for t in TABLES}
