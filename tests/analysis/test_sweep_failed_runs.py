"""A sweep run stopped by a non-finite number is recorded as failed, never trusted as finished."""

from __future__ import annotations

import json

import pandas as pd

from mesaopt.analysis.executors import is_complete
from mesaopt.analysis.run_folder import read_sweep
from mesaopt.analysis.sweep_runner import run_sweep
from mesaopt.model import measurement

TINY = ["network.n_agents=40", "run.steps=5", "run.agent_every=0"]
GRID = {"principals.0.selection.n": [1, 4]}


def test_a_non_finite_run_is_failed_and_retried_on_resume(tmp_path, monkeypatch):
    real = measurement.aggregate_steps

    def aggregate(**kwargs):
        rows = real(**kwargs)
        if kwargs["principals"][0].config.selection.n == 4 and kwargs["step"] == 3:
            rows[0]["profit"] = float("-inf")
        return rows

    monkeypatch.setattr(measurement, "aggregate_steps", aggregate)
    out = tmp_path / "sweep"
    result = run_sweep(None, out, grid=GRID, overrides=TINY, engine="serial")
    assert [o.status for o in result.outcomes] == ["ok", "failed"]
    failed = result.failed[0]
    assert failed.error.startswith("NonFiniteError: step 3: steps.profit")
    folder = out / "runs" / failed.run_id
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["status"] == "failed" and not is_complete(folder)
    assert "NonFiniteError" in (folder / "error.txt").read_text()
    sweep = read_sweep(out)
    assert list(sweep.runs["status"]) == ["ok", "failed"]
    assert set(pd.read_parquet(out / "steps")["design_id"]) == {0}
    hidden = sorted(p.name for p in out.iterdir() if p.name.startswith("."))
    assert hidden in ([], [".partial-runs"])
    assert not list((out / ".partial-runs").iterdir())

    monkeypatch.setattr(measurement, "aggregate_steps", real)  # the cause fixed: resume
    resumed = run_sweep(None, out, grid=GRID, overrides=TINY, engine="serial")
    assert [o.status for o in resumed.outcomes] == ["skipped", "ok"]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["status"] == "complete" and not (folder / "error.txt").exists()


def test_a_run_folder_that_is_not_the_runs_own_is_run_again_on_resume(tmp_path):
    """A complete run simulated by hand into runs/<id>/ (another scenario) is not that run: the
    resumed sweep runs it again, and its tables are the uninterrupted sweep's."""
    from mesaopt import load_scenario, run_simulation

    out = tmp_path / "sweep"
    first = run_sweep(None, out, grid=GRID, overrides=TINY, engine="serial")
    steps = pd.read_parquet(out / "steps").sort_values(["run_id", "step", "principal"])
    victim = first.outcomes[1].run_id
    assert is_complete(out / "runs" / victim, victim)
    foreign = load_scenario(None, ["network.n_agents=40", "run.steps=2", "run.agent_every=0"])
    run_simulation(foreign, out / "runs" / victim, progress=False)
    assert is_complete(out / "runs" / victim) and not is_complete(out / "runs" / victim, victim)
    resumed = run_sweep(None, out, grid=GRID, overrides=TINY, engine="serial")
    assert [o.status for o in resumed.outcomes] == ["skipped", "ok"]
    again = pd.read_parquet(out / "steps").sort_values(["run_id", "step", "principal"])
    pd.testing.assert_frame_equal(again.reset_index(drop=True), steps.reset_index(drop=True))
