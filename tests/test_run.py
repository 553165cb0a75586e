"""End to end through the command line: simulate a shipped scenario, read the tables back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mesaopt import run

ROOT = Path(__file__).resolve().parents[1]
BASELINE = ROOT / "scenarios" / "baseline.toml"
FAST = ["--set", "network.n_agents=400", "--steps", "40", "--set", "regimes.0.at=20"]


def python(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run this Python on ``args`` with the checkout importable as ``mesaopt``."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300
    )


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return python(str(ROOT / "run.py"), *args, cwd=cwd)


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "out"
    result = cli("simulate", str(BASELINE), *FAST, "--out", str(out), "--seed", "5")
    assert result.returncode == 0, result.stderr
    return out, result


def test_simulate_writes_its_tables_and_a_manifest(simulated):
    out, result = simulated
    assert f"wrote {out}" in result.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["seed"] == 5 and manifest["steps"] == 40
    assert manifest["scenario"]["network"]["n_agents"] == 400
    assert manifest["versions"]["mesa"].startswith("3.")
    # The BLAS kernels the tables were computed with (docs/performance.md, "Across machines").
    assert manifest["blas"] and all(
        set(b) == {"library", "version", "architecture"} for b in manifest["blas"]
    )
    for table in ("steps", "agents", "selections", "events", "network"):
        frame = pd.read_parquet(out / f"{table}.parquet")
        assert len(frame) == manifest["row_counts"][table]
    assert not (out / ".partial").exists()


def test_tables_have_their_documented_columns_and_invariants(simulated):
    out, _ = simulated
    steps = pd.read_parquet(out / "steps.parquet")
    documented = (ROOT / "docs" / "tables.md").read_text()
    for table in ("steps", "agents", "selections", "events", "network"):
        for column in pd.read_parquet(out / f"{table}.parquet").columns:
            generic = column.split("_")[0] + "_<channel>"
            category = column.rsplit("_", 1)[0] + "_<category>"
            assert (
                f"`{column}`" in documented
                or f"`{generic}`" in documented
                or f"`{category}`" in documented
            ), f"{table}.{column} is not documented in docs/tables.md"
    assert len(steps) == 40 * 3
    np.testing.assert_allclose(
        steps["welfare"],
        steps["value"]
        + steps["private_payoff"]
        - steps["agent_goal_payoff"]
        + steps["externality_received"],
        atol=1e-9,
    )
    agents = pd.read_parquet(out / "agents.parquet")
    assert set(agents["step"]) == {10, 20, 30, 40}
    assert agents["node"].between(0, 399).all()
    for loss in ("principal_loss", "mesa_loss"):
        values = agents[loss]
        assert values.mean() > -4 * values.std() / np.sqrt(len(values))
    selections = pd.read_parquet(out / "selections.parquet")
    assert (selections["candidates_max_true"] >= selections["chosen_true"] - 1e-12).all()
    events = pd.read_parquet(out / "events.parquet")
    assert "regime" in set(events["kind"])


def test_csv_format_matches_parquet(simulated, tmp_path):
    out, _ = simulated
    result = cli(
        "simulate", str(BASELINE), *FAST, "--out", str(tmp_path), "--seed", "5", "--format", "csv"
    )
    assert result.returncode == 0, result.stderr
    a = pd.read_parquet(out / "steps.parquet")
    b = pd.read_csv(tmp_path / "steps.csv")
    pd.testing.assert_frame_equal(a, b, check_dtype=False, atol=1e-12)


def test_bad_scenario_file_gives_one_line_exit_2_and_no_output(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(BASELINE.read_text().replace("cost = 1.0", "cost = -1.0", 1))
    out = tmp_path / "out"
    result = cli("simulate", str(bad), "--out", str(out))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert (
        lines[-1]
        == f"mesaopt: error: {bad}: channels.0.cost: Input should be greater than or equal to "
        "0.000001 (got -1.0)"
    )
    assert not out.exists()


def test_error_found_while_building_names_key_and_file(tmp_path):
    out = tmp_path / "out"
    result = cli("simulate", str(BASELINE), "--set", "network.k=7", "--out", str(out))
    assert result.returncode == 2
    assert (
        result.stderr.strip().splitlines()[-1].startswith(f"mesaopt: error: {BASELINE}: network.k:")
    )
    assert not out.exists()


def test_bad_arguments_exit_2():
    assert cli("simulate", str(BASELINE), "--steps", "-3").returncode == 2
    assert cli("simulate").returncode == 2
    assert cli("frobnicate").returncode == 2


def test_edgelist_errors_name_the_file(tmp_path):
    edges = tmp_path / "edges.csv"
    edges.write_text("source,target\n0,1\n1,999\n")
    scenario = tmp_path / "s.toml"
    scenario.write_text(
        BASELINE.read_text()
        .replace('topology = "watts_strogatz"', 'topology = "edgelist"', 1)
        .replace('# path = "edges.csv"', 'path = "edges.csv"', 1)
        .replace("n_agents = 1000", "n_agents = 10", 1)
    )
    result = cli("check", str(scenario))
    assert result.returncode == 2
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith(f"mesaopt: error: {scenario}: network.path:") and "999" in line


def test_scenarios_lists_shipped_files_and_prints_the_schema(capsys):
    assert run.main(["scenarios"]) == 0
    assert "baseline" in capsys.readouterr().out
    assert run.main(["scenarios", "--schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert "channels" in schema["properties"]
    optimizer = schema["$defs"]["AgentsConfig"]["properties"]["optimizer"]
    assert optimizer["enum"] == ["direct", "control", "mixed"]  # from the kind registry


def test_a_shipped_scenario_is_named_by_its_name_anywhere(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert run.scenario_path("regressional") == ROOT / "scenarios" / "regressional.toml"
    (tmp_path / "regressional").write_text("")  # a file of that name in the folder wins
    assert run.scenario_path("regressional") == Path("regressional")
    assert run.main(["check", "heavy_tails", "--set", "network.n_agents=40"]) == 0
    assert "ok:" in capsys.readouterr().out
    assert run.main(["scenarios"]) == 0  # outside the checkout: absolute paths, usable as given
    assert str(ROOT / "scenarios" / "baseline.toml") in capsys.readouterr().out


def test_demo_runs_and_draws_a_figure(tmp_path):
    result = cli(cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    figure = tmp_path / "mesaopt-demo" / "proxy_vs_value.png"
    assert figure.stat().st_size > 10_000
    assert "figure:" in result.stdout and "proxy_vs_value.png" in result.stdout
    assert (tmp_path / "mesaopt-demo" / "steps.parquet").exists()


@pytest.mark.parametrize(
    ("flag", "value"),
    [("--metric", "valu"), ("--principal", "nobody")],
    ids=["metric", "principal"],
)
def test_sensitivity_refuses_an_unknown_output_before_running(tmp_path, flag, value):
    out = tmp_path / "sens"
    result = cli(
        "sensitivity",
        str(ROOT / "scenarios" / "regressional.toml"),
        "--method",
        "morris",
        "--param",
        "principals.0.selection.n=1:16",
        flag,
        value,
        "--out",
        str(out),
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith(f"mesaopt: error: {flag}: ")
    assert not out.exists()


def test_a_closed_pipe_ends_the_command_quietly():
    """`mesaopt scenarios --schema | head`: no BrokenPipeError traceback, SIGPIPE's status."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    with subprocess.Popen(
        [sys.executable, str(ROOT / "run.py"), "scenarios", "--schema"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        bufsize=0,
    ) as proc:
        proc.stdout.close()  # before the command has written anything (it imports first)
        stderr = proc.stderr.read().decode()
        status = proc.wait(timeout=120)
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr
    assert status == 141


def test_version_and_an_empty_out_folder(tmp_path, capsys, monkeypatch):
    with pytest.raises(SystemExit) as info:
        run.main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.startswith("mesaopt ")
    monkeypatch.chdir(tmp_path)
    assert run.main(["simulate", "regressional", "--set", "network.n_agents=20", "--out", ""]) == 2
    assert "--out: empty folder name" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # nothing written into the current folder


@pytest.mark.parametrize("command", ["check", "simulate", "sweep"])
def test_an_empty_scenario_name_is_refused_not_read_as_the_default(
    tmp_path, capsys, monkeypatch, command
):
    monkeypatch.chdir(tmp_path)
    args = [command, ""] + ([] if command == "check" else ["--out", "x"])
    assert run.main(args) == 2
    assert capsys.readouterr().err.strip() == "mesaopt: error: scenario: empty file name"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["a" * 300, "/".join(["b" * 200] * 30)])
def test_a_name_too_long_for_the_system_is_one_short_line(tmp_path, capsys, name):
    """Names past NAME_MAX or PATH_MAX were a 6,000-character line with exit status 1."""
    out = f"{tmp_path}/{name}"
    assert run.main(["simulate", "regressional", "--steps", "1", "--out", out, "--quiet"]) == 2
    assert run.main(["check", f"{out}.toml"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0].startswith("mesaopt: error: --out: ")
    assert lines[1].startswith("mesaopt: error: scenario: ")
    assert all("name too long" in line and len(line) < 300 for line in lines)
    assert list(tmp_path.iterdir()) == []


def test_out_on_a_folder_that_is_not_a_run_is_refused_and_its_files_survive(tmp_path, capsys):
    mine = tmp_path / "results"
    mine.mkdir()
    (mine / "steps.csv").write_text("my data\n")
    (tmp_path / "afile").write_text("x")
    small = ["simulate", "regressional", "--set", "network.n_agents=20", "--steps", "2"]
    for out in (mine, tmp_path / "afile" / "sub", Path("/proc/x")):
        assert run.main([*small, "--quiet", "--out", str(out)]) == 2
        line = capsys.readouterr().err.strip()
        assert line.startswith("mesaopt: error: --out: ") and "\n" not in line
    assert (mine / "steps.csv").read_text() == "my data\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "results"]
    assert sorted(p.name for p in mine.iterdir()) == ["steps.csv"]


def test_a_non_finite_number_is_one_line_exit_1_and_a_failed_manifest(
    tmp_path, capsys, monkeypatch
):
    from mesaopt.model import measurement

    real = measurement.aggregate_steps

    def aggregate(**kwargs):
        rows = real(**kwargs)
        if kwargs["step"] == 2:
            rows[0]["pay"] = float("inf")
        return rows

    monkeypatch.setattr(measurement, "aggregate_steps", aggregate)
    out = tmp_path / "out"
    small = ["simulate", "regressional", "--set", "network.n_agents=20", "--steps", "3"]
    assert run.main([*small, "--quiet", "--out", str(out)]) == 1
    line = capsys.readouterr().err.strip()
    assert line.startswith("mesaopt: error: step 2: steps.pay (principal ") and "\n" not in line
    assert json.loads((out / "manifest.json").read_text())["status"] == "failed"


# ------------------------------------------------------------ hostile input (issue 15)

TINY = ["--set", "network.n_agents=60", "--steps", "2"]


@pytest.mark.parametrize("value", ["0", "abc"])
@pytest.mark.parametrize(
    "command",
    [["simulate", "baseline", "--steps", "2"], ["sweep", "baseline", "--scheduler", "tcp://h:1"]],
    ids=["simulate", "sweep"],
)
def test_a_bad_thread_count_is_one_line_naming_mesaopt_threads(
    tmp_path, monkeypatch, command, value
):
    """It was reported as a bad --steps or --scheduler value, whose check imports the thread
    pool (fuzzing pass)."""
    monkeypatch.setenv("MESAOPT_THREADS", value)
    result = cli(*command, "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"mesaopt: error: MESAOPT_THREADS must be a positive integer, got {value!r}"
    ]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["network.k=60"], "network.k"),
        (["network.k=7"], "network.k"),
        (["network.topology='erdos_renyi'", "network.k=61"], "network.k"),
        (["network.topology='grid'"], "network.n_agents"),
        (["network.topology='grid'", "network.width=7"], "network.height"),
        (["network.topology='barabasi_albert'", "network.m=60"], "network.m"),
        (["channels.0.peer=5"], "channels.0.peer"),
        (["network.topology='edgelist'", "network.path='missing.csv'"], "network.path"),
        (["network.topology='edgelist'", 'network.path="e\\u0000.csv"'], "network.path"),
        (["network.topology='edgelist'", "network.path='~no_such_user/e.csv'"], "network.path"),
    ],
    ids=[
        "ws-k>=n",
        "ws-odd-k",
        "er-k>=n",
        "grid-square",
        "grid-height",
        "ba-m",
        "peer",
        "edges",
        "nul-in-path",
        "unknown-user",
    ],
)
def test_errors_found_while_building_the_network_are_the_only_line(
    tmp_path, capsys, overrides, key
):
    out = tmp_path / "out"
    args = ["simulate", str(BASELINE), *TINY, *[f"--set={o}" for o in overrides]]
    assert run.main([*args, "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [captured.err.strip()]
    assert captured.err.startswith(f"mesaopt: error: {BASELINE}: {key}: ")
    assert not out.exists()


@pytest.mark.parametrize("path", ["x" * 300 + ".csv", "/tmp/" + "x" * 300 + "/e.csv"])
def test_a_long_network_path_is_clipped_in_its_error_line(tmp_path, capsys, path):
    """A 300-character network.path was echoed whole (fuzzing pass): every error line keeps
    the first and last 60 characters of a word longer than 121 (model.errors.clipped)."""
    args = ["simulate", str(BASELINE), *TINY, "--set", "network.topology='edgelist'"]
    args += ["--set", f"network.path='{path}'", "--out", str(tmp_path / "out")]
    assert run.main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and ": network.path: " in err
    assert "x" * 50 + "…" + "x" * 50 in err and "x" * 122 not in err
    assert len(err) < 2 * len(str(BASELINE)) + 250


def test_a_successful_run_prints_its_summary_after_the_run(tmp_path, capsys):
    assert run.main(["simulate", str(BASELINE), *TINY, "--out", str(tmp_path / "o")]) == 0
    captured = capsys.readouterr()
    assert captured.err.startswith(f"mesaopt: {BASELINE}: 60 agents on watts_strogatz")
    assert "wrote" in captured.out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["simulate", "baseline", "--steps", "99999999999999999999999"], "at most 10,000,000"),
        (["simulate", "baseline", "--steps", "10000001"], "at most 10,000,000"),
        (["viz", "--port", "70000"], "a port in 1..65535"),
        (["viz", "--port", "0"], "a port in 1..65535"),
        (["sweep", "baseline", "--scheduler", "notaurl", "--out", "SW"], "tcp://HOST:PORT"),
        (["sweep", "baseline", "--scheduler", "http://h:1", "--out", "SW"], "unknown scheme"),
        (["sweep", "baseline", "--scheduler", "tcp://h:99999", "--out", "SW"], "1..65535"),
        (["sweep", "baseline", "--workers", "99999999999", "--out", "SW"], "at most 1024 workers"),
        (["experiments", "--workers", "1025", "--out", "SW"], "at most 1024 workers"),
    ],
)
def test_bad_arguments_are_one_line_with_exit_2(tmp_path, capsys, args, message):
    args = [str(tmp_path / "sw") if a == "SW" else a for a in args]
    with pytest.raises(SystemExit) as info:
        run.main(args)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [err.strip()] and message in err
    assert not (tmp_path / "sw").exists()


def test_a_scheduler_that_does_not_answer_is_one_line_and_nothing_is_written(
    tmp_path, capsys, monkeypatch
):
    from mesaopt.analysis import executors

    monkeypatch.setattr(executors, "CONNECT_TIMEOUT_S", 1)
    out = tmp_path / "sw"
    args = ["sweep", str(BASELINE), *TINY, "--grid", "principals.0.selection.n=2,4"]
    assert run.main([*args, "--scheduler", "tcp://127.0.0.1:1", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [err.strip()]
    assert "--scheduler: no Dask scheduler answered at tcp://127.0.0.1:1 within 1 s" in err
    assert not out.exists()


@pytest.mark.parametrize("grid", [[], ["--grid", "principals.0.selection.n=2,4"]])
def test_a_sweep_that_cannot_start_is_one_line_and_writes_nothing(tmp_path, capsys, grid):
    """--cluster slurm without dask-jobqueue, and a --out that is someone else's folder: the
    error is the only line, with or without a grid (no note about a missing grid before it)."""
    import importlib.util

    args = ["sweep", str(BASELINE), *TINY, *grid]
    if importlib.util.find_spec("dask_jobqueue") is None:
        out = tmp_path / "slurm"
        assert run.main([*args, "--cluster", "slurm", "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.splitlines() == [err.strip()] and 'pip install -e ".[slurm]"' in err
        assert not out.exists()
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine", encoding="utf-8")
    assert run.main([*args, "--out", str(mine)]) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [err.strip()] and "not a mesaopt sweep" in err
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]


def test_running_out_of_memory_past_the_estimate_is_one_line_and_leaves_nothing(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    """A MemoryError the loader's estimate did not foresee: one line, exit 1, no folder."""
    from mesaopt.model import model as model_module

    def exhausted(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(model_module.MesaOptModel, "step", exhausted)
    out = tmp_path / "out"
    status = run.main(
        [
            "simulate",
            "baseline",
            "--set",
            "network.n_agents=60",
            "--steps",
            "2",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 1
    assert len(err) == 1 and err[0].startswith("mesaopt: error: out of memory")
    assert not out.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("above", "status"), [(32, 2), (448, 0)])
def test_a_run_under_ulimit_v_is_refused_unless_its_threads_fit_too(
    tmp_path: Path, above: int, status: int
) -> None:
    """``ulimit -v`` a little above the run's estimate is refused in one line, exit 2.

    The address space also holds each thread's stack and malloc arena
    (:func:`mesaopt.model.memory.address_space_margin`, 192 MiB with two kernel threads): 32 MiB
    above the estimate was accepted and then hung, aborted or printed a traceback (``can't
    start new thread``); 448 MiB above runs.
    """
    import resource

    from mesaopt.model.scenario import agent_counts, estimated_bytes
    from mesaopt.model.scenario_files import load_scenario

    sizes = ["network.n_agents=2000"]
    need = estimated_bytes(scenario := load_scenario(None, sizes), agent_counts(scenario))
    limit = int(need) + above * 2**20
    out = tmp_path / "out"
    command = ["simulate", "baseline", "--set", *sizes, "--steps", "3", "--out", str(out)]
    result = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), *command, "--quiet"],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, MESAOPT_THREADS="2", PYTHONPATH=str(ROOT)),
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit)),
    )
    assert result.returncode == status, result.stderr[-2000:]
    if status == 2:
        assert result.stderr.count("\n") == 1 and "ulimit -v" in result.stderr
        assert not out.exists() and list(tmp_path.iterdir()) == []
    else:
        assert (out / "manifest.json").is_file()


def _disk_full_when(monkeypatch, full) -> None:
    """Make every Parquet table write fail as on a full disk once ``full()`` is true."""
    import errno

    import pyarrow.parquet as pq

    original = pq.ParquetWriter.write_table

    def write_table(self, *args, **kwargs):
        if full():
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetWriter, "write_table", write_table)


def test_a_full_disk_during_simulate_is_one_line_and_leaves_nothing(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    """ENOSPC while the tables are written: one line saying so, exit 1, no folder, no staging."""
    _disk_full_when(monkeypatch, lambda: True)
    out = tmp_path / "out"
    status = run.main(["simulate", "baseline", *FAST, "--out", str(out), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 1
    assert err == [
        "mesaopt: error: no space left on the device; nothing was kept: free space (or choose "
        "another --out) and run again"
    ]
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_stops_a_sweep_which_then_resumes(tmp_path: Path, monkeypatch, capsys) -> None:
    """ENOSPC in a sweep is the machine's failure, not the run's: the sweep stops at once with
    one line, records no run as failed, keeps the finished runs, and a second call finishes."""
    out = tmp_path / "sweep"
    argv = ["sweep", "baseline", *FAST, "--out", str(out), "--engine", "serial", "--quiet"]
    argv += ["--grid", "network.n_agents=300,400", "--replicates", "2"]
    runs = out / "runs"
    with monkeypatch.context() as patch:  # the disk fills up once the first run is in place
        _disk_full_when(patch, lambda: runs.is_dir() and any(runs.iterdir()))
        status = run.main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 1
    assert err == [
        "mesaopt: error: no space left on the device; every finished run is kept: free space "
        "and run the same command again to resume"
    ]
    finished = [p.name for p in runs.iterdir()]
    assert len(finished) == 1
    assert not (out / "runs.parquet").exists()  # the sweep's index is written at its end
    assert run.main(argv) == 0
    index = pd.read_parquet(out / "runs.parquet")
    assert sorted(index["status"]) == ["ok", "ok", "ok", "skipped"]
    assert index.set_index("run_id").loc[finished[0], "status"] == "skipped"


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 1 MiB tmpfs (needs root and a kernel that lets this process mount one; else skip)."""
    mount = tmp_path / "small"
    mount.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1M", "tmpfs", str(mount)], capture_output=True
    )
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_a_really_full_disk_stops_a_dask_sweep_in_one_line(small_disk: Path) -> None:
    """The same on a real full filesystem, through the Dask engine's worker processes."""
    out = small_disk / "sweep"
    result = cli(
        "sweep", "baseline", *FAST, "--out", str(out), "--workers", "1", "--quiet",
        "--grid", "network.n_agents=2000,3000", "--replicates", "2",
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip().splitlines() == [
        "mesaopt: error: no space left on the device; every finished run is kept: free space "
        "and run the same command again to resume"
    ]
    assert not any(p.name == "runs.parquet" for p in out.iterdir())


def _ctrl_c_inside_a_kernel_call() -> None:
    """What Numba's dispatcher raises when a Ctrl-C lands while it calls a compiled kernel."""
    try:
        raise KeyboardInterrupt
    except KeyboardInterrupt as err:
        raise SystemError(
            "CPUDispatcher(<function _gather_by_group>) returned a result with an exception set"
        ) from err


def _ctrl_c() -> None:
    raise KeyboardInterrupt


@pytest.mark.parametrize(
    "ctrl_c", [_ctrl_c, _ctrl_c_inside_a_kernel_call], ids=["python", "kernel"]
)
def test_ctrl_c_is_one_line_exit_130_and_a_sweep_resumes(
    tmp_path: Path, monkeypatch, capsys, ctrl_c
) -> None:
    """KeyboardInterrupt: simulate keeps nothing, a sweep keeps its finished runs and says so.

    Also when it lands inside a compiled kernel's call (a SystemError caused by it): that once
    printed a traceback (simulate) or was recorded as the run's failure while the serial sweep
    went on (fuzzing pass).
    """
    from mesaopt.model import model as model_module

    original = model_module.MesaOptModel.step
    calls = {"n": 0, "stop_at": 1}

    def step(self):
        calls["n"] += 1
        if calls["n"] == calls["stop_at"]:
            ctrl_c()
        return original(self)

    monkeypatch.setattr(model_module.MesaOptModel, "step", step)
    out = tmp_path / "run"
    assert run.main(["simulate", "baseline", *TINY, "--out", str(out), "--quiet"]) == 130
    assert capsys.readouterr().err.strip().splitlines() == [
        "mesaopt: interrupted; nothing was kept (a run folder appears complete or not at all)"
    ]
    assert list(tmp_path.iterdir()) == []
    sweep = tmp_path / "sweep"
    args = ["sweep", "baseline", *TINY, "--grid", "network.k=2,4", "--replicates", "1"]
    args += ["--engine", "serial", "--out", str(sweep), "--quiet"]
    calls.update(n=0, stop_at=4)  # in the second run (a run is two steps)
    assert run.main(args) == 130
    assert capsys.readouterr().err.strip().splitlines() == [
        f"mesaopt: interrupted; run the same command again to resume ({sweep}/ keeps every "
        "finished run)"
    ]
    finished = [p.name for p in (sweep / "runs").iterdir()]
    assert len(finished) == 1
    calls.update(n=0, stop_at=-1)
    assert run.main(args) == 0
    index = pd.read_parquet(sweep / "runs.parquet").set_index("run_id")
    assert sorted(index["status"]) == ["ok", "skipped"]
    assert index.loc[finished[0], "status"] == "skipped"


def test_the_command_module_loads_nothing_heavy_before_main_catches_ctrl_c() -> None:
    """Importing run.py took a second (pydantic, NumPy, SciPy) outside main()'s try: a Ctrl-C
    then was a traceback. Now they load inside a handler, where Ctrl-C is one line."""
    code = (
        "import sys, mesaopt.run; heavy = ('pydantic', 'numpy', 'scipy', 'pandas', 'mesa')\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & set(heavy)))"
    )
    out = python("-c", code)
    assert (out.returncode, out.stdout.strip()) == (0, "[]"), out.stderr


def test_ctrl_c_while_a_scenario_loads_is_one_line(monkeypatch, capsys) -> None:
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("mesaopt.model.scenario_files.load_scenario", interrupted)
    assert run.main(["check", "baseline"]) == 130
    assert capsys.readouterr().err.strip().splitlines() == [
        "mesaopt: interrupted; nothing more was done"
    ]


def test_ctrl_c_before_a_sweep_has_written_its_folder_says_nothing_was_written(
    tmp_path, monkeypatch, capsys
) -> None:
    """A large design takes a while to check before the folder exists: the line once said the
    folder "keeps every finished run" (fuzzing pass)."""

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("mesaopt.analysis.sweep_runner.plan_runs", interrupted)
    args = ["sweep", "baseline", *TINY, "--engine", "serial", "--quiet"]
    assert run.main([*args, "--out", str(tmp_path / "sweep")]) == 130
    assert capsys.readouterr().err.strip() == "mesaopt: interrupted; nothing was written"
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_while_the_engines_load_is_one_line(tmp_path, monkeypatch, capsys) -> None:
    """sweep, sensitivity and experiments check the engine's settings first, importing pandas,
    pyarrow and Dask's setup (seconds): a Ctrl-C there is one line too."""

    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr("mesaopt.analysis.executors.worker_start_method", interrupted)
    assert run.main(["sweep", "baseline", "--out", str(tmp_path / "never")]) == 130
    assert capsys.readouterr().err.strip() == "mesaopt: interrupted; nothing was done"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "ctrl_c",
    [
        # in an atexit hook: once a traceback and status 130 for a command that had succeeded
        "atexit.register(lambda: (os.kill(os.getpid(), signal.SIGINT), time.sleep(1)))\n",
        # from an object freed with __main__, after the interpreter has put a Python signal
        # handler back to the default: once status -2 and no line (fuzzing pass)
        # (what it calls is bound when it is defined: by then the module's globals are gone)
        "class LateCtrlC:\n"
        "    def __del__(self, kill=os.kill, pid=os.getpid(), stop=signal.SIGINT,\n"
        "                wait=time.sleep):\n"
        "        kill(pid, stop)\n"
        "        wait(0.5)\n"
        "late = LateCtrlC()\n",
    ],
    ids=["atexit-hook", "last-clean-up"],
)
@pytest.mark.parametrize("stop", ["SIGINT", "SIGTERM"])
def test_ctrl_c_after_the_command_keeps_its_exit_status_and_prints_nothing(ctrl_c, stop) -> None:
    """A Ctrl-C (or SIGTERM) during the interpreter's shutdown: the command's status, nothing
    printed. (SIGTERM in the last clean-up once killed a finished command silently, status −15:
    fuzzing pass.)"""
    code = "import atexit, os, signal, time\nfrom mesaopt import run\nrun.main = lambda: 0\n"
    out = python("-c", code + ctrl_c.replace("SIGINT", stop) + "run.cli()\n")
    assert (out.returncode, out.stderr) == (0, "")


def _started(command: list[str], **options) -> subprocess.Popen:
    """A command started in the background, its output captured, this checkout importable."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    return subprocess.Popen(command, **pipes, text=True, env=env, **options)


def _wait_until(ready, process: subprocess.Popen, seconds: float = 240) -> None:
    """Wait until ``ready()``; fail (with the command's output) if it ends or time runs out."""
    import time

    deadline = time.monotonic() + seconds
    while not ready():
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.05)


def test_sigterm_stops_a_run_as_ctrl_c_does_one_line_exit_143_nothing_kept(
    tmp_path: Path,
) -> None:
    """``kill`` (a batch scheduler's time limit) once ended a run at once, status −15, no line,
    its hidden staging folder left beside ``--out`` (fuzzing pass): now it cleans up as a
    Ctrl-C does and says so."""
    import signal
    import time

    out = tmp_path / "run"
    command = [sys.executable, str(ROOT / "run.py"), "simulate", "baseline", "--out", str(out)]
    command += ["--set", "network.n_agents=20000", "--steps", "400", "--quiet"]
    process = _started(command)
    _wait_until(lambda: any(tmp_path.glob(".run.tmp-*")), process)  # it has started writing
    time.sleep(0.5)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 143, err
    assert err.strip().splitlines() == [
        "mesaopt: terminated; nothing was kept (a run folder appears complete or not at all)"
    ]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("stop", "word", "status"), [("SIGINT", "interrupted", 130), ("SIGTERM", "terminated", 143)]
)
def test_ctrl_c_in_a_terminal_stops_a_dask_sweep_with_one_line(
    tmp_path: Path, stop: str, word: str, status: int
) -> None:
    """Ctrl-C goes to the whole foreground process group, Dask's worker processes included: the
    driver says one line and exits 130; the workers print no traceback of their own. So does
    SIGTERM to the group (a batch scheduler's time limit): the workers, forked from the driver,
    once inherited its handler and printed ``Terminated`` tracebacks."""
    import signal

    out = tmp_path / "sweep"
    command = [sys.executable, str(ROOT / "run.py"), "sweep", "baseline", "--out", str(out)]
    command += ["--set", "network.n_agents=20000", "--steps", "150", "--workers", "2"]
    command += ["--grid", "principals.0.selection.n=2,4,8,16", "--replicates", "3", "--quiet"]
    process = _started(
        command,
        start_new_session=True,  # its own group, as a terminal's foreground job
        # a job started by a non-interactive shell may inherit SIGINT ignored: restore it
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    _wait_until(lambda: (out / "runs").is_dir() and any((out / "runs").iterdir()), process)
    os.killpg(process.pid, getattr(signal, stop))
    _, err = process.communicate(timeout=120)
    assert process.returncode == status, err
    assert err.strip().splitlines() == [
        f"mesaopt: {word}; run the same command again to resume ({out}/ keeps every finished run)"
    ]
    assert not (out / "runs.parquet").exists()


def test_validate_never_writes_its_csv_through_a_link(tmp_path: Path, capsys) -> None:
    target = tmp_path / "elsewhere.txt"
    target.write_text("keep me", encoding="utf-8")
    (tmp_path / "table.csv").symlink_to(target)
    assert run.main(["validate", "--csv", str(tmp_path / "table.csv")]) == 2
    err = capsys.readouterr().err.strip()
    link = tmp_path / "table.csv"
    assert err == f"mesaopt: error: --csv: {link} is a symbolic link: name the file itself"
    assert target.read_text(encoding="utf-8") == "keep me"


def test_validate_never_replaces_a_pipe_or_a_device_with_its_csv(tmp_path: Path, capsys) -> None:
    """The CSV is renamed into place: a FIFO (or a device node such as /dev/null) named as
    --csv would be replaced by a regular file. Refused in one line, left as it was."""
    import stat

    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    assert run.main(["validate", "--only", "stability", "--csv", str(pipe)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"mesaopt: error: --csv: {pipe} is not a regular file: name a new or CSV file"
    assert stat.S_ISFIFO(pipe.stat().st_mode)
    assert run.main(["validate", "--only", "stability", "--csv", "/dev/null"]) == 2
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


@pytest.mark.parametrize(
    ("command", "package", "extra"),
    [
        (
            ["sensitivity", "baseline", "--param", "agents.risk_aversion=0:2"],
            "SALib",
            "sensitivity",
        ),
        (["viz", "baseline"], "solara", "viz"),
    ],
)
def test_a_command_without_its_optional_package_says_which_extra_to_install(
    tmp_path, monkeypatch, capsys, command, package, extra
):
    """One line naming the extra, exit 2, before any run or the server's announcement."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == package else real(name, *a)
    )
    monkeypatch.chdir(tmp_path)
    assert run.main([*command, "--out", "out"] if command[0] != "viz" else command) == 2
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and f".[{extra}]" in err and package in err
    assert "serving" not in out and not (tmp_path / "out").exists()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_viz_on_an_address_it_cannot_listen_on_is_one_line_before_serving(monkeypatch, capsys):
    """A port in use, a host that is not this machine's or does not resolve: the server said
    so in uvicorn's format after "serving the app", exit 3 (fuzzing pass); now one line, 2."""
    import socket

    started = []
    monkeypatch.setattr(run, "_serve_until_signalled", lambda *args: started.append(1) or 0)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert run.main(["viz", "--host", "127.0.0.1", "--port", str(port)]) == 2
        out, err = capsys.readouterr()
        assert err.count("\n") == 1
        assert err.startswith(f"mesaopt: error: --port: cannot listen on 127.0.0.1:{port} (")
    for host in ("192.0.2.1", "no-such-host.invalid"):  # TEST-NET-1: never this machine's
        assert run.main(["viz", "--host", host, "--port", str(_free_port())]) == 2
        out, err = capsys.readouterr()
        assert err.count("\n") == 1 and err.startswith("mesaopt: error: --host: ")
        assert out == ""
    assert started == []


def test_viz_on_a_machine_without_ipv6_serves_on_what_it_has(monkeypatch, capsys):
    """A family the kernel does not offer is skipped, as asyncio's server skips it: with IPv6
    off, ``--host ""`` (every address) was refused with an unnamed error, exit 1 (review)."""
    import errno
    import socket

    real = socket.socket

    def no_ipv6(family=socket.AF_INET, *args, **kwargs):
        if family == socket.AF_INET6:
            raise OSError(errno.EAFNOSUPPORT, "Address family not supported by protocol")
        return real(family, *args, **kwargs)

    monkeypatch.setattr(socket, "socket", no_ipv6)
    monkeypatch.setattr(run, "_serve_until_signalled", lambda *args: 0)
    assert run.main(["viz", "--host", "", "--port", str(_free_port())]) == 0
    assert capsys.readouterr().err == ""


def test_viz_silences_only_solaras_local_cookie_warning(monkeypatch, capsys):
    """The app's server gets the filter for Solara's SameSite warning (printed at every first
    page load from 127.0.0.1), after any filters of the user's own."""
    seen = {}
    monkeypatch.setattr(
        run, "_serve_until_signalled", lambda command, env: seen.update(env=env) or 0
    )
    monkeypatch.setenv("PYTHONWARNINGS", "error::DeprecationWarning")
    assert run.main(["viz", "baseline", "--port", str(_free_port())]) == 0
    filters = seen["env"]["PYTHONWARNINGS"].split(",")
    assert filters == [
        "error::DeprecationWarning",
        "ignore:Cookies with samesite=none require https:UserWarning",
    ]
    assert "serving the app (baseline)" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("name", "meant"),
    [("baselin", "baseline"), ("baselin.toml", "baseline"), ("regime", "regime_change")],
)
def test_a_typo_of_a_shipped_scenario_name_is_answered_with_its_name(
    tmp_path, monkeypatch, capsys, name, meant
):
    monkeypatch.chdir(tmp_path)
    assert run.main(["simulate", name, "--out", "o"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line == (
        f"mesaopt: error: {name}: scenario: file not found "
        f"(did you mean the shipped scenario '{meant}'?)"
    )
    assert list(tmp_path.iterdir()) == []


def test_a_name_like_no_shipped_scenario_is_just_not_found(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert run.main(["check", "zzzz"]) == 2
    assert capsys.readouterr().err.strip() == "mesaopt: error: zzzz: scenario: file not found"


@pytest.mark.parametrize("out", ["sw", "sw/"])
def test_an_interrupted_sweep_names_its_folder_once(out, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sw").mkdir()
    assert run._interrupted_message("sweep", out) == (
        "run the same command again to resume (sw/ keeps every finished run)"
    )


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (["simulate", "--steps", "٣"], "argument --steps: expected a whole number, got '٣'"),
        (["simulate", "--seed", "x" * 100], f"expected a whole number, got '{'x' * 40}'"),
        (["sweep", "baseline", "--workers", "-3"], "argument --workers: expected a number >= 1"),
        (
            ["sweep", "baseline", "--replicates", "0"],
            "argument --replicates: expected a number >= 1",
        ),
    ],
    ids=["non-ascii-digit", "clipped", "negative-workers", "zero-replicates"],
)
def test_numeric_arguments_are_ascii_and_name_their_real_bound(tmp_path, capsys, argv, line):
    """int() reads '٣' as 3, and a count of at least 1 was refused as 'expected >= 0'."""
    with pytest.raises(SystemExit) as exit_:
        run.main([*argv, "--out", str(tmp_path / "o")])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert line in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()
