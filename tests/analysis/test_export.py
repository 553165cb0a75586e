"""run.py export: a sweep's tables as single files, the runs' networks among them."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mesaopt import read_run, run_sweep
from mesaopt.analysis.export import export_sweep
from mesaopt.model.errors import ScenarioError

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
    manifest = json.loads((sweep / "runs" / first / "manifest.json").read_text())
    for key in ("files", "row_counts"):  # as an older mesaopt wrote them: no network entry
        manifest[key] = {t: v for t, v in manifest[key].items() if t != "network"}
    (old / "manifest.json").write_text(json.dumps(manifest))
    (copy / "runs" / "failed").mkdir()  # a failed run: no manifest
    assert export_sweep(copy, "csv", tmp_path / "out") == []


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("corrupt", "a table cannot be read"),
        ("missing", "missing, though the run's manifest names it"),
        ("other", "not a network table (no column 'target')"),
    ],
)
def test_a_network_table_the_manifest_names_is_never_skipped_silently(
    sweep: Path, tmp_path: Path, damage: str, message: str
) -> None:
    """A corrupt, deleted or foreign network.parquet is an error naming it, not a run left out."""
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(sweep, broken)
    table = broken / "runs" / sorted(run_ids(sweep))[-1] / "network.parquet"
    if damage == "corrupt":
        table.write_bytes(b"PAR1 not really")
    elif damage == "missing":
        table.unlink()
    else:
        pd.DataFrame({"source": [0], "weight": [1.0]}).to_parquet(table)
    with pytest.raises(ScenarioError) as err:
        export_sweep(broken, "csv", tmp_path / "new")
    assert err.value.key == str(table) and err.value.message.startswith(message)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "new").exists()


def test_export_refuses_a_folder_that_is_not_its_own_and_reuses_its_own(
    sweep: Path, tmp_path: Path
) -> None:
    """--out holding someone's summary.csv is refused, untouched; an earlier export is reused."""
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "summary.csv").write_text("my numbers\n", encoding="utf-8")
    with pytest.raises(ScenarioError, match="not a mesaopt export folder"):
        export_sweep(sweep, "csv", theirs)
    assert [p.name for p in theirs.iterdir()] == ["summary.csv"]
    assert (theirs / "summary.csv").read_text(encoding="utf-8") == "my numbers\n"
    ours = tmp_path / "ours"
    first = export_sweep(sweep, "csv", ours)
    mark = json.loads((ours / "export.json").read_text(encoding="utf-8"))
    assert mark["sweep"] == str(sweep.resolve()) and mark["format"] == "csv"
    assert export_sweep(sweep, "csv", ours) == first
    assert sorted(p.name for p in ours.iterdir()) == sorted(
        [*(p.name for p in first), "export.json"]
    )


def test_a_table_that_cannot_be_read_leaves_the_destination_as_it_was(
    sweep: Path, tmp_path: Path
) -> None:
    """A corrupt summary.parquet, found after steps and networks were written: no new folder, no
    file replaced, no staging left; the command says it in one line, exit 2."""
    import shutil
    import subprocess
    import sys

    broken = tmp_path / "broken"
    shutil.copytree(sweep, broken)
    (broken / "summary.parquet").write_bytes(b"PAR1 not really")
    before = {p.name: p.stat().st_mtime_ns for p in broken.iterdir()}
    with pytest.raises(ScenarioError, match="a table cannot be read") as err:
        export_sweep(broken, "csv", tmp_path / "new")
    assert err.value.key == str(broken / "summary.parquet")  # the file, among hundreds
    assert not (tmp_path / "new").exists()
    with pytest.raises(ScenarioError):
        export_sweep(broken, "csv")
    assert {p.name: p.stat().st_mtime_ns for p in broken.iterdir()} == before
    result = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "export", str(broken), "--out", str(tmp_path / "x")],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.startswith(
        f"mesaopt: error: {broken / 'summary.parquet'}: a table cannot be read"
    )
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_export_never_writes_into_another_sweeps_folder(sweep: Path, tmp_path: Path) -> None:
    """Another sweep's folder holds its own runs.parquet and summary.parquet: refused, untouched."""
    import shutil

    other = tmp_path / "other"
    shutil.copytree(sweep, other)
    before = {p.name: p.read_bytes() for p in other.iterdir() if p.is_file()}
    with pytest.raises(ScenarioError, match="not a mesaopt export folder"):
        export_sweep(sweep, "parquet", other)
    assert {p.name: p.read_bytes() for p in other.iterdir() if p.is_file()} == before


def test_an_export_killed_half_way_is_written_again(sweep: Path, tmp_path: Path) -> None:
    """kill -9 leaves the mark (written first) and a staging folder of a dead process: the next
    export takes the folder as its own, removes that staging and writes every table."""
    import subprocess
    import sys

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    out = tmp_path / "half"
    out.mkdir()
    (out / "export.json").write_text("{}", encoding="utf-8")
    stale = out / f".export.tmp-{gone.stdout.strip()}"
    stale.mkdir()
    (stale / "steps.csv").write_text("half a table", encoding="utf-8")
    written = export_sweep(sweep, "csv", out)
    assert not stale.exists()
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [*(p.name for p in written), "export.json"]
    )
    assert json.loads((out / "export.json").read_text(encoding="utf-8"))["format"] == "csv"


def test_a_folder_in_a_tables_place_replaces_nothing(sweep: Path, tmp_path: Path) -> None:
    """A folder named runs.csv cannot be replaced by a file: no table is replaced, one line."""
    out = tmp_path / "ours"
    export_sweep(sweep, "csv", out)
    (out / "runs.csv").unlink()
    (out / "runs.csv").mkdir()
    tables = {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.name != "export.json"}
    mark = (out / "export.json").read_bytes()
    with pytest.raises(ScenarioError, match=r"runs\.csv is a folder"):
        export_sweep(sweep, "csv", out)
    assert {
        p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.name != "export.json"
    } == tables
    assert (out / "export.json").read_bytes() == mark  # put back as it was


@pytest.mark.parametrize("stop", ["SIGINT", "SIGTERM"])
def test_ctrl_c_while_tables_replace_the_old_waits_for_the_last(
    sweep: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stop: str
) -> None:
    """A Ctrl-C between two renames once left a folder mixing two exports' tables under the
    earlier mark: now every table is replaced, the mark is the new export's, then it stops.
    So does SIGTERM where ``run.py`` raises it as :class:`~mesaopt.model.errors.Terminated`."""
    import signal

    from mesaopt.analysis import export
    from mesaopt.model.errors import Terminated, raise_terminated

    signum = getattr(signal, stop)
    raised = Terminated if stop == "SIGTERM" else KeyboardInterrupt
    previous = signal.signal(signal.SIGTERM, raise_terminated)  # as the command line has it

    out = tmp_path / "out"
    export_sweep(sweep, "csv", out)
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    real = os.replace
    calls = []

    def replace(source, target):
        if Path(target).parent == out:  # a table replacing the old (not one being staged)
            calls.append(Path(target).name)
            if len(calls) == 1:
                os.kill(os.getpid(), signum)  # handled before the next bytecode
        real(source, target)

    monkeypatch.setattr(export.os, "replace", replace)
    try:
        with pytest.raises(KeyboardInterrupt) as info:
            export_sweep(sweep, "csv", out)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert info.type is raised
    tables = [name for name in before if name != "export.json"]
    assert sorted(c for c in calls if c in tables) == sorted(tables)  # every one renamed
    after = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert sorted(after) == sorted(before)
    assert all(after[name] != before[name] for name in tables)
    assert json.loads((out / "export.json").read_text())["format"] == "csv"


def test_a_programs_own_sigterm_handler_is_left_to_run_during_the_renames() -> None:
    """Only the command line's SIGTERM handler is held back: a library user's own handler was
    replaced for the block and never called (review)."""
    import signal

    from mesaopt.analysis.export import _interrupt_deferred
    from mesaopt.model.errors import raise_terminated

    def mine(signum, frame):
        pass

    previous = signal.signal(signal.SIGTERM, mine)
    try:
        with _interrupt_deferred():
            assert signal.getsignal(signal.SIGTERM) is mine
        signal.signal(signal.SIGTERM, raise_terminated)
        with _interrupt_deferred():
            assert signal.getsignal(signal.SIGTERM) is not raise_terminated
        assert signal.getsignal(signal.SIGTERM) is raise_terminated
    finally:
        signal.signal(signal.SIGTERM, previous)
