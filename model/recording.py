"""Recording a run: streaming row batches to Parquet (or CSV) with atomic, crash-safe writes.

The model hands row batches to a :class:`Recorder` (``recorder(table, rows)``). Rows are buffered
and flushed as closed Parquet *parts* under ``OUT/.partial/<table>/`` — the fullest buffer once
all buffers hold ``flush_bytes`` bytes, or a table's once it holds ``flush_rows`` rows if that is
set — so memory does not grow with the number of steps, and a crash leaves every flushed part
readable. :meth:`Recorder.close`
writes each table to ``OUT/<table>.parquet`` (or ``.csv``) through a temporary file and an atomic
rename — the flushed parts, then the rows still in memory (a small run never touches
``.partial/``) — writes ``manifest.json`` last the same way, and removes the partial folder. A
run folder therefore holds either complete tables and a manifest, or (after a crash) nothing but
``.partial/``.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

#: The tables of a run folder (columns in docs/tables.md); ``network`` is recorded once, at step 0.
TABLES = ("steps", "agents", "selections", "events", "network")
FORMATS = ("parquet", "csv")
#: Default bytes of Arrow data a table buffers in memory before it writes a part.
FLUSH_BYTES = 512 * 1024 * 1024


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
    """Streams the model's tables to one folder.

    Args:
        out_dir: The run folder (created if missing).
        fmt: ``"parquet"`` or ``"csv"``.
        flush_bytes: Bytes of Arrow data buffered (all tables together) before the table with
            the most is written as a part. Flushed parts are read back and written again into
            the final file at :meth:`close`, so a table that stays in memory is written once:
            the default, 512 MiB, holds the ~2.3 million ``selections`` rows of a 1e6-agent,
            100-step baseline run (~310 MB).
        flush_rows: Rows buffered per table before a part is written (None: no row limit).
    """

    def __init__(
        self,
        out_dir: str | Path,
        fmt: str = "parquet",
        flush_rows: int | None = None,
        flush_bytes: int = FLUSH_BYTES,
    ):
        if fmt not in FORMATS:
            raise ValueError(f"format must be one of {FORMATS}")
        self.out_dir = Path(out_dir)
        self.fmt = fmt
        self.flush_rows = flush_rows
        self.flush_bytes = flush_bytes
        self.partial = self.out_dir / ".partial"
        self._started = False
        self._buffers: dict[str, list[pa.Table]] = {t: [] for t in TABLES}
        self._buffered: dict[str, int] = dict.fromkeys(TABLES, 0)
        self._buffered_bytes: dict[str, int] = dict.fromkeys(TABLES, 0)
        self._parts: dict[str, int] = dict.fromkeys(TABLES, 0)
        self._schemas: dict[str, pa.Schema] = {}
        # Row-dict batches whose keys are exactly the table's columns, converted to Arrow in one
        # call when flushed (one conversion per table instead of one per step).
        self._pending: dict[str, list[list[dict[str, Any]]]] = {t: [] for t in TABLES}
        self.row_counts: dict[str, int] = dict.fromkeys(TABLES, 0)
        self.paths: dict[str, Path] = {}
        #: Final tables written straight from memory by :meth:`close` (none of their rows had been
        #: flushed to parts), so that callers need not read them back.
        self.tables: dict[str, pa.Table] = {}

    def __call__(self, table: str, rows: list[dict[str, Any]] | dict[str, np.ndarray]) -> None:
        """Accept a batch of rows for ``table`` (a list of row dicts or a dict of columns)."""
        schema = self._schemas.get(table)
        if schema is not None and isinstance(rows, list):
            names = tuple(schema.names)
            if all(tuple(row) == names for row in rows):
                if rows:
                    self._pending[table].append(rows)
                    self._count(table, len(rows))
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
        self._count(table, batch.num_rows, batch.nbytes)

    def _count(self, table: str, rows: int, nbytes: int | None = None) -> None:
        """Count buffered rows and bytes (estimated for row dicts); flush when full."""
        self._buffered[table] += rows
        self.row_counts[table] += rows
        if nbytes is None:  # row dicts, before conversion: about 8 bytes per column
            nbytes = 8 * rows * len(self._schemas[table].names)
        self._buffered_bytes[table] += nbytes
        if self.flush_rows is not None and self._buffered[table] >= self.flush_rows:
            self._flush(table)
        elif sum(self._buffered_bytes.values()) >= self.flush_bytes:
            # The budget is for all tables together: the fullest buffer goes to disk.
            self._flush(max(self._buffered_bytes, key=self._buffered_bytes.__getitem__))

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

    def _merged(self, table: str) -> pa.Table | None:
        """The buffered rows of ``table`` as one table (None when there are none)."""
        self._settle(table)
        buffers = self._buffers[table]
        if not buffers:
            return None
        merged = buffers[0] if len(buffers) == 1 else pa.concat_tables(buffers)
        self._buffers[table] = []
        self._buffered[table] = 0
        self._buffered_bytes[table] = 0
        return merged

    def _flush(self, table: str) -> None:
        merged = self._merged(table)
        if merged is None:
            return
        if not self._started:  # nothing touches the disk before the first flush
            if self.partial.exists():
                shutil.rmtree(self.partial)
            self._started = True
        folder = self.partial / table
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"part-{self._parts[table]:05d}.parquet"
        tmp = path.with_suffix(".tmp")
        pq.write_table(merged, tmp, compression="zstd")
        os.replace(tmp, path)
        self._parts[table] += 1

    def close(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Flush everything, write the final tables and the manifest atomically.

        Args:
            manifest: Run metadata; row counts and file names are added.

        Returns:
            The manifest as written (the table paths are in ``self.paths``).
        """
        paths: dict[str, Path] = {}
        self.out_dir.mkdir(parents=True, exist_ok=True)
        # A folder reused by an earlier run: until the new manifest lands it is not a complete run,
        # and no table of the other format may outlive it.
        (self.out_dir / "manifest.json").unlink(missing_ok=True)
        for table in TABLES:
            # Rows still in memory go straight into the final file (after any flushed parts).
            rest = self._merged(table)
            schema = self._schemas.get(table, pa.schema([]))
            final = self.out_dir / f"{table}.{self.fmt}"
            tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
            parts = (
                sorted((self.partial / table).glob("part-*.parquet")) if self._parts[table] else []
            )
            writer_type = pq.ParquetWriter if self.fmt == "parquet" else pacsv.CSVWriter
            options = {"compression": "zstd"} if self.fmt == "parquet" else {}
            with writer_type(tmp, schema, **options) as writer:
                for part in parts:
                    writer.write_table(pq.read_table(part).cast(schema))
                if rest is not None:
                    writer.write_table(rest)
            os.replace(tmp, final)
            paths[table] = final
            if not parts:
                self.tables[table] = rest if rest is not None else schema.empty_table()
            for other in FORMATS:
                if other != self.fmt:
                    (self.out_dir / f"{table}.{other}").unlink(missing_ok=True)
        manifest = dict(manifest)
        manifest["format"] = self.fmt
        manifest["row_counts"] = dict(self.row_counts)
        manifest["files"] = {table: path.name for table, path in paths.items()}
        write_json_atomic(self.out_dir / "manifest.json", manifest)
        shutil.rmtree(self.partial, ignore_errors=True)
        self.paths = paths
        return manifest

    def discard(self) -> None:
        """Remove what this recorder streamed to disk (after bad input, not after a crash)."""
        if self._started:
            shutil.rmtree(self.partial, ignore_errors=True)
