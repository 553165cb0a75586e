"""Recording a run: streaming row batches to Parquet (or CSV) with atomic, crash-safe writes.

The model hands row batches to a :class:`Recorder` (``recorder(table, rows)``). Rows are buffered
and flushed as closed Parquet *parts* under ``OUT/.partial/<table>/`` once a buffer holds
``flush_rows`` rows, so memory does not grow with the number of steps beyond one buffer, and a
crash leaves every flushed part readable. :meth:`Recorder.close` merges the parts of each table
into ``OUT/<table>.parquet`` (or ``.csv``) through a temporary file and an atomic rename, writes
``manifest.json`` last the same way, and removes the partial folder. A run folder therefore holds
either complete tables and a manifest, or (after a crash) nothing but ``.partial/``.
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

TABLES = ("steps", "agents", "selections", "events")
FORMATS = ("parquet", "csv")


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
        flush_rows: Rows buffered per table before a part is written.
    """

    def __init__(self, out_dir: str | Path, fmt: str = "parquet", flush_rows: int = 200_000):
        if fmt not in FORMATS:
            raise ValueError(f"format must be one of {FORMATS}")
        self.out_dir = Path(out_dir)
        self.fmt = fmt
        self.flush_rows = flush_rows
        self.partial = self.out_dir / ".partial"
        self._started = False
        self._buffers: dict[str, list[pa.Table]] = {t: [] for t in TABLES}
        self._buffered: dict[str, int] = dict.fromkeys(TABLES, 0)
        self._parts: dict[str, int] = dict.fromkeys(TABLES, 0)
        self._schemas: dict[str, pa.Schema] = {}
        self.row_counts: dict[str, int] = dict.fromkeys(TABLES, 0)
        self.paths: dict[str, Path] = {}

    def __call__(self, table: str, rows: list[dict[str, Any]] | dict[str, np.ndarray]) -> None:
        """Accept a batch of rows for ``table`` (a list of row dicts or a dict of columns)."""
        batch = _to_arrow(rows)
        schema = self._schemas.get(table)
        if schema is None:
            self._schemas[table] = batch.schema
        elif batch.num_rows:
            batch = batch.select(schema.names).cast(schema)
        if batch.num_rows == 0:
            return
        self._buffers[table].append(batch)
        self._buffered[table] += batch.num_rows
        self.row_counts[table] += batch.num_rows
        if self._buffered[table] >= self.flush_rows:
            self._flush(table)

    def _flush(self, table: str) -> None:
        if not self._buffers[table]:
            return
        if not self._started:  # nothing touches the disk before the first flush
            if self.partial.exists():
                shutil.rmtree(self.partial)
            self._started = True
        folder = self.partial / table
        folder.mkdir(parents=True, exist_ok=True)
        merged = pa.concat_tables(self._buffers[table])
        path = folder / f"part-{self._parts[table]:05d}.parquet"
        tmp = path.with_suffix(".tmp")
        pq.write_table(merged, tmp, compression="zstd")
        os.replace(tmp, path)
        self._parts[table] += 1
        self._buffers[table] = []
        self._buffered[table] = 0

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
            self._flush(table)
            schema = self._schemas.get(table, pa.schema([]))
            final = self.out_dir / f"{table}.{self.fmt}"
            tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
            parts = sorted((self.partial / table).glob("part-*.parquet"))
            if self.fmt == "parquet":
                with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
                    for part in parts:
                        writer.write_table(pq.read_table(part).cast(schema))
            else:
                with pacsv.CSVWriter(tmp, schema) as writer:
                    for part in parts:
                        writer.write_table(pq.read_table(part).cast(schema))
            os.replace(tmp, final)
            paths[table] = final
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
