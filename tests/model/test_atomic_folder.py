"""Run folders complete or absent: target checks, stale siblings, the swap."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from mesaopt.model import atomic_folder
from mesaopt.model.atomic_folder import (
    SWAP_ENV,
    check_target,
    clean_stale_siblings,
    prepare_target,
    run_status,
    staging_path,
    swap_in,
)
from mesaopt.model.errors import ScenarioError


def write_run(folder, marker: str, status: str | None = "complete") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    manifest = {"mesaopt_version": "x", "row_counts": {}, "marker": marker}
    if status is not None:
        manifest["status"] = status
    (folder / "manifest.json").write_text(json.dumps(manifest))
    (folder / "steps.parquet").write_text(marker)


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_user_folder_is_refused_and_left_as_it_was(tmp_path):
    user = tmp_path / "results"
    user.mkdir()
    (user / "steps.csv").write_text("mine\n")
    with pytest.raises(ScenarioError, match="not a mesaopt run") as caught:
        prepare_target(user)
    assert caught.value.key == "--out"
    assert (user / "steps.csv").read_text() == "mine\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results"]  # no staging folder


@pytest.mark.parametrize("out", ["", ".", "..", "ABS"])
def test_the_current_folder_or_one_holding_it_is_never_replaced(tmp_path, monkeypatch, out):
    """run_simulation(scenario, "") once replaced the caller's working folder, an empty run
    folder or not: a folder that is, or holds, the current one is refused and left alone."""
    from mesaopt import load_scenario, run_simulation

    here = tmp_path / "work" / "here"
    write_run(here, "mine")  # even a run folder: the process works inside it
    monkeypatch.chdir(here)
    target = str(here) if out == "ABS" else out
    scenario = load_scenario(None, ["network.n_agents=20", "run.steps=1"])
    with pytest.raises(ScenarioError, match="is the current folder or holds it"):
        run_simulation(scenario, target, progress=False)
    assert (here / "steps.parquet").read_text() == "mine"
    assert sorted(p.name for p in here.iterdir()) == ["manifest.json", "steps.parquet"]
    assert sorted(p.name for p in (tmp_path / "work").iterdir()) == ["here"]  # no staging


@pytest.mark.parametrize("name", ["afile/sub", "afile/sub/deeper"])
def test_a_file_on_the_way_is_refused(tmp_path, name):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ScenarioError, match="afile is not a folder"):
        check_target(tmp_path / name)
    with pytest.raises(ScenarioError, match="exists and is not a folder"):
        check_target(tmp_path / "afile")


def test_a_folder_nobody_can_create_in_is_refused():
    with pytest.raises(ScenarioError, match="/proc/x"):
        check_target(atomic_folder.Path("/proc/x"))


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_parent_is_refused(tmp_path):
    parent = tmp_path / "ro"
    parent.mkdir()
    parent.chmod(0o555)
    try:
        with pytest.raises(ScenarioError, match="permission denied"):
            check_target(parent / "run")
    finally:
        parent.chmod(0o755)


def test_empty_folders_run_folders_and_old_leftovers_may_be_replaced(tmp_path):
    (tmp_path / "empty").mkdir()
    check_target(tmp_path / "empty")
    write_run(tmp_path / "failed", "f", status="failed")
    check_target(tmp_path / "failed")
    old = tmp_path / "crashed"  # what a kill left with mesaopt before run folders were swapped
    (old / ".partial" / "steps").mkdir(parents=True)
    (old / ".steps.parquet.tmp-123").write_text("x")
    check_target(old)
    (old / "steps.parquet").write_text("x")  # tables without a manifest: not provably ours
    with pytest.raises(ScenarioError):
        check_target(old)


def test_missing_parents_are_made_only_when_the_run_is_swapped_in(tmp_path):
    target = tmp_path / "a" / "b" / "run"
    staging = prepare_target(target)
    assert staging.parent == tmp_path and not (tmp_path / "a").exists()
    write_run(staging, "new")
    swap_in(staging, target)
    assert json.loads((target / "manifest.json").read_text())["marker"] == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]


@pytest.mark.parametrize("swap", ["exchange", "rename"])
def test_swap_replaces_a_run_folder_whole(tmp_path, monkeypatch, swap):
    if swap == "rename":
        monkeypatch.setenv(SWAP_ENV, "rename")
    target = tmp_path / "run"
    write_run(target, "old")
    (target / "report").mkdir()
    staging = prepare_target(target)
    write_run(staging, "new")
    swap_in(staging, target)
    assert json.loads((target / "manifest.json").read_text())["marker"] == "new"
    assert not (target / "report").exists()  # the whole folder is replaced
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_stale_siblings_of_dead_processes_are_removed_live_ones_kept(tmp_path):
    target = tmp_path / "run"
    dead = dead_pid()
    stale = [tmp_path / f".run.tmp-{dead}", tmp_path / f".run.old-{dead}"]
    for folder in stale:
        write_run(folder, "stale")
    live = tmp_path / f".run.tmp-{os.getppid()}"  # our parent is alive
    live.mkdir()
    other = tmp_path / f".other.tmp-{dead}"  # another target's: not ours to clean
    other.mkdir()
    assert sorted(clean_stale_siblings(target)) == sorted(stale)
    assert live.exists() and other.exists()
    assert staging_path(target) == tmp_path / f".run.tmp-{os.getpid()}"


def test_a_users_folder_named_like_a_stale_sibling_is_kept(tmp_path):
    """The cleaning once removed any ``.run.tmp-<dead pid>`` beside the target, a user's own
    folder of that name included (fuzzing pass): it now removes only what a run made."""
    target = tmp_path / "run"
    dead = dead_pid()
    mine = tmp_path / f".run.tmp-{dead}"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    also_mine = tmp_path / f".run.old-{dead}"
    also_mine.write_text("a file, not a folder")
    killed = prepare_target(target)  # as a run killed before its first table left it
    assert [p.name for p in killed.iterdir()] == [atomic_folder.STAGING_MARK]
    killed_at = tmp_path / f".run.tmp-{dead_pid()}"
    killed.rename(killed_at)
    (killed_at / "steps.parquet").write_text("half a table")  # no manifest yet
    assert clean_stale_siblings(target) == [killed_at]
    assert (mine / "notes.txt").read_text() == "mine" and also_mine.is_file()
    too_large = tmp_path / ".run.tmp-99999999999999999999"  # no pid: kept, not a traceback
    too_large.mkdir()
    assert clean_stale_siblings(target) == [] and too_large.is_dir()
    staging = prepare_target(target)
    write_run(staging, "new")
    swap_in(staging, target)
    assert sorted(p.name for p in target.iterdir()) == ["manifest.json", "steps.parquet"]


def test_run_status():
    assert run_status(atomic_folder.Path("/nonexistent")) is None


def test_run_status_of_folders(tmp_path):
    write_run(tmp_path / "a", "a")
    write_run(tmp_path / "b", "b", status="failed")
    write_run(tmp_path / "c", "c", status=None)  # written before runs recorded a status
    assert [run_status(tmp_path / n) for n in "abc"] == ["complete", "failed", "complete"]


def test_a_parent_the_process_may_not_write_is_refused_before_any_probe(tmp_path, monkeypatch):
    """As root the permission bits do not stop writes, so access() is made to answer no."""
    monkeypatch.setattr(atomic_folder.os, "access", lambda path, mode: False)
    with pytest.raises(ScenarioError, match="permission denied"):
        check_target(tmp_path / "run")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("link", ["loop", "dangling"])
def test_a_broken_link_on_the_way_to_the_target_is_refused(tmp_path, link):
    """A looping or dangling link among the folders the swap would make: refused up front (the
    swap's mkdir once failed with 'File exists', and Python 3.12's resolve raises RuntimeError)."""
    way = tmp_path / "way"
    way.symlink_to(way if link == "loop" else tmp_path / "nowhere")
    with pytest.raises(ScenarioError, match="way is a broken symbolic link"):
        prepare_target(way / "run" / "x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["way"]


def test_an_edge_list_behind_a_link_loop_is_the_readers_one_line_error(tmp_path):
    from mesaopt import load_scenario, run_simulation

    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    overrides = ["network.n_agents=20", "run.steps=1", "network.topology=edgelist"]
    scenario = load_scenario(None, [*overrides, f"network.path={tmp_path}/loop/e.csv"])
    with pytest.raises(ScenarioError, match=r"network\.path: cannot read"):
        run_simulation(scenario, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()
