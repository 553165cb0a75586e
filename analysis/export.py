"""Exporting a sweep folder's tables as CSV (or as single Parquet files): ``run.py export``.

The tidy dataset ``DIR/steps/`` (one Parquet file per run) is streamed file by file into one
``steps.csv`` (or ``steps.parquet``), so exporting a large sweep does not load it into memory; so
are the runs' ``network`` tables (``DIR/runs/<run_id>/network.*``, read by
:func:`analysis.run_folder.read_network_table`) into one ``network.csv`` with a ``run_id`` column
first. ``runs``, ``run_metrics``, ``summary`` and, after a sensitivity analysis, ``sensitivity``
are converted as they are. Files are written through a temporary name and renamed. A folder
other than the sweep folder is written only if it is new, empty, or an earlier export (it holds
:data:`EXPORT_MARK`, written before the first table): never into someone else's files, nor into
another sweep's folder.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from mesaopt import __version__
from mesaopt.analysis.run_folder import MissingTableError, read_network_table, unreadable_table
from mesaopt.model.atomic_folder import check_reused_folder, pid_alive
from mesaopt.model.errors import ScenarioError, Terminated, raise_terminated
from mesaopt.model.recording import write_json_atomic

FORMATS = ("csv", "parquet")
TABLES = ("runs", "run_metrics", "summary", "sensitivity")
#: The mark of an export folder other than the sweep folder (the sweep, the format, the version).
EXPORT_MARK = "export.json"


class _Sink:
    """Writes Arrow tables to one CSV or Parquet file, atomically on close."""

    def __init__(self, path: Path, fmt: str, schema: pa.Schema) -> None:
        self.path = path
        self.tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        self.schema = schema
        if fmt == "csv":
            self.writer = pacsv.CSVWriter(self.tmp, schema)
        else:
            self.writer = pq.ParquetWriter(self.tmp, schema, compression="zstd")

    def write(self, table: pa.Table) -> None:
        self.writer.write_table(table.select(self.schema.names).cast(self.schema))

    def close(self) -> None:
        self.writer.close()
        os.replace(self.tmp, self.path)


def export_sweep(
    sweep_dir: str | Path, fmt: str = "csv", out: str | Path | None = None
) -> list[Path]:
    """Write a sweep's tables as single CSV (or Parquet) files.

    Args:
        sweep_dir: The sweep folder (holding ``sweep.json``).
        fmt: ``"csv"`` or ``"parquet"``.
        out: Destination folder (default: the sweep folder).

    Every table is written into a hidden staging folder first and moved in only once all of
    them were read and written: a table that cannot be read (or Ctrl-C) leaves the destination
    as it was (a folder this call made is removed).

    Returns:
        The files written (``network`` only if some run recorded one: older runs did not).

    Raises:
        ScenarioError: If ``sweep_dir`` is not a sweep folder, the format is unknown, or ``out``
            is a file, a link, unwritable, or a folder that is not empty and not an export
            folder (nothing is written then).
    """
    sweep_dir = Path(sweep_dir)
    if fmt not in FORMATS:
        raise ScenarioError("--format", f"one of {', '.join(FORMATS)}, got {fmt!r}")
    if not (sweep_dir / "sweep.json").is_file():
        raise ScenarioError(str(sweep_dir), "not a sweep folder (no sweep.json)")
    out_dir = Path(out) if out is not None else sweep_dir
    into_sweep = out_dir.resolve() == sweep_dir.resolve()
    if not into_sweep:  # never into someone else's folder, another sweep's included
        check_reused_folder(out_dir, (EXPORT_MARK,), "a mesaopt export folder")
    made = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    mark = out_dir / EXPORT_MARK
    earlier_mark = mark.read_bytes() if not into_sweep and mark.is_file() else None
    contents = {"mesaopt": __version__, "sweep": str(sweep_dir.resolve()), "format": fmt}
    if not into_sweep and earlier_mark is None:
        # marked ours before anything else is written: an export that is killed half-way
        # leaves a folder the next export recognises and writes again
        write_json_atomic(mark, contents)
    _remove_stale_staging(out_dir)
    staging = out_dir / f".export.tmp-{os.getpid()}"
    staging.mkdir(exist_ok=True)
    try:
        names = _write_tables(sweep_dir, staging, fmt, into_sweep)
        for name in names:  # checked before any replace: no table is replaced unless all can be
            target = out_dir / name
            if target.is_dir() and not target.is_symlink():  # os.replace cannot replace it
                raise ScenarioError("--out", f"{target} is a folder, not a table: nothing written")
        # every table read and written: only now do they replace the old, all of them (a Ctrl-C
        # here waits for the last rename, so the folder never mixes two exports' tables)
        with _interrupt_deferred() as interrupted:
            for name in names:
                os.replace(staging / name, out_dir / name)
            if not into_sweep:
                write_json_atomic(mark, contents)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if made:
            shutil.rmtree(out_dir, ignore_errors=True)
        elif earlier_mark is not None:
            mark.write_bytes(earlier_mark)
        elif not into_sweep:
            mark.unlink(missing_ok=True)
        raise
    staging.rmdir()
    if interrupted:  # the export is complete and consistent: stop now, as the signal asked
        raise Terminated if signal.SIGTERM in interrupted else KeyboardInterrupt
    return [out_dir / name for name in names]


@contextmanager
def _interrupt_deferred() -> Iterator[list[int]]:
    """Hold a Ctrl-C (SIGINT) or SIGTERM that arrives inside the block instead of raising it there.

    Yields the list the held signals are appended to: the caller decides what to do once the
    block is done. Only the main thread receives signals; elsewhere the block runs as it is.
    SIGTERM is held only where the command line's handler raises it
    (:func:`~model.errors.raise_terminated`): with the default action it ends the process, as
    asked, and a program's own handler is left to run.
    """
    caught: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield caught
        return
    held = [signal.SIGINT]
    if signal.getsignal(signal.SIGTERM) is raise_terminated:
        held.append(signal.SIGTERM)
    previous = {
        signum: signal.signal(signum, lambda signum, frame: caught.append(signum))
        for signum in held
    }
    try:
        yield caught
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _remove_stale_staging(out_dir: Path) -> None:
    """Remove the staging folders of exports into ``out_dir`` whose process is gone (kill -9)."""
    for folder in out_dir.glob(".export.tmp-*"):
        pid = folder.name.rpartition("-")[2]
        number = int(pid) if pid.isascii() and pid.isdigit() else None
        if number is None or number == os.getpid() or not pid_alive(number):
            shutil.rmtree(folder, ignore_errors=True)


def _write_tables(sweep_dir: Path, staging: Path, fmt: str, into_sweep: bool) -> list[str]:
    """Write every table of the sweep into ``staging``; return the file names written.

    Into the sweep folder itself, a Parquet table already is its own export: it is skipped.
    """
    written: list[str] = []
    parts = sorted((sweep_dir / "steps").glob("*.parquet"))
    if parts:
        with _naming(parts[0]):
            sink = _Sink(staging / f"steps.{fmt}", fmt, pq.read_schema(parts[0]))
        for part in parts:
            with _naming(part):
                sink.write(pq.read_table(part))
        sink.close()
        written.append(sink.path.name)
    network = _export_networks(sweep_dir, staging / f"network.{fmt}", fmt)
    if network is not None:
        written.append(network.name)
    for name in TABLES:
        source = sweep_dir / f"{name}.parquet"
        if not source.is_file() or (fmt == "parquet" and into_sweep):
            continue  # no such table, or it would replace itself
        with _naming(source):
            table = pq.read_table(source)
        sink = _Sink(staging / f"{name}.{fmt}", fmt, table.schema)
        sink.write(table)
        sink.close()
        written.append(sink.path.name)
    return written


@contextmanager
def _naming(path: Path) -> Iterator[None]:
    """Name the file in the error when Arrow cannot read a table (a sweep holds hundreds)."""
    try:
        yield
    except pa.ArrowException as err:
        raise unreadable_table(path, err) from None


def _export_networks(sweep_dir: Path, target: Path, fmt: str) -> Path | None:
    """Stream every finished run's ``network`` table into ``target``, ``run_id`` first.

    Runs are taken in run-id order; failed runs (no manifest) and runs recorded before the
    network table existed (their manifest names no ``network`` file) are skipped. Returns None
    when no run has a network table.

    Raises:
        ScenarioError: A run's manifest names a network table that is missing or unreadable.
    """
    sink = None
    for folder in sorted(p for p in (sweep_dir / "runs").glob("*") if p.is_dir()):
        try:
            manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        if manifest.get("status") == "failed":  # stopped by a non-finite number
            continue
        try:  # a table the manifest names but that is bad is an error (ScenarioError)
            table = read_network_table(folder, manifest)
        except MissingTableError:
            continue  # recorded by a mesaopt before the network table
        table = table.add_column(0, "run_id", pa.array([folder.name] * table.num_rows, pa.string()))
        if sink is None:
            sink = _Sink(target, fmt, table.schema)
        sink.write(table)
    if sink is None:
        return None
    sink.close()
    return sink.path
