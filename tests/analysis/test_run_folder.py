"""Reading run folders: the tables, and the network read back exactly as the model had it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mesaopt.analysis.report import build_report
from mesaopt.analysis.run_folder import (
    FRAME_TABLES,
    MissingTableError,
    NotARunError,
    read_network_table,
    read_run,
)
from mesaopt.model.errors import ScenarioError
from mesaopt.model.network import Network
from mesaopt.model.runner import run_simulation
from mesaopt.model.scenario_files import load_scenario
from tests.analysis.conftest import SMALL


def assert_same_network(read: Network, model: Network) -> None:
    """The CSR arrays (values and dtypes) and the layout are the model's."""
    a, b = read.adjacency, model.adjacency
    assert a.shape == b.shape
    for part in ("indptr", "indices", "data"):
        x, y = getattr(a, part), getattr(b, part)
        assert x.dtype == y.dtype and np.array_equal(x, y), part
    assert read.grid_shape == model.grid_shape
    for name in ("positions", "blocks"):
        x, y = getattr(read, name), getattr(model, name)
        assert (x is None) == (y is None), name
        if x is not None:
            assert x.dtype == y.dtype and np.array_equal(x, y), name


NETWORKS = {
    "watts_strogatz": [],
    "grid_torus_moore": [
        "network.topology=grid",
        "network.n_agents=144",
        "network.torus=true",
        'network.neighborhood="moore"',
    ],
    "grid_rectangle": [
        "network.topology=grid",
        "network.n_agents=120",
        "network.width=15",
        "network.height=8",
    ],
    "sbm_by_principal": ["network.topology=sbm", "network.p_in=0.1", "principals.1.share=3"],
    "sbm_blocks": ["network.topology=sbm", "network.blocks=[30, 90]"],
    "erdos_renyi_normalized_isolated": [
        "network.topology=erdos_renyi",
        "network.k=1",
        "network.normalize=true",
    ],
    "barabasi_albert": ["network.topology=barabasi_albert", "network.m=3"],
}


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
@pytest.mark.parametrize("name", NETWORKS)
def test_the_network_read_back_is_the_models(name: str, fmt: str, tmp_path: Path) -> None:
    scenario = load_scenario(None, [*SMALL, "run.steps=2", *NETWORKS[name]])
    result = run_simulation(scenario, tmp_path, fmt=fmt, progress=False)
    run = read_run(tmp_path)
    assert_same_network(run.network, result.model.network)
    assert run.network is run.network  # read once
    table = run.network_table
    assert list(table.columns) == ["source", "target", "weight"]
    assert len(table) == result.model.network.adjacency.nnz == run.manifest["row_counts"]["network"]
    if name.startswith("erdos"):
        assert (run.network.degrees == 0).any()  # isolated nodes come from the manifest's n_agents


def test_reading_a_run_reads_the_network_only_when_asked(run_dir: Path) -> None:
    assert "network" not in FRAME_TABLES
    run = read_run(run_dir)
    assert "network" not in vars(run)
    assert run.network.n_nodes == run.manifest["n_agents"] == 120
    assert run.network.n_edges == run.manifest["n_edges"]


def test_a_run_without_a_network_table_is_a_one_line_error(run_dir: Path, tmp_path: Path) -> None:
    old = tmp_path / "old"
    old.mkdir()
    manifest = json.loads((run_dir / "manifest.json").read_text())
    for table in FRAME_TABLES:
        (old / f"{table}.parquet").write_bytes((run_dir / f"{table}.parquet").read_bytes())
    for key in ("files", "row_counts"):  # as an older mesaopt wrote them: four tables
        manifest[key] = {t: v for t, v in manifest[key].items() if t != "network"}
    (old / "manifest.json").write_text(json.dumps(manifest))
    run = read_run(old)  # the other tables read as before
    assert len(run.steps) == len(read_run(run_dir).steps)
    with pytest.raises(MissingTableError) as info:
        _ = run.network
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{old}: no network table")
    report = build_report(old, tmp_path / "report")
    assert any("no agent maps: cannot read the network" in note for note in report.notes)


def test_a_file_that_is_not_a_network_table_is_refused(run_dir: Path, tmp_path: Path) -> None:
    pd.DataFrame({"source": [0], "other": [1]}).to_csv(tmp_path / "network.csv", index=False)
    with pytest.raises(ScenarioError, match="not a network table") as err:
        read_network_table(tmp_path, {})
    assert err.value.key == str(tmp_path / "network.csv")
    with pytest.raises(NotARunError):
        read_run(tmp_path)


def test_a_failed_run_is_refused_unless_asked(tmp_path: Path, monkeypatch) -> None:
    from mesaopt.analysis.run_folder import FailedRunError
    from mesaopt.model import measurement
    from mesaopt.model.finite import NonFiniteError

    real = measurement.aggregate_steps

    def aggregate(**kwargs):
        rows = real(**kwargs)
        if kwargs["step"] == 5:
            rows[-1]["value"] = float("nan")
        return rows

    monkeypatch.setattr(measurement, "aggregate_steps", aggregate)
    scenario = load_scenario(None, SMALL)
    with pytest.raises(NonFiniteError):
        run_simulation(scenario, tmp_path / "run", progress=False)
    message = r"failed run \(step 5: steps\.value \(principal all\) is nan"
    with pytest.raises(FailedRunError, match=message):
        read_run(tmp_path / "run")
    with pytest.raises(NotARunError):  # what the report and app already catch
        read_run(tmp_path / "run")
    run = read_run(tmp_path / "run", allow_failed=True)
    assert run.manifest["status"] == "failed" and run.steps["step"].max() == 4
    with pytest.raises(NotARunError, match="failed run"):  # run.py report: one line, exit 2
        build_report(tmp_path / "run", tmp_path / "report")
    # (build_report makes its folder before reading the run: an empty report/ stays behind)


@pytest.mark.parametrize("table", ["steps", "network"])
def test_a_manifest_naming_a_file_outside_the_folder_is_refused(
    run_dir: Path, tmp_path: Path, table: str
) -> None:
    """A hand-edited ``files`` entry (``../secret.parquet``) must not make reading leave the run."""
    edited = tmp_path / "run"
    edited.mkdir()
    for file in run_dir.iterdir():
        if file.is_file():
            (edited / file.name).write_bytes(file.read_bytes())
    outside = tmp_path / "secret.parquet"
    outside.write_bytes((run_dir / f"{table}.parquet").read_bytes())
    manifest = json.loads((edited / "manifest.json").read_text())
    manifest["files"][table] = "../secret.parquet"
    (edited / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(NotARunError, match=f"files.{table}: '../secret.parquet' is not a table"):
        run = read_run(edited)
        _ = run.network
