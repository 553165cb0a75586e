"""kill -9 anywhere in the final write: the run folder is absent, the old run, or the new run.

A subprocess runs ``run.py simulate`` with the test hook ``MESAOPT_TEST_KILL_AT`` set
(:mod:`model.atomic_folder`): it kills itself with SIGKILL at one named point of the write
sequence (after the steps, while writing the tables, before the manifest, around the swap). The
target must then be either absent (only where the two-rename swap has moved the old run aside), or
whole and identical to the old run (killed before the swap) or to an uninterrupted new run
(killed after it), never a mix. The next run into the same target removes what the killed one
left beside it and succeeds.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from mesaopt.model.atomic_folder import KILL_ENV, SWAP_ENV

ROOT = Path(__file__).resolve().parents[2]
SMALL = ["--set", "network.n_agents=60", "--steps", "6", "--quiet"]
OLD_SEED, NEW_SEED = "1", "2"
TABLES = ("steps", "agents", "selections", "events", "network")


def simulate(out: Path, seed: str, **env: str) -> subprocess.CompletedProcess:
    environment = dict(os.environ, PYTHONPATH=str(ROOT), **env)
    command = [sys.executable, str(ROOT / "run.py"), "simulate", "regressional", *SMALL]
    return subprocess.run(
        [*command, "--seed", seed, "--out", str(out)],
        capture_output=True,
        text=True,
        env=environment,
        timeout=300,
    )


def content(folder: Path) -> dict[str, object]:
    """What must be identical between two runs of the same seed: tables' bytes, row counts."""
    manifest = json.loads((folder / "manifest.json").read_text())
    files = {p.name: p.read_bytes() for p in folder.iterdir() if p.name != "manifest.json"}
    return {
        "files": files,
        "row_counts": manifest["row_counts"],
        "seed": manifest["seed"],
        "status": manifest["status"],
    }


@pytest.fixture(scope="module")
def references(tmp_path_factory):
    """An old run (seed 1) to overwrite, and the new run (seed 2) written without a kill."""
    base = tmp_path_factory.mktemp("references")
    for name, seed in (("old", OLD_SEED), ("new", NEW_SEED)):
        result = simulate(base / name, seed)
        assert result.returncode == 0, result.stderr
    return base / "old", base / "new"


# (kill point, swap mechanism, what the target holds afterwards, check the next run)
CASES = [
    ("before_tables", "exchange", "old", False),
    ("table_written", "exchange", "old", False),
    ("before_manifest", "exchange", "old", False),
    ("before_swap", "exchange", "old", True),
    ("after_swap", "exchange", "new", True),
    ("after_aside", "rename", "absent", True),
    ("after_swap", "rename", "new", False),
]


@pytest.mark.parametrize(("point", "swap", "expected", "follow_up"), CASES)
def test_a_kill_in_the_write_leaves_a_whole_folder_or_none(
    tmp_path, references, point, swap, expected, follow_up
):
    old, new = references
    target = tmp_path / "run"
    shutil.copytree(old, target)
    env = {KILL_ENV: point}
    if swap == "rename":
        env[SWAP_ENV] = "rename"
    killed = simulate(target, NEW_SEED, **env)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    if expected == "absent":
        assert not target.exists()
    else:
        assert content(target) == content(old if expected == "old" else new)
    if follow_up:
        again = simulate(target, NEW_SEED)
        assert again.returncode == 0, again.stderr
        assert content(target) == content(new)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # leftovers cleaned


@pytest.mark.parametrize("point", ["before_swap", "after_swap"])
def test_a_kill_on_a_first_run_leaves_no_folder_or_the_whole_run(tmp_path, references, point):
    _, new = references
    target = tmp_path / "run"
    killed = simulate(target, NEW_SEED, **{KILL_ENV: point})
    assert killed.returncode == -signal.SIGKILL
    if point == "before_swap":
        assert not target.exists()
    else:
        assert content(target) == content(new)
