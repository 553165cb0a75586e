"""Sweep throughput: 200 small runs, serial vs a 2-worker Dask LocalCluster; per-run overhead.

Usage: ``python benchmarks/sweep_throughput.py [--runs-per-point R] [--agents N] [--steps T]
[--repeats K]``.

The sweep is the embedded default scenario at N agents and T steps over a 5 × 2 grid
(``principals.0.selection.n = 1:16:log2``, ``agents.risk_aversion = 0.5,1``) × R replicates
(default 20: 200 runs). It reports wall time and runs/s of the whole command-equivalent
(:func:`analysis.sweep_runner.run_design`, cluster start and stop included) for the serial engine
and a LocalCluster of 2 single-threaded process workers, their ratio, and the per-run overhead of
the sweep machinery: serial wall time per run minus the time of the same runs as bare
``MesaOptModel(...).run_for(steps)`` calls (no recording, no files). It also times the same sweep
as whole commands, ``python run.py sweep ... --engine serial`` and ``... --workers 2``, each in a
fresh process (interpreter start, imports and the kernels' first load included, as a user sees it).
Serial and 2-worker sweeps are alternated K times (default 3) and the medians reported, with
every sample, since this VM's speed drifts by 10-20 % from minute to minute. Results go to
stdout as Markdown rows for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mesaopt.analysis.executors import worker_start_method
from mesaopt.analysis.sweep_design import plan_runs
from mesaopt.analysis.sweep_runner import load_base, run_design, sweep_design
from mesaopt.model.model import MesaOptModel
from mesaopt.model.runner import run_simulation
from mesaopt.model.scenario_files import validate

GRID = {"principals.0.selection.n": "1:16:log2", "agents.risk_aversion": [0.5, 1.0]}
ROOT = Path(__file__).resolve().parent.parent


def _run(model: MesaOptModel) -> None:
    """Run a bare model for its scenario's steps (no recorder, no files)."""
    model.run_for(model.config.run.steps)


def time_command(out: Path, args: argparse.Namespace, engine: list[str]) -> float:
    """Wall time of ``run.py sweep`` on the benchmark's design, in a fresh process."""
    command = [sys.executable, str(ROOT / "run.py"), "sweep", str(ROOT / "model" / "default.toml")]
    command += ["--out", str(out), "--replicates", str(args.runs_per_point), "--seed", "1"]
    command += ["--grid", "principals.0.selection.n=1:16:log2"]
    command += ["--grid", "agents.risk_aversion=0.5,1.0", "--quiet", *engine]
    for value in (f"network.n_agents={args.agents}", f"run.steps={args.steps}", "regimes.0.at=10"):
        command += ["--set", value]
    clock = time.perf_counter()
    subprocess.run(command, check=True, cwd=ROOT)
    return time.perf_counter() - clock


def main() -> None:
    """Run the benchmark and print the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs-per-point", type=int, default=20)
    parser.add_argument("--agents", type=int, default=100)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3, help="alternated repeats (medians)")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    base = load_base(
        None, [f"network.n_agents={args.agents}", f"run.steps={args.steps}", "regimes.0.at=10"]
    )
    design = sweep_design(base, dict(GRID), replicates=args.runs_per_point, seed=1)
    runs = plan_runs(base.data, design, base.source)
    n = len(runs)

    # Load the compiled kernels before any clock starts, so that neither engine pays it (forked
    # workers inherit them); the whole-command timings below pay it, like a user does.
    _run(MesaOptModel(validate(runs[0].scenario)))
    start = worker_start_method(command_line=True)
    samples: dict[str, list[float]] = {"serial": [], "local-2": []}
    command_samples: dict[str, list[float]] = {"serial": [], "local-2": []}
    for _ in range(args.repeats):  # alternated, so that a slow spell of the VM hits both
        with tempfile.TemporaryDirectory() as tmp:
            for name, options in (
                ("serial", {"engine": "serial"}),
                # Workers start as a command starts them (forked on Linux).
                ("local-2", {"engine": "local", "workers": 2, "start_method": start}),
            ):
                clock = time.perf_counter()
                result = run_design(base, design, Path(tmp) / name, progress=False, **options)
                samples[name].append(time.perf_counter() - clock)
                assert result.count("ok") == n, result.failed[:3]
        with tempfile.TemporaryDirectory() as tmp:
            for name, engine in (
                ("serial", ["--engine", "serial"]),
                ("local-2", ["--workers", "2"]),
            ):
                command_samples[name].append(time_command(Path(tmp) / name, args, engine))
    timings = {name: statistics.median(values) for name, values in samples.items()}
    commands = {name: statistics.median(values) for name, values in command_samples.items()}

    clock = time.perf_counter()
    for spec in runs:
        _run(MesaOptModel(validate(spec.scenario)))
    bare = time.perf_counter() - clock
    with tempfile.TemporaryDirectory() as tmp:
        clock = time.perf_counter()
        for spec in runs:
            run_simulation(validate(spec.scenario), Path(tmp) / spec.run_id, progress=False)
        runner = time.perf_counter() - clock

    speedup = timings["serial"] / timings["local-2"]
    overhead_ms = (timings["serial"] - bare) / n * 1000
    sweep_ms = (timings["serial"] - runner) / n * 1000
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"# {n} runs of {args.agents} agents × {args.steps} steps; {os.cpu_count()} cores;")
    print(f"# load average at the end (1, 5, 15 min): {load}")
    print("| engine | wall s | runs/s |")
    print("|---|---|---|")
    for name, seconds in timings.items():
        print(f"| {name} | {seconds:.1f} | {n / seconds:.1f} |")
    print(f"| run_simulation only (tables + manifest) | {runner:.1f} | {n / runner:.1f} |")
    print(f"| bare model runs (no files) | {bare:.1f} | {n / bare:.1f} |")
    for name, seconds in commands.items():
        label = f"`run.py sweep` command, {name} (fresh process)"
        print(f"| {label} | {seconds:.1f} | {n / seconds:.1f} |")
    for name in samples:
        spread = ", ".join(f"{x:.1f}" for x in samples[name])
        command_spread = ", ".join(f"{x:.1f}" for x in command_samples[name])
        print(f"# {name}: in-process {spread} s; command {command_spread} s")
    print(f"speed-up local-2 / serial: {speedup:.2f}× (in-process run_design)")
    ratio = commands["serial"] / commands["local-2"]
    print(f"speed-up local-2 / serial: {ratio:.2f}× (whole commands)")
    print(f"per-run overhead, serial sweep − bare model: {overhead_ms:.0f} ms")
    print(f"  of which the sweep machinery (serial sweep − run_simulation): {sweep_ms:.0f} ms")


if __name__ == "__main__":
    main()
