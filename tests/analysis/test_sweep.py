"""Sweeps: designs, run ids, identical tables on every engine, resuming, failures, Dask clusters."""

from __future__ import annotations

import itertools
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mesaopt.analysis.executors import (
    LOCAL_CLUSTER_CONFIG,
    START_METHOD_ENV,
    RunTask,
    is_complete,
    open_engine,
    worker_start_method,
)
from mesaopt.analysis.export import export_sweep
from mesaopt.analysis.report import build_report
from mesaopt.analysis.stats import reduce_run, t_interval
from mesaopt.analysis.sweep_design import (
    grid_design,
    parse_grid_arguments,
    plan_runs,
    replicate_seeds,
)
from mesaopt.analysis.sweep_runner import load_base, run_design, sweep_design, warm_kernels
from mesaopt.model.errors import ScenarioError

ROOT = Path(__file__).resolve().parents[2]
TINY = ["network.n_agents=60", "run.steps=10", "run.agent_every=5", "regimes.0.at=5"]
GRID = {"principals.0.selection.n": [2, 8], "principals.1.contract.beta": [0.1, "optimal"]}


def env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(ROOT))


def sweep_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "sweep", *args],
        capture_output=True,
        text=True,
        env=env(),
        timeout=timeout,
    )


def tidy(out: Path) -> pd.DataFrame:
    steps = pd.read_parquet(out / "steps")
    return steps.sort_values(["run_id", "step", "principal"]).reset_index(drop=True)


def check_whole(out: Path) -> pd.DataFrame:
    """Every planned run is complete exactly once; return the tidy dataset."""
    record = json.loads((out / "sweep.json").read_text())
    ids = [run["run_id"] for run in record["runs"]]
    assert len(set(ids)) == len(ids)
    for run_id in ids:
        assert is_complete(out / "runs" / run_id), run_id
        pd.read_parquet(out / "runs" / run_id / "steps.parquet")  # not corrupt
    assert sorted(p.stem for p in (out / "steps").glob("*.parquet")) == sorted(ids)
    assert not list((out / ".partial-runs").iterdir())
    assert all(is_complete(p) for p in (out / "runs").iterdir())
    steps = tidy(out)
    assert not steps.duplicated(["run_id", "step", "principal"]).any()
    assert set(steps["run_id"]) == set(ids)
    return steps


@pytest.fixture(scope="module")
def serial_sweep(tmp_path_factory):
    base = load_base(None, TINY)
    design = sweep_design(base, GRID, replicates=2, seed=3)
    out = tmp_path_factory.mktemp("serial") / "sweep"
    return run_design(base, design, out, engine="serial", progress=False)


def test_ranges_and_grid_arguments():
    grid = parse_grid_arguments(["a.b=1:1024:log2", "c=0:1:0.25", "d=0.1,optimal,true"])
    assert grid["a.b"] == [2**i for i in range(11)]
    assert grid["c"] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert grid["d"] == [0.1, "optimal", True]
    with pytest.raises(ScenarioError, match="--grid c"):
        parse_grid_arguments(["c=1:0:1"])
    with pytest.raises(ScenarioError, match="twice"):
        parse_grid_arguments(["c=1", "c=2"])


def test_the_seed_is_not_a_grid_key():
    """``--grid run.seed=1.5,3`` said "design points 0 and 1 give the same scenario": the
    replicate's seed overwrote every value (fuzzing pass). The CLI and a file's [sweep] grid
    both say why, and what to use instead."""
    with pytest.raises(ScenarioError, match="use --replicates") as info:
        parse_grid_arguments(["run.seed=1,2"])
    assert info.value.key == "--grid run.seed"
    with pytest.raises(ScenarioError, match="use --replicates") as info:
        grid_design({"run.seed": [1, 2]}, 1, 0, source="s.toml")
    assert (info.value.key, info.value.source) == ("sweep.grid.run.seed", "s.toml")


def test_design_seeds_and_run_ids_are_deterministic():
    seeds = replicate_seeds(7, 4)
    assert seeds == replicate_seeds(7, 4) and len(set(seeds)) == 4
    assert all(0 <= s < 2**63 for s in seeds)
    design = grid_design(GRID, 3, 7)
    assert len(design.points) == 4 and design.seeds == replicate_seeds(7, 3)
    base = load_base(None, TINY)
    runs = plan_runs(base.data, design, base.source)
    again = plan_runs(base.data, design, base.source)
    assert [r.run_id for r in runs] == [r.run_id for r in again]
    assert len({r.run_id for r in runs}) == 12
    assert all(r.scenario["run"]["seed"] == design.seeds[r.replicate] for r in runs)
    assert "sweep" not in runs[0].scenario


def test_an_edge_list_is_read_once_per_size_whatever_else_the_grid_varies(tmp_path, monkeypatch):
    """plan_runs checks each distinct [network]; an edge list is read once per (path, n)."""
    from mesaopt.model import network as network_module

    (tmp_path / "edges.csv").write_text("\n".join(f"{i},{i + 1}" for i in range(59)) + "\n")
    calls: list[int] = []
    real = network_module.read_edgelist

    def counting(path, n, base_dir=None):
        calls.append(n)
        return real(path, n, base_dir)

    monkeypatch.setattr(network_module, "read_edgelist", counting)
    base = load_base(None, [*TINY, "network.topology=edgelist", "network.path=edges.csv"])
    grid = {"network.normalize": [False, True], "network.n_agents": [60, 70]}
    runs = plan_runs(base.data, grid_design(grid, 2, 1), base.source, base_dir=tmp_path)
    assert len(runs) == 8 and sorted(calls) == [60, 70]


@pytest.mark.parametrize(
    ("grid", "key"),
    [
        ({"network.k": [4, -1]}, "network.k"),
        ({"network.k": [4, 60]}, "network.k"),  # valid alone, no watts_strogatz can build it
        ({"network.topology": ["ring", "grid"]}, "network.n_agents"),  # 60 is not a square
        ({"network.n_agents": [60, 64], "network.topology": ["grid"]}, "network.n_agents"),
        ({"network.topology": ["edgelist"], "network.path": ["no.csv"]}, "network.path"),
    ],
)
def test_bad_design_point_is_an_error_before_anything_is_written(tmp_path, grid, key):
    """Also a point that only building its network would find wrong: one error naming the key
    and the file, not a sweep of failed runs."""
    base = load_base(None, TINY)
    design = grid_design(grid, 1, 1)
    with pytest.raises(ScenarioError) as err:
        run_design(base, design, tmp_path / "out", engine="serial", progress=False)
    assert err.value.key == key and err.value.source == base.source
    assert not (tmp_path / "out").exists()
    with pytest.raises(ScenarioError, match="same scenario"):
        plan_runs(base.data, grid_design({"network.p": [0.1, 0.1]}, 1, 1), "x")


def test_sweep_section_in_the_scenario_file(tmp_path):
    text = (ROOT / "scenarios" / "baseline.toml").read_text()
    text += (
        '\n[sweep]\nreplicates = 2\nseed = 9\n[sweep.grid]\nprincipals.0.selection.n = "2:8:log2"\n'
    )
    path = tmp_path / "s.toml"
    path.write_text(text)
    base = load_base(path, TINY)
    design = sweep_design(base, {"network.k": [4]})
    assert design.parameters == ["principals.0.selection.n", "network.k"]
    assert [p["principals.0.selection.n"] for p in design.points] == [2, 4, 8]
    assert design.seeds == replicate_seeds(9, 2)
    path.write_text(text.replace('"2:8:log2"', '"8:2:log2"'))
    with pytest.raises(ScenarioError, match=r"sweep\.grid\.principals\.0\.selection\.n"):
        sweep_design(load_base(path, TINY), {})


def test_tidy_dataset_and_summary(serial_sweep):
    out = serial_sweep.out_dir
    steps = check_whole(out)
    assert len(steps) == 8 * 10 * 3
    for column in ("run_id", "design_id", "replicate", "seed", "step", "principal", "value"):
        assert column in steps.columns
    assert steps["principals.0.selection.n"].dtype == np.int64
    assert set(steps["principals.1.contract.beta"]) == {"0.1", "optimal"}
    summary = pd.read_parquet(out / "summary.parquet")
    assert summary.equals(serial_sweep.summary)
    row = summary[
        (summary.design_id == 1)
        & (summary.principal == "lab")
        & (summary.statistic == "final")
        & (summary.metric == "value")
    ].iloc[0]
    finals = steps[(steps.design_id == 1) & (steps.principal == "lab") & (steps.step == 10)]
    n, mean, sd, _, _ = t_interval(finals["value"].to_numpy())
    assert row["n"] == n == 2
    assert row["mean"] == pytest.approx(mean) and row["sd"] == pytest.approx(sd)
    assert row["ci_low"] < row["mean"] < row["ci_high"]
    assert row["ci_high"] - row["mean"] == pytest.approx(12.7062047 * sd / np.sqrt(2))
    runs = pd.read_parquet(out / "runs.parquet")
    assert list(runs["status"]) == ["ok"] * 8
    record = json.loads((out / "sweep.json").read_text())
    assert record["parameters"] == list(GRID) and len(record["design_points"]) == 4


def test_reduce_run_final_and_mean():
    steps = pd.DataFrame(
        {"step": [1, 1, 2, 2], "principal": ["all", "p", "all", "p"], "value": [1.0, 2, 3, 4]}
    )
    reduced = reduce_run(steps).set_index(["principal", "statistic"])["value"]
    assert reduced[("all", "final")] == 3 and reduced[("p", "mean")] == 3


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
@pytest.mark.parametrize("start", ["fork", "spawn"])
def test_local_cluster_gives_the_tables_of_the_serial_engine(
    serial_sweep, tmp_path, monkeypatch, start
):
    if start == "fork" and not sys.platform.startswith("linux"):
        pytest.skip("fork is the default start method on Linux only")
    monkeypatch.setenv(START_METHOD_ENV, start)
    warmed: list[int] = []

    def warm(tasks: list) -> None:  # the real warm-up, counted: it changes no table
        warmed.append(len(tasks))
        warm_kernels(tasks)

    monkeypatch.setattr("mesaopt.analysis.sweep_runner.warm_kernels", warm)
    base = load_base(None, TINY)
    design = sweep_design(base, GRID, replicates=2, seed=3)
    local = run_design(base, design, tmp_path / "local", engine="local", workers=2, progress=False)
    assert local.count("ok") == 8, local.failed
    assert warmed == ([8] if start == "fork" else [])  # forked workers inherit its kernels
    pd.testing.assert_frame_equal(tidy(tmp_path / "local"), tidy(serial_sweep.out_dir))
    pd.testing.assert_frame_equal(local.summary, serial_sweep.summary)
    # re-running skips every finished run and gives the same tables
    again = run_design(base, design, tmp_path / "local", engine="serial", progress=False)
    assert again.count("skipped") == 8
    pd.testing.assert_frame_equal(again.summary, serial_sweep.summary)


def test_worker_start_method_default_and_override(monkeypatch):
    monkeypatch.delenv(START_METHOD_ENV, raising=False)
    assert worker_start_method() == "spawn"  # library calls: Dask's default
    linux = sys.platform.startswith("linux")
    assert worker_start_method(command_line=True) == ("fork" if linux else "spawn")
    monkeypatch.setenv(START_METHOD_ENV, "forkserver")
    assert worker_start_method() == worker_start_method(command_line=True) == "forkserver"
    monkeypatch.setenv(START_METHOD_ENV, "threads")
    with pytest.raises(ValueError, match=START_METHOD_ENV):
        worker_start_method()


#: Set in the driver before the cluster starts: a forked worker has it, a spawned one does not.
DRIVER_MARK: list[str] = []


def _driver_mark(_: object) -> list[str]:
    return list(DRIVER_MARK)


def _worker_config(_: object) -> dict[str, object]:
    import dask

    return {key: dask.config.get(key) for key in LOCAL_CLUSTER_CONFIG}


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
@pytest.mark.parametrize(("start", "inherited"), [("fork", ["driver", "warmed up"]), ("spawn", [])])
def test_local_workers_start_as_asked(monkeypatch, start, inherited):
    """A forked worker is a copy of the driver, warmed up first (its kernels loaded)."""
    if start == "fork" and not sys.platform.startswith("linux"):
        pytest.skip("fork is the command line's default on Linux only")
    monkeypatch.setattr(sys.modules[__name__], "DRIVER_MARK", ["driver"])
    calls: list[str] = []

    def warm_up() -> None:
        calls.append(start)
        DRIVER_MARK.append("warmed up")

    with open_engine("local", workers=1, start_method=start, warm_up=warm_up) as (
        map_unordered,
        _,
    ):
        assert list(map_unordered(_driver_mark, [0])) == [inherited]
        # The embedded cluster's quiet settings reach the workers however they start.
        assert list(map_unordered(_worker_config, [0])) == [LOCAL_CLUSTER_CONFIG]
    assert calls == ([start] if start == "fork" else [])  # a spawned worker inherits nothing


def _sweep_tasks(tmp_path: Path) -> list:
    base = load_base(ROOT / "scenarios" / "baseline.toml", TINY)
    design = sweep_design(base, {"principals.0.selection.n": [2, 8]}, replicates=1)
    runs = plan_runs(base.data, design, base.source, base.base_dir)
    return [RunTask(spec, str(tmp_path), None, base.source) for spec in runs]


def test_the_warm_up_probes_the_first_run(tmp_path, monkeypatch):
    """A cold first sweep compiles once, in the driver, not in every worker at once."""
    probed: list[int] = []
    monkeypatch.setattr(
        "mesaopt.model.runner.probe_steps",
        lambda scenario, source=None: probed.append(scenario.principals[0].selection.n),
    )
    tasks = _sweep_tasks(tmp_path)
    warm_kernels(tasks)
    assert probed == [2]  # one probe, of the first run's scenario
    warm_kernels([])
    assert probed == [2]  # no run: nothing to warm up


def test_a_warm_up_that_fails_leaves_the_error_to_the_run(tmp_path, monkeypatch):
    def failing(scenario, source=None):
        raise ValueError("the probe cannot run")

    monkeypatch.setattr("mesaopt.model.runner.probe_steps", failing)
    warm_kernels(_sweep_tasks(tmp_path))  # no exception: the runs report their own errors


def test_bad_worker_start_method_is_a_one_line_error(tmp_path):
    out = tmp_path / "out"
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "run.py"),
            "sweep",
            "scenarios/baseline.toml",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        env=dict(env(), **{START_METHOD_ENV: "threads"}),
        cwd=ROOT,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"mesaopt: error: {START_METHOD_ENV}='threads' is not a start method "
        "(one of fork, spawn, forkserver)"
    ]
    assert not out.exists()


def test_failing_run_is_recorded_and_the_sweep_exits_nonzero(tmp_path, monkeypatch, capsys):
    """A run that fails as it builds (here a missing edge list, with the sweep's up-front
    network and stability checks switched off to stand for a failure no check foresees) is
    recorded as failed, with its error; the other runs finish, and the command exits 1."""
    from mesaopt import run

    monkeypatch.setattr("mesaopt.analysis.sweep_design.check_network", lambda *a, **k: None)
    monkeypatch.setattr("mesaopt.analysis.sweep_design.check_point_stability", lambda *a: None)
    edges = tmp_path / "edges.csv"
    edges.write_text("\n".join(f"{i},{(i + 1) % 60}" for i in range(60)))
    out = tmp_path / "out"
    argv = ["sweep", str(ROOT / "scenarios" / "baseline.toml"), *[f"--set={o}" for o in TINY]]
    argv += ["--set=network.topology=edgelist", "--grid"]
    argv += [f"network.path={edges},{tmp_path / 'missing.csv'}", "--replicates", "2"]
    assert run.main([*argv, "--engine", "serial", "--out", str(out), "--quiet"]) == 1
    assert capsys.readouterr().err.count("mesaopt: failed: run") == 2
    runs = pd.read_parquet(out / "runs.parquet")
    failed = runs[runs.status == "failed"]
    assert list(failed["design_id"]) == [1, 1]
    assert failed["error"].str.contains("file not found").all()
    for run_id in failed["run_id"]:
        assert "missing.csv" in (out / "runs" / run_id / "error.txt").read_text()
        assert not is_complete(out / "runs" / run_id)
    assert set(pd.read_parquet(out / "steps")["design_id"]) == {0}
    assert set(pd.read_parquet(out / "summary.parquet")["design_id"]) == {0}


def test_killed_sweep_resumes_without_missing_duplicated_or_corrupt_runs(tmp_path):
    out = tmp_path / "out"
    args = [
        sys.executable,
        str(ROOT / "run.py"),
        "sweep",
        "scenarios/baseline.toml",
        *[f"--set={o}" for o in TINY],
        "--grid=principals.0.selection.n=1:8:log2",
        "--grid=agents.risk_aversion=0.5,1",
        "--replicates=3",
        "--workers=2",
        "--quiet",
        f"--out={out}",
    ]
    driver = subprocess.Popen(
        args,
        cwd=ROOT,
        env=env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and driver.poll() is None:
            if len(list((out / "runs").glob("*/manifest.json"))) >= 3:
                break
            time.sleep(0.02)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)  # the driver and its worker processes
        driver.wait(timeout=30)
    finished_before = len(list((out / "runs").glob("*/manifest.json")))
    assert 3 <= finished_before < 24
    result = subprocess.run(
        [*args, "--engine=serial"], cwd=ROOT, env=env(), capture_output=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    steps = check_whole(out)
    assert len(steps) == 24 * 10 * 3
    runs = pd.read_parquet(out / "runs.parquet")
    assert (runs["status"] == "skipped").sum() >= finished_before
    # the resumed sweep equals an uninterrupted one
    base = load_base(ROOT / "scenarios" / "baseline.toml", TINY)
    grid = parse_grid_arguments(["principals.0.selection.n=1:8:log2", "agents.risk_aversion=0.5,1"])
    design = sweep_design(base, grid, replicates=3)
    run_design(base, design, tmp_path / "fresh", engine="serial", progress=False)
    pd.testing.assert_frame_equal(steps, tidy(tmp_path / "fresh"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_sweep_on_an_existing_dask_cluster(tmp_path, serial_sweep):
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    dask = str(Path(sys.executable).with_name("dask"))
    logs = tmp_path / "logs"
    logs.mkdir()
    quiet = {"stdout": subprocess.DEVNULL, "env": env(), "cwd": tmp_path}
    processes = [
        subprocess.Popen(
            [dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
            stderr=(logs / "scheduler.log").open("w"),
            **quiet,
        )
    ]
    try:
        processes.append(
            subprocess.Popen(
                [dask, "worker", address, "--nworkers", "2", "--nthreads", "1", "--no-dashboard"],
                stderr=(logs / "worker.log").open("w"),
                **quiet,
            )
        )
        from distributed import Client

        with Client(address, timeout="30s") as client:
            client.wait_for_workers(2, timeout=60)
        base = load_base(None, TINY)
        design = sweep_design(base, GRID, replicates=2, seed=3)
        result = run_design(base, design, tmp_path / "out", scheduler=address, progress=False)
        assert result.count("ok") == 8, result.failed
        pd.testing.assert_frame_equal(tidy(tmp_path / "out"), tidy(serial_sweep.out_dir))
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in reversed(processes):
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def test_export_writes_csv(serial_sweep, tmp_path):
    written = export_sweep(serial_sweep.out_dir, "csv", tmp_path / "csv")
    names = sorted(p.name for p in written)
    assert names == ["network.csv", "run_metrics.csv", "runs.csv", "steps.csv", "summary.csv"]
    steps = pd.read_csv(tmp_path / "csv" / "steps.csv")
    assert len(steps) == 8 * 10 * 3
    assert steps["value"].to_numpy() == pytest.approx(
        pd.read_parquet(serial_sweep.out_dir / "steps")["value"].to_numpy()
    )
    with pytest.raises(ScenarioError, match="not a sweep folder"):
        export_sweep(tmp_path, "csv")


#: Shipped scenarios and the key their [sweep] section varies (baseline.toml must stay a copy of
#: the embedded default, model/default.toml, so it has none).
SHIPPED_SWEEPS = {
    "heavy_tails": "principals.0.selection.n",
    "regressional": "principals.0.selection.n",
    "federated": "principals.0.federated.misreport",
    "multi_principal": "channels.1.externality",
    "peer_grid": "channels.0.peer",
    "regime_change": "principals.0.selection.every",
    "superoptimizer": "principals.0.audit.rate",
}


@pytest.mark.parametrize(("name", "key"), SHIPPED_SWEEPS.items())
def test_shipped_scenarios_have_a_sweep(name, key):
    """`run.py sweep scenarios/<name>.toml` with no --grid sweeps the scenario's key parameter."""
    base = load_base(ROOT / "scenarios" / f"{name}.toml", [])
    design = sweep_design(base, {})
    assert design.parameters == [key]
    assert len(design.points) >= 3 and len(design.seeds) >= 3
    plan_runs(base.data, design, base.source)  # every design point validates
    if key.endswith("selection.n"):  # the over-optimization curve: powers of two from 1
        ns = [p[key] for p in design.points]
        assert ns[0] == 1 and ns[-1] >= 1024
        assert all(b == 2 * a for a, b in itertools.pairwise(ns))


def test_sweep_without_a_grid_says_why_nothing_is_drawn(tmp_path):
    out = tmp_path / "one"
    result = sweep_cli(
        str(ROOT / "scenarios" / "baseline.toml"),
        *[f"--set={o}" for o in TINY],
        "--engine=serial",
        "--quiet",
        f"--out={out}",
    )
    assert result.returncode == 0, result.stderr
    notes = [line for line in result.stderr.splitlines() if "no [sweep] grid" in line]
    assert len(notes) == 1 and "--grid" in notes[0] and "baseline.toml" in notes[0]
    record = json.loads((out / "sweep.json").read_text())
    assert record["parameters"] == [] and len(record["runs"]) == 1  # its one point still ran
    report = build_report(out, tmp_path / "report")
    assert report.figures == [] and any("varies no parameter" in n for n in report.notes)
    with_grid = sweep_cli(
        str(ROOT / "scenarios" / "baseline.toml"),
        *[f"--set={o}" for o in TINY],
        "--grid=principals.0.selection.n=2,4",
        "--engine=serial",
        "--quiet",
        f"--out={tmp_path / 'two'}",
    )
    assert with_grid.returncode == 0 and "no [sweep] grid" not in with_grid.stderr


def test_a_design_with_more_runs_than_can_be_planned_is_refused_at_once():
    """Three ranges of 1,000 values (1e9 runs) or 1e8 replicates: one error, not hours of
    planning or an exhausted memory."""
    from mesaopt.analysis.sweep_design import MAX_RUNS

    grid = {f"principals.0.selection.{k}": "1:1000:1" for k in ("n", "every", "eval_samples")}
    with pytest.raises(ScenarioError, match=f"1,000,000,000 runs, more than {MAX_RUNS:,}"):
        grid_design(grid, 1, 0)
    with pytest.raises(ScenarioError) as err:
        grid_design({}, 10**8, 0)
    assert err.value.key == "--replicates"


def test_too_many_runs_names_the_grid_the_user_wrote(tmp_path: Path) -> None:
    """A [sweep] grid in the file is named as sweep.grid, a command line's as --grid."""
    text = (ROOT / "scenarios" / "baseline.toml").read_text(encoding="utf-8")
    path = tmp_path / "big.toml"
    path.write_text(
        text + '\n[sweep]\nreplicates = 1000\n[sweep.grid]\n"agents.risk_aversion" = "0:2000:1"\n',
        encoding="utf-8",
    )
    base = load_base(path, [])
    with pytest.raises(ScenarioError) as err:
        sweep_design(base, {})
    assert err.value.key == "sweep.grid" and err.value.source == str(path)
    with pytest.raises(ScenarioError) as err:
        sweep_design(base, {"principals.0.selection.n": [1, 2]})
    assert err.value.key == "--grid"


@pytest.mark.parametrize(
    ("network", "peer", "refused"),
    [
        (["network.topology='ring'", "network.k=4"], "0.24,0.26", True),  # ρ = 4 exactly
        (["network.topology='ring'", "network.k=4"], "0.2,0.24", False),
        (["network.topology='watts_strogatz'", "network.k=4"], "0.1,0.3", True),  # ρ ≥ 4
        (["network.topology='erdos_renyi'", "network.k=4"], "0.1,0.15", False),
    ],
    ids=["ring-unstable", "ring-stable", "ws-unstable-whatever-the-seed", "er-stable"],
)
def test_a_sweep_refuses_peer_effects_no_run_could_build_before_writing(
    tmp_path, network, peer, refused
):
    """A design point whose peer effects are unstable for every replicate's graph is one error
    naming the key and the file, nothing written; stable points run."""
    overrides = [
        "network.n_agents=40",
        "run.steps=2",
        "run.agent_every=0",
        "channels.0.cost=1.0",
        "agents.effort_substitution=0",
        *network,
    ]
    base = load_base(ROOT / "scenarios" / "baseline.toml", overrides)
    grid = {"channels.0.peer": [float(v) for v in peer.split(",")]}
    design = sweep_design(base, grid, 1)
    out = tmp_path / "sweep"
    if refused:
        with pytest.raises(ScenarioError) as info:
            run_design(base, design, out, engine="serial", progress=False)
        assert info.value.key == "channels.0.peer" and "baseline.toml" in str(info.value)
        assert "\n" not in info.value.one_line()
        assert not out.exists()
    else:
        result = run_design(base, design, out, engine="serial", progress=False)
        assert [o.status for o in result.outcomes] == ["ok", "ok"]


def test_the_up_front_stability_check_builds_each_graph_once(monkeypatch):
    """Points that vary keys the peer-stability condition does not read (an agent's gain) are
    checked once; points that vary a peer effect on one network reuse its graph."""
    from mesaopt.model import network as network_module

    calls: list[int] = []
    real = network_module.build_network

    def counting(cfg, rng, **kwargs):
        calls.append(cfg.n_agents)
        return real(cfg, rng, **kwargs)

    monkeypatch.setattr(network_module, "build_network", counting)
    overrides = ["network.n_agents=40", "network.topology='ring'", "network.k=4"]
    base = load_base(ROOT / "scenarios" / "baseline.toml", overrides)
    grid = {"agents.gain": [0.5, 0.6, 0.7], "channels.0.peer": [0.05, 0.1]}
    runs = plan_runs(base.data, grid_design(grid, 2, 1), base.source)
    assert len(runs) == 12 and calls == [40]


def test_a_grid_that_replaces_a_section_names_it_and_the_file(tmp_path):
    base = load_base(ROOT / "scenarios" / "baseline.toml", ["network.n_agents=40"])
    design = sweep_design(base, {"run": [1, 2]}, 1)
    with pytest.raises(ScenarioError) as info:  # the seed goes into [run], now a number
        run_design(base, design, tmp_path / "sweep", engine="serial", progress=False)
    assert info.value.key == "run" and "baseline.toml" in str(info.value)
    assert not (tmp_path / "sweep").exists()


def test_the_sweep_progress_bar_is_drawn_on_a_terminal_only(capsys):
    """As a run's own bar (tqdm's disable=None): a log or a pipe gets no carriage returns."""
    from mesaopt.analysis.sweep_runner import _progress_bar

    with _progress_bar(3, True, "sweep") as bar:  # stderr is captured here: not a terminal
        bar.update(3)
    assert bar.disable and capsys.readouterr().err == ""
    with _progress_bar(3, False, "sweep") as bar:
        assert bar.disable


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_two_local_clusters_at_once_start_quietly_on_this_machine_only(recwarn):
    """Two sweeps at once: no "Port 8787 is already in use" warning on the second's stderr,
    and the schedulers' HTTP servers listen on the loopback interface, not on 0.0.0.0."""
    with open_engine("local", workers=1, start_method="spawn") as (first, _):
        with open_engine("local", workers=1, start_method="spawn") as (second, _):
            assert list(first(abs, [-1])) == [1] and list(second(abs, [-2])) == [2]
            import distributed

            client = distributed.get_client()
            host = client.run_on_scheduler(
                lambda dask_scheduler: dask_scheduler.http_server.address
            )
            assert host == "127.0.0.1"
    assert not [w for w in recwarn if "already in use" in str(w.message)]


def test_dask_is_quiet_in_the_driver_even_when_first_imported_there():
    """``distributed`` sets its loggers to INFO when first imported: set to ERROR before that,
    the level was undone, and a SIGTERM to a local sweep's process group let the scheduler log
    "Batched Comm Closed" with a traceback, about one stop in five (fuzzing pass)."""
    code = (
        "import logging, sys\n"
        "from mesaopt.analysis import executors\n"
        "assert 'distributed' not in sys.modules\n"
        "executors._quiet_dask()\n"
        "from distributed import Client\n"
        "print(logging.getLogger('distributed.batched').getEffectiveLevel())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env())
    assert (out.returncode, out.stdout.strip()) == (0, str(logging.ERROR)), out.stderr
