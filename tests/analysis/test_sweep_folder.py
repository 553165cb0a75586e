"""A sweep folder is checked before anything is written: someone else's folder is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from mesaopt.analysis.sweep_runner import run_sweep
from mesaopt.model.errors import ScenarioError

TINY = ["network.n_agents=30", "run.steps=2", "run.agent_every=0"]


def test_a_folder_that_is_not_a_sweep_or_a_path_through_a_file_is_refused(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "summary.csv").write_text("my numbers\n")
    with pytest.raises(ScenarioError, match="not a mesaopt sweep"):
        run_sweep(None, mine, overrides=TINY, engine="serial")
    assert [p.name for p in mine.iterdir()] == ["summary.csv"]
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ScenarioError, match="afile is not a folder"):
        run_sweep(None, tmp_path / "afile" / "sub", overrides=TINY, engine="serial")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "mine"]


def test_an_existing_sweep_folder_is_reused(tmp_path):
    out = tmp_path / "sweep"
    first = run_sweep(None, out, overrides=TINY, engine="serial")
    again = run_sweep(None, out, overrides=TINY, engine="serial")
    assert [o.status for o in first.outcomes] == ["ok"]
    assert [o.status for o in again.outcomes] == ["skipped"]


def test_a_sweep_that_changes_the_tables_removes_what_was_derived_from_them(tmp_path):
    """Exports and the report describe the tables they were made from: a later sweep with
    another design, or one that adds a run, removes them; a resume that adds nothing keeps
    them; a folder of the user's named report (no report mark) is never touched."""
    from mesaopt.analysis.export import export_sweep
    from mesaopt.analysis.run_folder import REPORT_MARK

    out = tmp_path / "sweep"
    grid = {"agents.risk_aversion": [0.5, 1.0]}
    run_sweep(None, out, overrides=TINY, grid=grid, engine="serial")

    def derive() -> None:
        export_sweep(out, "csv")
        (out / "report").mkdir(exist_ok=True)
        (out / "report" / REPORT_MARK).touch()
        (out / "report" / "report.html").write_text("old figures")

    derive()
    exported = {"steps.csv", "runs.csv", "run_metrics.csv", "network.csv"}
    assert exported <= {p.name for p in out.iterdir()}
    run_sweep(None, out, overrides=TINY, grid=grid, engine="serial")  # nothing new: kept
    assert exported <= {p.name for p in out.iterdir()} and (out / "report").is_dir()

    run_sweep(
        None, out, overrides=TINY, grid={"agents.risk_aversion": [0.5, 1.0, 1.5]}, engine="serial"
    )
    names = {p.name for p in out.iterdir()}
    assert not exported & names and "report" not in names
    assert {"summary.csv", "summary.parquet", "runs.parquet", "sweep.json"} <= names

    derive()
    (out / "runs" / sorted(p.name for p in (out / "runs").iterdir())[0]).rename(
        tmp_path / "gone"
    )  # the same design, one run to redo
    again = run_sweep(
        None, out, overrides=TINY, grid={"agents.risk_aversion": [0.5, 1.0, 1.5]}, engine="serial"
    )
    assert sorted(o.status for o in again.outcomes) == ["ok", "skipped", "skipped"]
    assert not exported & {p.name for p in out.iterdir()} and not (out / "report").exists()

    mine = out / "report"
    mine.mkdir()
    (mine / "notes.txt").write_text("my notes")
    run_sweep(None, out, overrides=TINY, grid={"agents.risk_aversion": [2.0]}, engine="serial")
    assert (mine / "notes.txt").read_text() == "my notes"


def test_the_same_design_from_another_path_keeps_the_exports(tmp_path, monkeypatch):
    """``sweep.json`` records the scenario's path as typed: the same file by another path is
    the same design, and a resume that adds nothing removes nothing."""
    from mesaopt.analysis.export import export_sweep

    root = Path(__file__).resolve().parents[2]
    out = tmp_path / "sweep"
    grid = {"agents.risk_aversion": [0.5, 1.0]}
    run_sweep(root / "scenarios" / "baseline.toml", out, overrides=TINY, grid=grid, engine="serial")
    export_sweep(out, "csv")
    monkeypatch.chdir(root / "scenarios")
    again = run_sweep("baseline.toml", out, overrides=TINY, grid=grid, engine="serial")
    assert {o.status for o in again.outcomes} == {"skipped"}
    assert {"steps.csv", "runs.csv", "run_metrics.csv"} <= {p.name for p in out.iterdir()}


def test_sensitivity_indices_go_only_with_their_design(tmp_path):
    """A run added to the same design keeps them (the sensitivity command rewrites them); a new
    design removes them."""
    out = tmp_path / "sweep"
    grid = {"agents.risk_aversion": [0.5, 1.0]}
    run_sweep(None, out, overrides=TINY, grid=grid, engine="serial")
    (out / "sensitivity.csv").write_text("indices of this design")
    first_run = sorted((out / "runs").iterdir())[0]
    first_run.rename(tmp_path / "gone")
    run_sweep(None, out, overrides=TINY, grid=grid, engine="serial")
    assert (out / "sensitivity.csv").is_file()
    run_sweep(None, out, overrides=TINY, grid={"agents.risk_aversion": [2.0]}, engine="serial")
    assert not (out / "sensitivity.csv").exists()


@pytest.mark.parametrize("replaced_by", ["file", "link"])
def test_a_sweeps_scratch_folder_replaced_by_a_file_or_a_link_is_removed(tmp_path, replaced_by):
    """``.partial-runs`` made a file failed every later run (FileExistsError; fuzzing pass), and
    made a link had the clean-up empty the folder it led to, outside the sweep: the link or
    file is removed, never what it points at."""
    out = tmp_path / "sweep"
    run_sweep(None, out, overrides=TINY, engine="serial")
    scratch = out / ".partial-runs"
    if scratch.exists():
        scratch.rmdir()
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "kept").mkdir(parents=True)
    (elsewhere / "notes.txt").write_text("mine")
    if replaced_by == "file":
        scratch.write_text("x")
    else:
        scratch.symlink_to(elsewhere, target_is_directory=True)
    grid = {"agents.risk_aversion": [1.5, 2.0]}  # two new runs
    result = run_sweep(None, out, overrides=TINY, grid=grid, engine="serial")
    assert [o.status for o in result.outcomes] == ["ok", "ok"]
    assert sorted(p.name for p in elsewhere.iterdir()) == ["kept", "notes.txt"]
    assert not scratch.is_symlink()
