"""One run end to end into its folder: complete or failed manifest, nothing half-written."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from mesaopt import load_scenario, run_simulation
from mesaopt.model import measurement
from mesaopt.model.errors import ScenarioError
from mesaopt.model.finite import NonFiniteError

SMALL = ["network.n_agents=60", "run.steps=6", "run.agent_every=1"]


def blow_up_at(monkeypatch, step: int, column: str = "value") -> None:
    """Make the ``steps`` row of the first principal non-finite at ``step`` (after loading)."""
    real = measurement.aggregate_steps

    def aggregate(**kwargs):
        rows = real(**kwargs)
        if kwargs["step"] == step:
            rows[0][column] = float("inf")
        return rows

    monkeypatch.setattr(measurement, "aggregate_steps", aggregate)


def test_a_finished_run_is_marked_complete(tmp_path):
    result = run_simulation(load_scenario(None, SMALL), tmp_path / "run", progress=False)
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["status"] == "complete" and "error" not in manifest
    assert result.paths["steps"] == tmp_path / "run" / "steps.parquet"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no staging folder left


def test_a_non_finite_value_stops_the_run_with_a_failed_manifest(tmp_path, monkeypatch):
    blow_up_at(monkeypatch, step=4)
    scenario = load_scenario(None, SMALL)
    with pytest.raises(NonFiniteError, match=r"step 4: steps\.value \(principal \w+\) is inf"):
        run_simulation(scenario, tmp_path / "run", progress=False)
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["status"] == "failed"
    assert manifest["failure"]["step"] == 4 and manifest["failure"]["column"] == "value"
    assert manifest["error"].startswith("step 4: steps.value")
    steps = pd.read_parquet(tmp_path / "run" / "steps.parquet")
    assert steps["step"].max() == 3  # every batch before the offending one, nothing after
    assert manifest["row_counts"]["steps"] == len(steps)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_a_run_without_steps_rows_still_writes_every_steps_column(tmp_path, monkeypatch):
    """run.steps = 0 (and a run stopped in its first step) records no ``steps`` row: the table
    still has the columns, typed as a run that steps writes them, in Parquet and as a CSV header."""
    import pyarrow.parquet as pq

    size = ["network.n_agents=60"]
    stepped = run_simulation(load_scenario(None, [*size, "run.steps=1"]), tmp_path / "one",
                             progress=False)  # fmt: skip
    expected = pq.read_schema(stepped.paths["steps"]).remove_metadata()
    assert len(expected.names) > 50
    none = run_simulation(load_scenario(None, [*size, "run.steps=0"]), tmp_path / "none",
                          progress=False)  # fmt: skip
    assert pq.read_schema(none.paths["steps"]).remove_metadata().equals(expected)
    assert pq.read_metadata(none.paths["steps"]).num_rows == 0
    assert none.tables["steps"].schema.equals(expected)
    as_csv = run_simulation(load_scenario(None, [*size, "run.steps=0"]), tmp_path / "csv",
                            fmt="csv", progress=False)  # fmt: skip
    header = as_csv.paths["steps"].read_text(encoding="utf-8").splitlines()
    assert len(header) == 1 and header[0].replace('"', "").split(",") == expected.names

    blow_up_at(monkeypatch, step=1)
    with pytest.raises(NonFiniteError):
        run_simulation(load_scenario(None, [*size, "run.steps=3"]), tmp_path / "stopped",
                       progress=False)  # fmt: skip
    stopped = tmp_path / "stopped" / "steps.parquet"
    assert pq.read_schema(stopped).remove_metadata().equals(expected)
    assert pq.read_metadata(stopped).num_rows == 0


@pytest.mark.parametrize(
    ("name", "size"),
    [
        # peer 0.6 on a row-normalised torus (rho = 1): stable there, not on an unnormalised ring
        ("peer_grid.toml", ["network.n_agents=100"]),
        # shares 0.5 and 0.01: the second principal has no agent among ten, 4 among 200
        (None, ["network.n_agents=200", "principals.1.share=0.01"]),
    ],
    ids=["normalised-peer-effects", "small-share"],
)
def test_the_columns_of_a_zero_step_run_come_from_a_probe_every_valid_scenario_passes(
    tmp_path, name, size
):
    """The probe that gives a zero-step run its ``steps`` columns runs without peer effects and
    on enough nodes that every principal has an agent, so a scenario valid on its own network
    cannot be refused by it (which left the table without columns)."""
    import pyarrow.parquet as pq

    path = None if name is None else Path(__file__).parents[2] / "scenarios" / name
    stepped = run_simulation(load_scenario(path, [*size, "run.steps=1"]), tmp_path / "one",
                             progress=False)  # fmt: skip
    expected = pq.read_schema(stepped.paths["steps"]).remove_metadata()
    none = run_simulation(load_scenario(path, [*size, "run.steps=0"]), tmp_path / "none",
                          progress=False)  # fmt: skip
    assert pq.read_schema(none.paths["steps"]).remove_metadata().equals(expected)


def test_re_simulating_replaces_the_whole_folder(tmp_path):
    out = tmp_path / "run"
    run_simulation(load_scenario(None, SMALL), out, progress=False)
    (out / "report").mkdir()
    (out / "report" / "report.html").write_text("old")
    run_simulation(load_scenario(None, [*SMALL, "run.seed=7"]), out, fmt="csv", progress=False)
    assert not (out / "report").exists()
    assert not list(out.glob("*.parquet"))  # no table of the other format outlives the old run
    assert json.loads((out / "manifest.json").read_text())["seed"] == 7


@pytest.mark.parametrize("kept", ["scenario", "edges"])
def test_a_run_folder_holding_its_own_scenario_or_edge_list_is_not_replaced(tmp_path, kept):
    """Re-simulating into the folder that holds the run's scenario file or edge list would
    delete them with the old run: refused, both kept."""
    out = tmp_path / "run"
    run_simulation(load_scenario(None, SMALL), out, progress=False)
    (out / "edges.csv").write_text("0,1\n1,2\n")
    (out / "mine.toml").write_text(
        '[run]\nsteps = 2\n[[channels]]\nname = "a"\n[[principals]]\nname = "p"\n'
    )
    if kept == "scenario":
        scenario, source, base = load_scenario(out / "mine.toml"), str(out / "mine.toml"), None
    else:
        overrides = [*SMALL, "network.topology=edgelist", "network.path=edges.csv"]
        scenario, source, base = load_scenario(None, overrides), None, out
    with pytest.raises(ScenarioError, match="an input of this run") as err:
        run_simulation(scenario, out, base_dir=base, source=source, progress=False)
    assert err.value.key == "--out"
    assert (out / "edges.csv").is_file() and (out / "mine.toml").is_file()
    assert (out / "manifest.json").is_file()


def test_bad_input_found_while_building_writes_nothing(tmp_path):
    edges = tmp_path / "edges.csv"
    edges.write_text("source,target\n0,1\n1,999\n")  # node 999 of 60
    overrides = [*SMALL, "network.topology='edgelist'", f"network.path='{edges}'"]
    with pytest.raises(ScenarioError, match="999"):
        run_simulation(load_scenario(None, overrides), tmp_path / "run", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["edges.csv"]


def test_an_interrupt_leaves_the_old_run_and_no_staging_folder(tmp_path, monkeypatch):
    out = tmp_path / "run"
    run_simulation(load_scenario(None, SMALL), out, progress=False)
    before = (out / "steps.parquet").read_bytes()

    def interrupt(**kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(measurement, "aggregate_steps", interrupt)
    with pytest.raises(KeyboardInterrupt):
        run_simulation(load_scenario(None, [*SMALL, "run.seed=9"]), out, progress=False)
    assert (out / "steps.parquet").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
