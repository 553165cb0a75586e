"""The public API: ``import mesaopt`` gives the model, scenarios, runs, sweeps and their readers."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import mesaopt

TINY = ["network.n_agents=60", "run.steps=4"]


def test_every_public_name_resolves_and_is_listed():
    for name in mesaopt.__all__:
        assert getattr(mesaopt, name) is not None, name
    assert set(mesaopt.__all__) <= set(dir(mesaopt))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        mesaopt.nope  # noqa: B018


def test_import_is_lazy():
    """``import mesaopt`` loads no model code (the CLI reports bad input before Mesa loads)."""
    code = "import sys, mesaopt; print(any(m.startswith(('mesa.', 'numba')) for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_run_and_a_sweep_from_python_read_back(tmp_path):
    scenario = mesaopt.load_scenario(None, TINY)
    result = mesaopt.run_simulation(scenario, tmp_path / "run", progress=False)
    run = mesaopt.read_run(tmp_path / "run")
    assert isinstance(run, mesaopt.RunTables)
    assert len(run.steps) == result.manifest["row_counts"]["steps"]
    assert (run.network.adjacency != result.model.adjacency).nnz == 0

    sweep = mesaopt.run_sweep(
        None,
        tmp_path / "sweep",
        grid={"principals.0.selection.n": [1, 4]},
        replicates=2,
        overrides=TINY,
        engine="serial",
    )
    assert isinstance(sweep, mesaopt.SweepResult) and sweep.count("ok") == 4
    tables = mesaopt.read_sweep(tmp_path / "sweep")
    assert isinstance(tables, mesaopt.SweepTables)
    assert len(tables.runs) == 4 and set(tables.runs["status"]) == {"ok"}
    assert np.isfinite(tables.summary["mean"].dropna()).all()
    assert len(tables.steps()) == 4 * 4 * 3  # runs x steps 1..4 x (2 principals + all)
    first = tables.runs["run_id"].iloc[0]
    assert tables.run(first).manifest["steps"] == 4


def test_reading_a_folder_that_is_no_sweep_is_a_clear_error(tmp_path):
    from mesaopt.analysis.run_folder import NotARunError

    with pytest.raises(NotARunError, match="not a sweep folder"):
        mesaopt.read_sweep(tmp_path)


def test_the_model_takes_a_scenario_files_tables_as_a_dict():
    """MesaOptModel({...}) validates the dict as a file: same scenario, same first step."""
    from mesaopt.model.scenario_files import load_raw

    data, _ = load_raw(None)
    data["network"]["n_agents"] = 60
    from_dict = mesaopt.MesaOptModel(data)
    from_file = mesaopt.MesaOptModel(mesaopt.load_scenario(None, ["network.n_agents=60"]))
    assert from_dict.config == from_file.config
    from_dict.step()
    from_file.step()
    assert from_dict.last_steps == from_file.last_steps
    data["network"]["n_agents"] = -1
    with pytest.raises(mesaopt.ScenarioError, match=r"<scenario dict>: network\.n_agents"):
        mesaopt.MesaOptModel(data)
    with pytest.raises(TypeError, match="a dict of its tables or None, got str"):
        mesaopt.MesaOptModel("scenarios/baseline.toml")


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"replicates": "2"}, "replicates must be an int, got str"),
        ({"replicates": True}, "replicates must be an int, got bool"),
        ({"seed": 1.5}, "seed must be an int, got float"),
        ({"workers": "2"}, "workers must be an int"),
        ({"grid": [("network.k", [2])]}, "grid must be a dict"),
        ({"overrides": "run.steps=2"}, "overrides must be a list of 'key=value' strings"),
    ],
)
def test_api_arguments_of_the_wrong_type_are_refused_before_anything_is_written(
    tmp_path, arguments, message
):
    with pytest.raises(TypeError, match=message):
        mesaopt.run_sweep(None, tmp_path / "sweep", engine="serial", **arguments)
    assert not (tmp_path / "sweep").exists()


def test_overrides_as_one_string_are_refused_not_read_letter_by_letter():
    with pytest.raises(TypeError, match="overrides must be a list"):
        mesaopt.load_scenario(None, "run.steps=3")
    with pytest.raises(TypeError, match="overrides must be 'key=value' strings"):
        mesaopt.load_scenario(None, ["run.steps=3", 4])
    # any iterable of strings is read once, in full (a generator was consumed by the check)
    assert mesaopt.load_scenario(None, (o for o in ["run.steps=7"])).run.steps == 7
