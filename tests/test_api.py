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
