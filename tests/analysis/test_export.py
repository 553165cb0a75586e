"""run.py export: a sweep's tables as single files, the runs' networks among them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mesaopt import read_run, run_sweep
from mesaopt.analysis.export import export_sweep

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("export") / "sweep"
    run_sweep(
        ROOT / "scenarios" / "baseline.toml",
        out,
        overrides=["network.n_agents=40", "run.steps=3", "network.normalize=true"],
        grid={"network.k": [2, 4]},
        engine="serial",
        progress=False,
    )
    return out


def run_ids(sweep: Path) -> list[str]:
    return [run["run_id"] for run in json.loads((sweep / "sweep.json").read_text())["runs"]]


def test_every_run_folder_of_a_sweep_holds_its_network(sweep: Path) -> None:
    for run_id in run_ids(sweep):
        folder = sweep / "runs" / run_id
        assert (folder / "network.parquet").is_file()
        run = read_run(folder)
        assert run.network.mean_degree == run.scenario.network.k


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_export_streams_every_runs_network_with_its_run_id(
    sweep: Path, tmp_path: Path, fmt: str
) -> None:
    written = export_sweep(sweep, fmt, tmp_path)
    assert tmp_path / f"network.{fmt}" in written
    path = tmp_path / f"network.{fmt}"
    exported = pd.read_csv(path) if fmt == "csv" else pd.read_parquet(path)
    assert list(exported.columns) == ["run_id", "source", "target", "weight"]
    ids = run_ids(sweep)
    assert list(dict.fromkeys(exported["run_id"])) == sorted(ids)
    for run_id in ids:
        mine = exported[exported["run_id"] == run_id].drop(columns="run_id")
        recorded = read_run(sweep / "runs" / run_id).network_table
        assert np.array_equal(mine["source"].to_numpy(), recorded["source"].to_numpy())
        assert np.array_equal(mine["target"].to_numpy(), recorded["target"].to_numpy())
        assert mine["weight"].to_numpy().tolist() == recorded["weight"].to_numpy().tolist()


def test_runs_without_a_network_table_are_left_out(sweep: Path, tmp_path: Path) -> None:
    copy = tmp_path / "sweep"
    (copy / "runs").mkdir(parents=True)
    (copy / "sweep.json").write_text((sweep / "sweep.json").read_text())
    first, *_ = sorted(run_ids(sweep))
    old = copy / "runs" / first  # a run recorded before the network table existed
    old.mkdir()
    (old / "manifest.json").write_text((sweep / "runs" / first / "manifest.json").read_text())
    (copy / "runs" / "failed").mkdir()  # a failed run: no manifest
    assert export_sweep(copy, "csv", tmp_path / "out") == []
