"""A sweep folder is checked before anything is written: someone else's folder is refused."""

from __future__ import annotations

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
