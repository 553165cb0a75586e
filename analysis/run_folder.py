"""Reading what a run (or a sweep) left on disk: tables, manifest, scenario and network.

The figure, animation and report modules read runs through :func:`read_run` only, never a live
model. The one thing the tables do not hold is the network itself; :func:`rebuild_network` draws it
again from the resolved scenario in the manifest, exactly as the model did (the model's generator
is seeded with ``run.seed`` and the network is its first draw; a test checks the two agree).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mesaopt.model.model import _counts_by_share
from mesaopt.model.network import Network, build_network
from mesaopt.model.recording import TABLES
from mesaopt.model.scenario import Scenario, validate


class NotARunError(ValueError):
    """Raised when a folder holds neither a run nor a sweep."""


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


def is_run_folder(path: str | Path) -> bool:
    """Whether ``path`` holds a run: a ``manifest.json`` and a ``steps`` table."""
    path = Path(path)
    return (path / "manifest.json").is_file() and any(
        (path / f"steps.{ext}").is_file() for ext in ("parquet", "csv")
    )


def is_sweep_folder(path: str | Path) -> bool:
    """Whether ``path`` holds a sweep: a ``sweep.json`` next to a ``runs/`` folder."""
    path = Path(path)
    return (path / "sweep.json").is_file() and (path / "runs").is_dir()


def _read_table(path: Path, name: str, manifest: dict[str, Any]) -> pd.DataFrame:
    """Read one table of a run, the file its manifest names (older runs: whichever exists)."""
    named = manifest.get("files", {}).get(name)
    candidates = [path / named] if named else [path / f"{name}.{ext}" for ext in ("parquet", "csv")]
    for file in candidates:
        if file.suffix == ".parquet" and file.is_file():
            return pd.read_parquet(file)
        if file.suffix == ".csv" and file.is_file():
            return pd.read_csv(file, keep_default_na=False, na_values=["", "NaN", "nan"])
    return pd.DataFrame()


def read_run(path: str | Path) -> RunTables:
    """Read every table and the manifest of a run folder.

    Args:
        path: The run folder (as written by ``run.py simulate``).

    Returns:
        The run's tables.

    Raises:
        NotARunError: If the folder has no ``manifest.json`` or ``steps`` table.
    """
    path = Path(path)
    if not is_run_folder(path):
        raise NotARunError(f"{path} is not a run folder (no manifest.json and steps table)")
    try:
        manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise NotARunError(f"{path}/manifest.json: cannot read: {err}") from None
    tables = {name: _read_table(path, name, manifest) for name in TABLES}
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


def rebuild_network(manifest: dict[str, Any], base_dir: Path | None = None) -> Network:
    """Draw a run's network again from its manifest (same scenario, same seed, same graph).

    Args:
        manifest: The run's parsed manifest.
        base_dir: Folder that a relative edge-list path resolves against; defaults to the folder
            of the scenario file named in the manifest.

    Returns:
        The network the run used.

    Raises:
        ScenarioError: If the network cannot be built (e.g. the edge list moved).
    """
    scenario = scenario_of(manifest)
    if base_dir is None:
        source = manifest.get("scenario_source")
        base_dir = Path(source).parent if source and not source.startswith("<") else None
    counts = _counts_by_share([p.share for p in scenario.principals], scenario.network.n_agents)
    return build_network(
        scenario.network,
        np.random.default_rng(scenario.run.seed),
        block_sizes=counts,
        base_dir=base_dir,
    )
