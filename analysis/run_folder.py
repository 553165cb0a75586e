"""Reading what a run (or a sweep) left on disk: tables, manifest, scenario and network.

The figure, animation and report modules read runs through :func:`read_run` only, never a live
model. The network is one of the run's tables (``network``, written once by the model at step 0,
see :func:`model.network.network_table`); :attr:`RunTables.network` reads it back into the
:class:`~model.network.Network` the model used, entry for entry, without drawing anything again.
Runs recorded before that table existed raise :class:`MissingTableError`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

# (re-exported: what kind of folder it is, decided without reading a table)
from mesaopt.analysis.folder_kinds import (
    FailedRunError,
    NotARunError,
    is_run_folder,
    is_sweep_folder,
)
from mesaopt.model.errors import ScenarioError
from mesaopt.model.graphs import grid_positions
from mesaopt.model.network import (
    NETWORK_COLUMNS,
    Network,
    network_from_table,
    resolve_grid_shape,
)
from mesaopt.model.recording import TABLES
from mesaopt.model.scenario import Scenario
from mesaopt.model.scenario_files import validate

#: Tables :func:`read_run` reads at once; ``network`` is read on demand (it can be large).
FRAME_TABLES = tuple(name for name in TABLES if name != "network")


class MissingTableError(ValueError):
    """Raised when a run folder lacks a table, e.g. a run recorded before the table existed."""


def unreadable_table(where: str | Path, err: Exception) -> ScenarioError:
    """The one-line error for a table Arrow cannot read (corrupt, truncated), naming ``where``."""
    message = str(err).splitlines()[0] if str(err) else type(err).__name__
    return ScenarioError(str(where), f"a table cannot be read (corrupt or truncated?): {message}")


#: Written into a report folder before its first figure (:mod:`analysis.report`), so that a
#: report stopped half-way (Ctrl-C, a full disk) leaves a folder the next ``report`` recognises
#: as its own and redraws, and a sweep that changes its tables can tell its report from a folder
#: of the user's (:mod:`analysis.sweep_runner`).
REPORT_MARK = ".mesaopt-report"


@dataclass(frozen=True)
class RunTables:
    """The tables and manifest of one run folder.

    Attributes:
        path: The run folder.
        manifest: The parsed ``manifest.json``.
        steps: The ``steps`` table.
        agents: The ``agents`` table (snapshots; may have no rows).
        selections: The ``selections`` table.
        events: The ``events`` table.

    The ``network`` table is read when first asked for: :attr:`network_table` (as recorded) and
    :attr:`network` (as the model's :class:`~model.network.Network`).
    """

    path: Path
    manifest: dict[str, Any]
    steps: pd.DataFrame
    agents: pd.DataFrame
    selections: pd.DataFrame
    events: pd.DataFrame

    @property
    def scenario(self) -> Scenario:
        """The run's fully resolved scenario, validated again from the manifest."""
        return scenario_of(self.manifest, str(self.path / "manifest.json"))

    @property
    def principals(self) -> list[str]:
        """Principal names in scenario order (``all`` excluded)."""
        return [p for p in self.steps["principal"].unique() if p != "all"]

    @cached_property
    def network_table(self) -> pd.DataFrame:
        """The ``network`` table: one row per entry G_ij of the adjacency (docs/tables.md).

        Raises:
            MissingTableError: The run has no network table (recorded by an older mesaopt).
            ScenarioError: Its network table is missing, corrupt or not a network table.
        """
        return read_network_table(self.path, self.manifest).to_pandas()

    @cached_property
    def network(self) -> Network:
        """The network the run used, read from its ``network`` table (see :func:`read_network`).

        Raises:
            MissingTableError: The run has no network table (recorded by an older mesaopt).
        """
        return read_network(self)


def _named_file(path: Path, manifest: dict[str, Any], name: str) -> list[Path]:
    """The file(s) that may hold table ``name``: the manifest's entry, else either format.

    A manifest names only ``NAME.parquet`` or ``NAME.csv`` in the run folder itself; anything
    else (a hand-edited ``../../x``) is refused, so reading a run never leaves its folder.
    """
    named = manifest.get("files", {}).get(name)
    if not named:
        return [path / f"{name}.{ext}" for ext in ("parquet", "csv")]
    if named not in (f"{name}.parquet", f"{name}.csv"):
        raise NotARunError(
            f"{path / 'manifest.json'}: files.{name}: {str(named)[:60]!r} is not a table file of "
            f"this folder ({name}.parquet or {name}.csv)"
        )
    return [path / named]


def _read_table(path: Path, name: str, manifest: dict[str, Any]) -> pd.DataFrame:
    """Read one table of a run, the file its manifest names (older runs: whichever exists)."""
    candidates = _named_file(path, manifest, name)
    for file in candidates:
        if file.suffix == ".parquet" and file.is_file():
            return pd.read_parquet(file)
        if file.suffix == ".csv" and file.is_file():
            return pd.read_csv(file, keep_default_na=False, na_values=["", "NaN", "nan"])
    return pd.DataFrame()


def read_run(path: str | Path, *, allow_failed: bool = False) -> RunTables:
    """Read every table and the manifest of a run folder.

    Args:
        path: The run folder (as written by ``run.py simulate``).
        allow_failed: Also read a run stopped by an error (its manifest's ``status`` is
            ``"failed"``): its tables hold the rows recorded before the error.

    Returns:
        The run's tables.

    Raises:
        NotARunError: If the folder has no ``manifest.json`` or ``steps`` table.
        FailedRunError: If the run failed and ``allow_failed`` is false.
    """
    path = Path(path)
    if not is_run_folder(path):
        raise NotARunError(f"{path} is not a run folder (no manifest.json and steps table)")
    try:
        manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise NotARunError(f"{path}/manifest.json: cannot read: {err}") from None
    if manifest.get("status") == "failed" and not allow_failed:
        raise FailedRunError(
            f"{path} holds a failed run ({manifest.get('error', 'no error recorded')}); "
            "read_run(path, allow_failed=True) reads its tables up to the failure"
        )
    tables = {name: _read_table(path, name, manifest) for name in FRAME_TABLES}
    return RunTables(path=path, manifest=manifest, **tables)


@dataclass(frozen=True)
class SweepTables:
    """The tables and design of one sweep folder.

    Attributes:
        path: The sweep folder.
        design: The parsed ``sweep.json`` (parameters, design points, seeds, run ids).
        runs: The ``runs`` table: one row per run, its design point, replicate, seed and status.
        run_metrics: Per-run reductions of the ``steps`` tables, with the run's columns.
        summary: Mean, SD and 95% CI per design point and metric.
    """

    path: Path
    design: dict[str, Any]
    runs: pd.DataFrame
    run_metrics: pd.DataFrame
    summary: pd.DataFrame

    def steps(self) -> pd.DataFrame:
        """The tidy ``steps`` dataset over all runs (read on demand: it can be large)."""
        folder = self.path / "steps"
        return pd.read_parquet(folder) if folder.is_dir() else pd.DataFrame()

    def run(self, run_id: str) -> RunTables:
        """The tables of one run of the sweep."""
        return read_run(self.path / "runs" / run_id)


def read_sweep(path: str | Path) -> SweepTables:
    """Read the design and tables of a sweep folder.

    Args:
        path: The sweep folder (as written by ``run.py sweep``).

    Returns:
        The sweep's tables.

    Raises:
        NotARunError: If the folder has no ``sweep.json`` and ``runs/``, or cannot be read.
    """
    path = Path(path)
    if not is_sweep_folder(path):
        raise NotARunError(f"{path} is not a sweep folder (no sweep.json and runs/)")
    try:
        design = json.loads((path / "sweep.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise NotARunError(f"{path}/sweep.json: cannot read: {err}") from None
    tables = {}
    for name in ("runs", "run_metrics", "summary"):
        file = path / f"{name}.parquet"
        tables[name] = pd.read_parquet(file) if file.is_file() else pd.DataFrame()
    return SweepTables(path=path, design=design, **tables)


def scenario_of(manifest: dict[str, Any], source: str = "manifest.json") -> Scenario:
    """The validated scenario recorded in a manifest.

    Args:
        manifest: A run's parsed manifest.
        source: Name to use in error messages.

    Returns:
        The scenario.
    """
    return validate(manifest["scenario"], source)


def read_network_table(path: str | Path, manifest: dict[str, Any]) -> pa.Table:
    """Read a run's ``network`` table with its recorded dtypes (CSV floats round-trip exactly).

    Args:
        path: The run folder.
        manifest: Its parsed manifest (it names the table's file).

    Returns:
        The columns ``source``, ``target`` (int64) and ``weight`` (float64).

    Raises:
        MissingTableError: The run has no network table and its manifest names none (recorded
            by a mesaopt before the table existed).
        ScenarioError: Naming the file: the manifest names a table that is missing, or the file
            cannot be read (corrupt or truncated) or lacks those columns.
    """
    path = Path(path)
    candidates = _named_file(path, manifest, "network")
    file = next((f for f in candidates if f.is_file()), None)
    if file is None and manifest.get("files", {}).get("network"):
        raise ScenarioError(str(candidates[0]), "missing, though the run's manifest names it")
    if file is None:
        raise MissingTableError(
            f"{path}: no network table (the run was recorded by a mesaopt that did not record "
            "its network); simulate it again"
        )
    names = list(NETWORK_COLUMNS)
    types = {name: pa.from_numpy_dtype(dtype) for name, dtype in NETWORK_COLUMNS.items()}
    try:
        if file.suffix == ".csv":
            options = pacsv.ConvertOptions(column_types=types, include_columns=names)
            table = pacsv.read_csv(file, convert_options=options)
        else:
            table = pq.read_table(file)
    except KeyError as err:  # pyarrow.ArrowKeyError: a CSV without one of the columns
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ScenarioError(str(file), f"not a network table ({message})") from None
    except pa.ArrowException as err:
        raise unreadable_table(file, err) from None
    lacking = [name for name in names if name not in table.column_names]
    if lacking:
        raise ScenarioError(str(file), f"not a network table (no column {lacking[0]!r})")
    return table.select(names).cast(pa.schema([(name, types[name]) for name in names]))


def read_network(run: RunTables) -> Network:
    """The network a run used, rebuilt from its recorded ``network`` table.

    The adjacency matrix is the model's entry for entry (same ``indptr``, ``indices`` and
    ``data``); the number of nodes is the manifest's ``n_agents`` (isolated nodes have no rows).
    The layout, which the table does not hold, is fixed by the recorded scenario without any random
    draw: a grid's shape and positions come from ``network.width``/``height`` as
    :func:`~model.network.build_network` resolves them, and an SBM's blocks are the scenario's
    ``network.blocks`` or, where it sets none, the principals' groups in node order (as the model
    builds them), counted from the initial ``selections``.

    Args:
        run: The run's tables.

    Returns:
        The network.

    Raises:
        MissingTableError: The run has no network table (recorded by an older mesaopt).
    """
    table = read_network_table(run.path, run.manifest)
    scenario = run.scenario
    n = int(run.manifest.get("n_agents", scenario.network.n_agents))
    positions = blocks = grid_shape = None
    if scenario.network.topology == "grid":
        grid_shape = resolve_grid_shape(scenario.network, n)
        positions = grid_positions(*grid_shape)
    elif scenario.network.topology == "sbm" and scenario.network.blocks is not None:
        sizes = scenario.network.blocks
        blocks = np.repeat(np.arange(len(sizes), dtype=np.int64), sizes)
    elif scenario.network.topology == "sbm":
        blocks = _principal_blocks(run, scenario, n)
    return network_from_table(
        table["source"].to_numpy(),
        table["target"].to_numpy(),
        table["weight"].to_numpy(),
        n,
        positions=positions,
        blocks=blocks,
        grid_shape=grid_shape,
    )


def _principal_blocks(run: RunTables, scenario: Scenario, n: int) -> np.ndarray | None:
    """SBM block of every node: its principal's index, principals' groups in node order."""
    selections = run.selections
    if selections.empty:
        return None
    initial = selections[(selections["step"] == 0) & (selections["reason"] == "initial")]
    counts = [int((initial["principal"] == p.name).sum()) for p in scenario.principals]
    if sum(counts) != n:
        return None
    return np.repeat(np.arange(len(counts), dtype=np.int64), counts)
