"""mesaopt command line: ``python run.py COMMAND ...`` (installed as ``mesaopt``).

Commands:
    simulate   run one scenario and write its tables (steps, agents, selections, events, network)
    check      check scenario files (and overrides) without running them
    validate   run the model against its closed-form limits (a table; exit 1 if any fails)
    scenarios  list the shipped scenarios, or print the JSON schema with --schema
    report       figures and a self-contained HTML report of a run or sweep folder
    viz          the interactive SolaraViz app in the browser
    sweep        run a parameter grid × replicates on Dask (resumable), with summaries
    export       write a sweep's tables as CSV
    sensitivity  Sobol / Morris sensitivity indices (SALib) over parameter ranges
    experiments  the essay's claims as experiments: verdicts with 95% CIs and a report

With no command, runs a small demo on the embedded default scenario and draws proxy vs true value
per principal. Bad input (scenario files, overrides, edge lists, arguments) prints one line naming
the key and the file and exits with status 2, before anything is written.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import sys
import typing
from contextlib import contextmanager
from pathlib import Path

from mesaopt.model.errors import ScenarioError, Terminated, interruption, raise_terminated
from mesaopt.model.errors import clipped as _clipped

if typing.TYPE_CHECKING:
    from mesaopt.model.scenario import Scenario

PROJECT_ROOT = Path(__file__).resolve().parent
SCENARIO_DIR = PROJECT_ROOT / "scenarios"
DEMO_DIR = Path("mesaopt-demo")


def _add_scenario_arguments(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    parser.add_argument(
        "scenario",
        nargs=None if required else "?",
        help="scenario TOML file (see `run.py scenarios`)",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a scenario key, e.g. principals.0.selection.n=64 (repeatable)",
    )
    parser.add_argument("--steps", type=_steps, help="override run.steps")
    parser.add_argument("--seed", type=_non_negative_int, help="override run.seed")


def _whole_number(text: str) -> int:
    """A whole number written in ASCII digits (``int`` also takes ``٣``, which no user means)."""
    try:
        if not text.isascii():
            raise ValueError(text)
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text[:40]!r}") from None


def _non_negative_int(text: str) -> int:
    value = _whole_number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {value}")
    return value


def _steps(text: str) -> int:
    """A ``--steps`` value: a whole number in 0..MAX_STEPS (the bound of ``run.steps``)."""
    value = _non_negative_int(text)  # before the schema's import (a second): -1 is refused at once
    from mesaopt.model.scenario import MAX_STEPS

    if value > MAX_STEPS:
        raise argparse.ArgumentTypeError(f"expected at most {MAX_STEPS:,} steps, got {text[:40]}")
    return value


def _port(text: str) -> int:
    """A TCP port: a whole number in 1..65535."""
    value = _non_negative_int(text)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port in 1..65535, got {text[:40]}")
    return value


def _scheduler(text: str) -> str:
    """A ``--scheduler`` address, checked before anything is started or written."""
    from mesaopt.analysis.executors import check_scheduler_address

    try:
        return check_scheduler_address(text)
    except ScenarioError as err:
        raise argparse.ArgumentTypeError(err.message) from None


class _OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (no usage block), with exit status 2."""

    def error(self, message: str) -> typing.NoReturn:
        """Print ``PROG: error: MESSAGE (see PROG --help)`` on stderr and exit with status 2."""
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``mesaopt`` command."""
    parser = _OneLineParser(
        prog="mesaopt",
        description="Principals, the mesa-optimizers they build, and how the proxy comes apart "
        "from true value. Without a command: run a small demo.",
    )
    from mesaopt import __version__

    parser.add_argument("--version", action="version", version=f"mesaopt {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    simulate = commands.add_parser("simulate", help="run one scenario and write its tables")
    _add_scenario_arguments(simulate)
    simulate.add_argument("--out", default="out", help="output folder (default: out)")
    simulate.add_argument("--format", choices=("parquet", "csv"), default="parquet")
    simulate.add_argument("--quiet", action="store_true", help="no progress bar or summary")

    check = commands.add_parser(
        "check", help="check scenario files (schema, network, agents) without running them"
    )
    check.add_argument(
        "scenarios", nargs="+", metavar="FILE", help="scenario TOML files or shipped names"
    )
    check.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a scenario key in every file (repeatable)",
    )
    check.add_argument("--steps", type=_non_negative_int, help="override run.steps")
    check.add_argument("--seed", type=_non_negative_int, help="override run.seed")

    validate = commands.add_parser(
        "validate", help="run the model against its closed-form limits (table; exit 1 on a miss)"
    )
    validate.add_argument(
        "--seed",
        type=_non_negative_int,
        default=0,
        help="shift every check's fixed seed (default 0: the documented table)",
    )
    validate.add_argument(
        "--only", action="append", metavar="CHECK", help="run only this check (repeatable)"
    )
    validate.add_argument("--csv", metavar="FILE", help="also write the table as CSV")
    # `validate FILE` used to check a scenario file: say where that went instead of argparse's
    # "unrecognized arguments".
    validate.add_argument("files", nargs="*", help=argparse.SUPPRESS)

    scenarios = commands.add_parser("scenarios", help="list shipped scenarios")
    scenarios.add_argument("--schema", action="store_true", help="print the JSON schema")
    _add_batch_commands(commands)
    _add_view_commands(commands)
    _add_experiments_command(commands)
    return parser


# The scenario modules load pydantic, NumPy and SciPy (about a second): imported on first use,
# inside main()'s handlers, so that Ctrl-C during start-up is one line too.
def load_scenario(path: str | Path | None, overrides: list[str] | None = None) -> Scenario:
    """:func:`model.scenario_files.load_scenario`, imported on first use."""
    from mesaopt.model.scenario_files import load_scenario as load

    return load(path, overrides)


def validate(data: dict[str, typing.Any], source: str) -> Scenario:
    """:func:`model.scenario_files.validate`, imported on first use."""
    from mesaopt.model.scenario_files import validate as check

    return check(data, source)


def _resolve(args: argparse.Namespace) -> tuple[Scenario, Path | None, str]:
    path = scenario_path(args.scenario) if args.scenario is not None else None
    scenario = load_scenario(path, _overrides(args))
    return scenario, (path.parent if path else None), str(path) if path else "<default scenario>"


@contextmanager
def _attributed_to(source: str):
    """Attribute ScenarioErrors raised while building a model (network, edge list) to ``source``."""
    try:
        yield
    except ScenarioError as err:
        raise err.with_source(source) from None


def _summary(scenario: Scenario) -> str:
    net = scenario.network
    names = ", ".join(p.name for p in scenario.principals)
    channels, steps = len(scenario.channels), scenario.run.steps
    return (
        f"{net.n_agents} agents on {net.topology}, {channels} channel{'s' * (channels != 1)}, "
        f"principals: {names}; {steps} step{'s' * (steps != 1)}, seed {scenario.run.seed}"
    )


def _out_dir(text: str | None) -> Path | None:
    """The folder an ``--out`` names; an empty name (the current folder) is refused."""
    if text is None:
        return None
    if not text.strip():
        raise ScenarioError("--out", "empty folder name (it would write into the current folder)")
    _check_name_length(text, "--out")
    return Path(text)


def _check_name_length(text: str, key: str) -> None:
    """Refuse a path the system cannot name (a part over NAME_MAX, the whole over PATH_MAX)."""
    try:
        name_max = os.pathconf("/", "PC_NAME_MAX")
        path_max = os.pathconf("/", "PC_PATH_MAX")
    except (OSError, ValueError):  # no pathconf: Linux's limits
        name_max, path_max = 255, 4096
    encoded = os.fsencode(text)
    if len(encoded) >= path_max or any(len(part) > name_max for part in encoded.split(b"/")):
        raise ScenarioError(
            key,
            f"{_clipped(text)}: name too long (at most {name_max} bytes a part, "
            f"{path_max - 1} in all)",
        )


def cmd_simulate(args: argparse.Namespace) -> int:
    """Run one scenario and write its tables."""
    from mesaopt.model.atomic_folder import check_target
    from mesaopt.model.finite import NonFiniteError

    scenario, base_dir, source = _resolve(args)
    out = _out_dir(args.out)
    check_target(out)  # before the run: a folder it may not replace or cannot write is refused
    # The runner loads Mesa and the kernels (about 1.5 s): after the checks, so that bad input
    # is refused without waiting for them.
    from mesaopt.model.runner import check_inputs_outside, run_simulation

    check_inputs_outside(Path(os.path.abspath(out)), scenario, base_dir, source)
    try:
        with _attributed_to(source):
            result = run_simulation(
                scenario,
                out,
                fmt=args.format,
                base_dir=base_dir,
                source=source,
                progress=not args.quiet,
            )
    except NonFiniteError as err:  # a run-time failure (exit 1), not bad input (exit 2)
        print(
            f"mesaopt: error: {err.one_line()}; {out}/manifest.json marked failed", file=sys.stderr
        )
        return 1
    if not args.quiet:
        # The summary only once the run succeeded: an error found while building the network
        # (edge list, k, peer stability) is then the only line printed.
        print(f"mesaopt: {source}: {_summary(scenario)}", file=sys.stderr)
        counts = ", ".join(f"{t} {n}" for t, n in result.manifest["row_counts"].items())
        print(
            f"mesaopt: wrote {out}/ ({counts} rows; manifest.json) in "
            f"{result.manifest['wall_seconds']:.2f} s"
        )
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """Check scenario files and overrides, building each one's network and agents (no steps).

    Every file is checked: one ``ok: ...`` line on stdout per good file, one error line on stderr
    per bad one; the status is 2 if any file is bad, else 0.
    """
    bad = 0
    for name in args.scenarios:
        args.scenario = name
        try:
            scenario, base_dir, source = _resolve(args)
            # After the file's checks: the model loads Mesa and the kernels (about 1.5 s).
            from mesaopt.model.model import MesaOptModel

            with _attributed_to(source):
                MesaOptModel(scenario, base_dir=base_dir)
        except ScenarioError as err:
            print(f"mesaopt: error: {err.one_line()}", file=sys.stderr)
            bad += 1
            continue
        print(f"ok: {source}: {_summary(scenario)}")
    return 2 if bad else 0


def _number(x: float) -> str:
    return "—" if x != x else f"{x:.6g}"


def cmd_validate(args: argparse.Namespace) -> int:
    """Run the model against its closed-form limits; print the table; 1 if any check fails."""
    import time

    from mesaopt.analysis import validation

    if args.files:
        raise ScenarioError(
            repr(args.files[0]) if not args.files[0].strip() else args.files[0],
            "validate takes no scenario file; check files with `run.py check FILE`",
        )
    names = args.only
    if names:
        unknown = [n for n in names if n not in validation.CHECKS]
        if unknown:
            raise ScenarioError(
                "--only", f"unknown check {unknown[0]!r} (one of {', '.join(validation.CHECKS)})"
            )
    csv_path = Path(args.csv) if args.csv else None
    if csv_path is not None and (csv_path.is_dir() or not csv_path.parent.is_dir()):
        raise ScenarioError("--csv", f"cannot write {csv_path} (a folder, or no such folder)")
    if csv_path is not None and csv_path.is_symlink():  # never write through a link
        raise ScenarioError("--csv", f"{csv_path} is a symbolic link: name the file itself")
    if csv_path is not None and csv_path.exists() and not csv_path.is_file():
        # written through a temporary name and renamed: it would replace a device or a pipe
        raise ScenarioError("--csv", f"{csv_path} is not a regular file: name a new or CSV file")
    start = time.perf_counter()
    rows = validation.run_checks(names, seed=args.seed)
    seconds = time.perf_counter() - start
    header = ("quantity", "theory", "simulation ± SE", "tolerance", "pass")
    table = [
        (
            r.quantity,
            _number(r.theory),
            _number(r.simulation) + ("" if r.se != r.se else f" ± {r.se:.2g}"),
            f"{r.tolerance:.2g}",
            "ok" if r.passed else "FAIL",
        )
        for r in rows
    ]
    widths = [max(len(line[i]) for line in [header, *table]) for i in range(len(header))]
    for line in [header, *table]:
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())
    failed = sum(not r.passed for r in rows)
    print(
        f"{len(rows) - failed}/{len(rows)} passed in {seconds:.0f} s (stochastic rows within "
        f"{validation.Z:g} SE; seed shift {args.seed})"
    )
    if csv_path is not None:
        import csv
        from dataclasses import asdict

        from mesaopt.model.recording import atomic_path

        with atomic_path(csv_path) as tmp, tmp.open("w", newline="", encoding="utf-8") as out:
            writer = csv.DictWriter(out, fieldnames=list(asdict(rows[0])))
            writer.writeheader()
            # Deterministic rows have no SE: an empty cell, not a NaN.
            writer.writerows({k: ("" if v != v else v) for k, v in asdict(r).items()} for r in rows)
    return 1 if failed else 0


def scenario_path(text: str) -> Path:
    """The scenario file an argument names: a path, or the name of a shipped scenario.

    A shipped scenario's name (``baseline``, as ``run.py scenarios`` lists it) stands for its file
    wherever mesaopt is installed, unless a file of that name exists in the current folder.
    """
    if not text.strip():  # Path("") is the current folder; the default is named by leaving it out
        raise ScenarioError("scenario", "empty file name")
    _check_name_length(text, "scenario")
    path = Path(text)
    if not path.exists() and path.name == text and path.suffix in ("", ".toml"):
        shipped = SCENARIO_DIR / f"{path.stem}.toml"
        if path.suffix == "" and shipped.is_file():
            return shipped
        import difflib

        names = sorted(p.stem for p in SCENARIO_DIR.glob("*.toml"))
        close = difflib.get_close_matches(path.stem, names, n=1)
        if close and close[0] != path.stem:  # a typo of a shipped scenario's name
            message = f"file not found (did you mean the shipped scenario '{close[0]}'?)"
            raise ScenarioError("scenario", message, text)
    return path


def _shown(path: Path) -> str:
    """A shipped file's path relative to the current folder where it is below it, else absolute."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path.resolve())


def shipped_scenarios() -> dict[str, tuple[Path, str]]:
    """Shipped scenario files by name, with the first line of their header comment."""
    found: dict[str, tuple[Path, str]] = {}
    for path in sorted(SCENARIO_DIR.glob("*.toml")):
        description = ""
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.startswith("#"):
                description = line.lstrip("# ").strip()
                break
        found[path.stem] = (path, description)
    return found


def cmd_scenarios(args: argparse.Namespace) -> int:
    """List shipped scenarios or print the schema."""
    if args.schema:
        from mesaopt.agents.kinds import KINDS
        from mesaopt.model.scenario import Scenario

        schema = Scenario.model_json_schema()
        # The kinds are a registry (agents/kinds.py), not a fixed list: name the registered ones.
        schema["$defs"]["AgentsConfig"]["properties"]["optimizer"]["enum"] = [*KINDS, "mixed"]
        print(json.dumps(schema, indent=2))
        return 0
    found = shipped_scenarios()
    width = max((len(name) for name in found), default=8)
    print(f"{'(default)':<{width}}  embedded default scenario (= baseline)")
    for name, (path, description) in found.items():
        print(f"{name:<{width}}  {description}  [{_shown(path)}]")
    return 0


# ------------------------------------------------------------------ batch: sweep, export, SA


def _positive_int(text: str) -> int:
    value = _whole_number(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {value}")
    return value


#: Most ``--workers``: worker processes (or SLURM jobs) one command starts. Each local worker is
#: a process of ~150 MB before its first run; a number beyond this is a typo, not a cluster.
MAX_WORKERS = 1024


def _workers(text: str) -> int:
    value = _positive_int(text)
    if value > MAX_WORKERS:
        raise argparse.ArgumentTypeError(f"expected at most {MAX_WORKERS} workers, got {value}")
    return value


def _add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="sweep folder (re-running resumes it)")
    parser.add_argument(
        "--engine",
        choices=("local", "serial"),
        default="local",
        help="local: embedded Dask LocalCluster, one process per core (default); serial: here",
    )
    parser.add_argument(
        "--scheduler", type=_scheduler, help="run on an existing Dask cluster: tcp://HOST:PORT"
    )
    parser.add_argument("--cluster", choices=("slurm",), help="start workers with dask-jobqueue")
    parser.add_argument("--workers", type=_workers, help="local worker processes / SLURM jobs")
    parser.add_argument("--replicates", type=_positive_int, help="replicates per design point")
    parser.add_argument("--quiet", action="store_true", help="no progress or summary")


def _add_batch_commands(commands: argparse._SubParsersAction) -> None:
    sweep = commands.add_parser(
        "sweep", help="run a parameter grid × replicates (Dask), resumable, with summaries"
    )
    _add_scenario_arguments(sweep)
    sweep.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="KEY=VALUES",
        help="swept key: v1,v2,... or a range start:stop:step / start:stop:log2 (repeatable; "
        "adds to the scenario's [sweep] section)",
    )
    _add_engine_arguments(sweep)

    export = commands.add_parser("export", help="write a sweep's tables as CSV (or one Parquet)")
    export.add_argument("sweep_dir", help="a sweep folder (holding sweep.json)")
    export.add_argument("--format", choices=("csv", "parquet"), default="csv")
    export.add_argument("--out", help="destination folder (default: the sweep folder)")

    sensitivity = commands.add_parser(
        "sensitivity", help="Sobol or Morris sensitivity indices (SALib) over parameter ranges"
    )
    _add_scenario_arguments(sensitivity)
    sensitivity.add_argument("--method", choices=("sobol", "morris"), default="sobol")
    sensitivity.add_argument(
        "--param",
        action="append",
        required=True,
        metavar="KEY=LOW:HIGH",
        help="a parameter and its range (repeatable; the scenario schema gives its type: an int "
        "key samples whole numbers, a float key floats)",
    )
    sensitivity.add_argument(
        "--samples",
        type=_positive_int,
        default=64,
        help="Sobol base samples N (a power of 2; N·(D+2) runs) or Morris trajectories "
        "(N·(D+1) runs); default 64",
    )
    sensitivity.add_argument("--metric", default="value", help="output metric (default: value)")
    sensitivity.add_argument(
        "--statistic",
        choices=("mean", "final"),
        default="mean",
        help="time-averaged (default) or final-step value of the metric",
    )
    sensitivity.add_argument("--principal", default="all", help="principal name or all")
    _add_engine_arguments(sensitivity)


def _overrides(args: argparse.Namespace) -> list[str]:
    overrides = list(args.overrides)
    if args.steps is not None:
        overrides.append(f"run.steps={args.steps}")
    if args.seed is not None:
        overrides.append(f"run.seed={args.seed}")
    return overrides


def _engine_options(args: argparse.Namespace) -> dict[str, object]:
    from mesaopt.analysis.executors import worker_start_method

    return {
        "engine": args.engine,
        "scheduler": args.scheduler,
        "cluster": args.cluster,
        "workers": args.workers,
        "progress": not args.quiet,
        "start_method": worker_start_method(command_line=True),
    }


def _report_failures(result) -> int:
    """Print failed runs to stderr; return the exit status of the sweep (1 if any failed)."""
    failed = result.failed
    for outcome in failed[:10]:
        print(
            f"mesaopt: failed: run {outcome.run_id} (design {outcome.design_id}, replicate "
            f"{outcome.replicate}): {outcome.error} — {result.out_dir}/runs/{outcome.run_id}/"
            "error.txt",
            file=sys.stderr,
        )
    if len(failed) > 10:
        print(f"mesaopt: ... and {len(failed) - 10} more (see runs.parquet)", file=sys.stderr)
    return 1 if failed else 0


def cmd_sweep(args: argparse.Namespace) -> int:
    """Run a grid of design points × replicates and write the sweep's tables."""
    from mesaopt.analysis.sweep_design import parse_grid_arguments
    from mesaopt.analysis.sweep_runner import load_base, run_design, sweep_design

    grid = parse_grid_arguments(args.grid)
    base = load_base(scenario_path(args.scenario), _overrides(args))
    design = sweep_design(base, grid, args.replicates)
    result = run_design(base, design, _out_dir(args.out), **_engine_options(args))
    if not design.parameters:  # after the run: an error in its input stays the only line
        _warn_single_point(base.source, len(design.seeds))
    if not args.quiet:
        out = result.out_dir
        print(
            f"mesaopt: {len(result.runs)} runs ({result.count('ok')} ran, "
            f"{result.count('skipped')} already done, {result.count('failed')} failed) in "
            f"{result.wall_seconds:.1f} s → {out}/\n"
            f"  tidy dataset  {out}/steps/  (pd.read_parquet('{out}/steps'))\n"
            f"  summary       {out}/summary.parquet, summary.csv  (mean, sd, 95% CI per design "
            "point)\n"
            f"  runs          {out}/runs.parquet, run_metrics.parquet; design in sweep.json"
        )
        table = result.summary
        if not table.empty:
            head = table[
                (table["principal"] == "all")
                & (table["statistic"] == "final")
                & (table["metric"].isin(["proxy", "value"]))
            ]
            columns = ["design_id", *result.design.parameters, "metric", "n", "mean", "ci_low"]
            print("  final-step proxy and true value (all agents):")
            print(head[[*columns, "ci_high"]].to_string(index=False, float_format="%.3f"))
    return _report_failures(result)


def _warn_single_point(source: str, replicates: int) -> None:
    """Say, in one line, why a sweep without a grid draws no curve (it still runs its point)."""
    print(
        f"mesaopt: note: {source} has no [sweep] grid and no --grid was given: it ran its one "
        f"design point x {replicates} replicate(s); the report has no parameter to draw against "
        "(add --grid KEY=VALUES or a [sweep.grid] section)",
        file=sys.stderr,
    )


def _add_experiments_command(commands: argparse._SubParsersAction) -> None:
    experiments = commands.add_parser(
        "experiments",
        help="run the essay's claims as experiments (resumable) and print their verdicts",
    )
    experiments.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help="experiments to run (default: all seven), or experiment files of your own",
    )
    experiments.add_argument(
        "--full", action="store_true", help="publication size (default: the quick size)"
    )
    experiments.add_argument(
        "--out", default="experiments", help="output folder (default: experiments; resumes)"
    )
    experiments.add_argument(
        "--engine",
        choices=("local", "serial"),
        default="local",
        help="local: embedded Dask LocalCluster, one process per core (default); serial: here",
    )
    experiments.add_argument("--scheduler", help="run on an existing Dask cluster: tcp://HOST:PORT")
    experiments.add_argument("--workers", type=_workers, help="local worker processes")
    experiments.add_argument("--quiet", action="store_true", help="no progress, only the table")
    experiments.error = _experiments_usage_error  # one line, not argparse's usage block


def _experiments_usage_error(message: str) -> None:
    """A bad ``experiments`` argument: one line on stderr, exit status 2."""
    print(f"mesaopt experiments: error: {message} (see run.py experiments --help)", file=sys.stderr)
    sys.exit(2)


def cmd_experiments(args: argparse.Namespace) -> int:
    """Run the experiments, print the verdict table; 1 if a run failed, else 0."""
    from mesaopt.analysis.executors import worker_start_method
    from mesaopt.analysis.experiments import format_verdicts, run_experiments

    table = run_experiments(
        args.names,
        _out_dir(args.out),
        full=args.full,
        scheduler=args.scheduler,
        workers=args.workers,
        progress=not args.quiet,
        engine=args.engine,
        start_method=worker_start_method(command_line=True),
    )
    print(format_verdicts(table))
    out = _out_dir(args.out)
    if not args.quiet:
        print(
            f"mesaopt: {len(table)} verdicts in {table.attrs['wall_seconds']:.0f} s → "
            f"{out}/verdicts.csv, verdicts.parquet; report {out}/report/index.html"
        )
    failed = table.attrs.get("failed_runs", 0)
    if failed:
        print(
            f"mesaopt: {failed} runs failed (see {out}/<experiment>/<arm>/runs.parquet)",
            file=sys.stderr,
        )
    return 1 if failed else 0


def cmd_export(args: argparse.Namespace) -> int:
    """Write a sweep folder's tables as CSV (or single Parquet files)."""
    from mesaopt.analysis.export import export_sweep

    with _tables_of(args.sweep_dir):
        written = export_sweep(args.sweep_dir, args.format, _out_dir(args.out))
    for path in written:
        print(f"mesaopt: wrote {path}")
    return 0


@contextlib.contextmanager
def _tables_of(folder: str):
    """Turn a table Arrow cannot read (corrupt, truncated) into one line naming the folder."""
    import pyarrow as pa

    from mesaopt.analysis.run_folder import unreadable_table

    try:
        yield
    except pa.ArrowException as err:
        raise unreadable_table(folder, err) from None


def _check_output(scenario: Scenario, metric: str, principal: str, source: str) -> None:
    """Refuse an unknown output metric or principal before any run is made.

    The ``steps`` columns are read off a one-step run of the scenario on a ten-node ring
    (:func:`model.runner.probe_steps`).
    """
    from mesaopt.model.runner import probe_steps

    with _attributed_to(source):  # a bad kind or network is the scenario file's error
        rows = probe_steps(scenario, source)
    columns = [c for c in rows[0] if c not in ("step", "principal")]
    if metric not in columns:
        raise ScenarioError(
            "--metric", f"no steps column {metric!r} (e.g. {', '.join(columns[5:9])})"
        )
    names = [p.name for p in scenario.principals] + ["all"]
    if principal not in names:
        raise ScenarioError(
            "--principal", f"no principal {principal!r} (one of {', '.join(names)})"
        )


def cmd_sensitivity(args: argparse.Namespace) -> int:
    """Sample parameter ranges with SALib, run them, and write indices with CIs."""
    from mesaopt.analysis.sensitivity import (
        indices,
        output_per_point,
        parse_param,
        problem,
        sample,
        sensitivity_design,
    )
    from mesaopt.analysis.sweep_runner import load_base, run_design
    from mesaopt.model.recording import atomic_path

    bounds = [parse_param(text) for text in args.param]
    base = load_base(scenario_path(args.scenario), _overrides(args))
    scenario = validate(copy.deepcopy(base.data), base.source)
    _check_output(scenario, args.metric, args.principal, base.source)
    seed = scenario.sweep.seed if scenario.sweep and scenario.sweep.seed is not None else None
    seed = scenario.run.seed if seed is None else seed
    matrix = sample(args.method, bounds, args.samples, seed)
    design, point_of = sensitivity_design(args.method, bounds, matrix, args.replicates or 1, seed)
    record = {
        "sensitivity": {
            "method": args.method,
            "problem": problem(bounds),
            "samples": args.samples,
            "sample_rows": len(matrix),
            "metric": args.metric,
            "statistic": args.statistic,
            "principal": args.principal,
        }
    }
    result = run_design(
        base, design, _out_dir(args.out), extra_record=record, **_engine_options(args)
    )
    status = _report_failures(result)
    if status:
        print("mesaopt: no indices: some runs failed", file=sys.stderr)
        return status
    per_point = output_per_point(
        result.run_metrics, len(design.points), args.metric, args.statistic, args.principal
    )
    try:
        table = indices(args.method, bounds, matrix, per_point[point_of], seed)
    except ValueError as err:  # the runs are kept; only the indices are undefined
        for stale in ("sensitivity.parquet", "sensitivity.csv"):  # an earlier command's
            (_out_dir(args.out) / stale).unlink(missing_ok=True)
        shown = f"{args.metric} ({args.statistic}, {args.principal})"
        print(f"mesaopt: no indices of {shown}: {err}", file=sys.stderr)
        return 1
    table.insert(0, "method", args.method)
    table.insert(1, "metric", args.metric)
    table.insert(2, "statistic", args.statistic)
    table.insert(3, "principal", args.principal)
    out = _out_dir(args.out)
    with atomic_path(out / "sensitivity.parquet") as tmp:
        table.to_parquet(tmp, index=False)
    with atomic_path(out / "sensitivity.csv") as tmp:
        table.to_csv(tmp, index=False)
    if not args.quiet:
        print(f"mesaopt: {len(result.runs)} runs; indices → {out}/sensitivity.parquet, .csv")
        print(table.drop(columns=["method"]).to_string(index=False, float_format="%.3f"))
    return 0


# ------------------------------------------------------------------ figures, report, app


def _add_view_commands(commands: argparse._SubParsersAction) -> None:
    report = commands.add_parser(
        "report", help="draw the figures and an HTML report of a run or sweep folder"
    )
    report.add_argument("dir", help="a run folder (run.py simulate) or a sweep folder")
    report.add_argument("--out", help="report folder (default: DIR/report)")
    report.add_argument(
        "--animate", action="store_true", help="also a GIF (+ MP4 with ffmpeg) of the agents"
    )
    viz = commands.add_parser("viz", help="serve the interactive app (Mesa SolaraViz)")
    viz.add_argument("scenario", nargs="?", help="scenario TOML file (default: embedded)")
    viz.add_argument("--host", default="127.0.0.1", help="address to listen on")
    viz.add_argument("--port", type=_port, default=8765, help="port (default 8765)")


def cmd_report(args: argparse.Namespace) -> int:
    """Draw every figure of a run or sweep folder and write report.html."""
    from mesaopt.analysis.folder_kinds import NotARunError, check_run_or_sweep

    try:
        check_run_or_sweep(args.dir)  # before the plotting libraries' import (seconds)
        from mesaopt.analysis.report import build_report

        with _tables_of(args.dir):
            report = build_report(args.dir, _out_dir(args.out), animate=args.animate)
    except NotARunError as err:
        print(f"mesaopt: error: {err}", file=sys.stderr)
        return 2
    print(f"mesaopt: {len(report.figures)} figures (PNG + SVG) → {report.out_dir}/")
    for path in report.animations:
        print(f"animation: {path}")
    for note in report.notes:
        print(f"note: {note}")
    print(f"report:   {report.html}")
    return 0


def cmd_viz(args: argparse.Namespace) -> int:
    """Serve the SolaraViz app (``solara run analysis/app.py``) until interrupted.

    Ctrl-C (SIGINT) and ``kill`` (SIGTERM) stop the Solara server too: it runs in its own process
    group, which :func:`_serve_until_signalled` signals (and kills if it has not stopped within
    :data:`VIZ_STOP_SECONDS`); on Linux it also gets SIGTERM should this process die outright.
    """
    if args.scenario is not None:
        args.scenario = str(scenario_path(args.scenario))
        load_scenario(args.scenario)  # a bad file fails here, with one line
    env = dict(os.environ, SOLARA_TELEMETRY_MIXPANEL_ENABLE="False")
    # Solara warns at the first page load from any host but "localhost" (127.0.0.1 too) that
    # its session cookie falls back to SameSite=Lax without https: right for a local app (the
    # fallback is what it needs), and a 15-line warning a user can do nothing about.
    quiet = "ignore:Cookies with samesite=none require https:UserWarning"
    env["PYTHONWARNINGS"] = ",".join(filter(None, [env.get("PYTHONWARNINGS"), quiet]))
    if args.scenario:
        env["MESAOPT_VIZ_SCENARIO"] = str(Path(args.scenario).resolve())
    _check_listening(args.host, args.port)
    app = PROJECT_ROOT / "analysis" / "app.py"
    command = [sys.executable, "-m", "solara", "run", str(app), "--host", args.host]
    command += ["--port", str(args.port), "--no-open", "--production"]
    name = Path(args.scenario).stem if args.scenario else "the default scenario"
    print(f"mesaopt: serving the app ({name}) on http://{args.host}:{args.port}/ (Ctrl-C stops)")
    return _serve_until_signalled(command, env)


def _check_listening(host: str, port: int) -> None:
    """Refuse, in one line, an address the app's server could not listen on.

    Binds every address the server's event loop would (``loop.create_server``: each result of
    ``getaddrinfo``, with ``SO_REUSEADDR``) and lets them go. The server itself said it in
    uvicorn's format (``ERROR: [Errno 98] error while attempting to bind on address ...``) after
    this command had announced it, and exited with 3 (fuzzing pass). A port taken in the instant
    between the two still gets uvicorn's line.

    Raises:
        ScenarioError: ``--host`` that does not resolve or is not this machine's, ``--port`` in
            use or not allowed.
    """
    import errno
    import socket

    shown = f"{_clipped(host)}:{port}"
    try:
        addresses = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except (socket.gaierror, UnicodeError) as err:
        reason = getattr(err, "strerror", None) or "not a host name"
        raise ScenarioError("--host", f"{_clipped(host)}: {reason}") from None
    unavailable: OSError | None = None
    bound = 0
    for family, kind, proto, _, address in addresses:
        try:
            probe = socket.socket(family, kind, proto)
        except OSError as err:  # as asyncio: a family this kernel does not offer (IPv6 off)
            unavailable = unavailable or err
            continue
        with probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                probe.bind(address)
                bound += 1
            except OSError as err:
                if err.errno == errno.EADDRNOTAVAIL:  # as asyncio: that family may be off
                    unavailable = unavailable or err
                    continue
                key = "--port" if err.errno in (errno.EADDRINUSE, errno.EACCES) else "--host"
                reason = err.strerror or str(err)
                raise ScenarioError(key, f"cannot listen on {shown} ({reason})") from None
    if not bound and unavailable is not None:
        reason = unavailable.strerror or str(unavailable)
        raise ScenarioError("--host", f"cannot listen on {shown} ({reason})")


#: Seconds the Solara server has to stop after SIGINT/SIGTERM before it is killed.
VIZ_STOP_SECONDS = 5.0


def _die_with_parent() -> None:
    """In the child, before exec: ask Linux for SIGTERM when the parent dies (prctl)."""
    import ctypes
    import signal

    pr_set_pdeathsig = 1
    try:
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGTERM))
    except (OSError, AttributeError):  # not Linux: SIGINT/SIGTERM are still forwarded
        pass


def _serve_until_signalled(command: list[str], env: dict[str, str]) -> int:
    """Run a server in its own process group; forward SIGINT/SIGTERM to it and wait for it.

    Args:
        command: The server's command line.
        env: Its environment.

    Returns:
        The server's exit status, or 0 when it was stopped by a signal.
    """
    import signal
    import subprocess
    import time

    child = subprocess.Popen(
        command,
        env=env,
        cwd=PROJECT_ROOT,
        start_new_session=True,
        preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
    )
    stop: list[float] = []  # deadline of the stop asked for by a signal

    def signal_group(signum: int) -> None:
        try:
            os.killpg(child.pid, signum)
        except ProcessLookupError:  # already gone
            pass

    def forward(signum: int, _frame: object) -> None:
        if stop:  # a second Ctrl-C: do not wait any longer
            stop[0] = 0.0
            return
        stop.append(time.monotonic() + VIZ_STOP_SECONDS)
        signal_group(signum)

    handled = (signal.SIGINT, signal.SIGTERM)
    previous = {signum: signal.signal(signum, forward) for signum in handled}
    try:
        while True:
            try:
                status = child.wait(timeout=0.2)
                break
            except subprocess.TimeoutExpired:
                if stop and time.monotonic() >= stop[0]:
                    signal_group(signal.SIGKILL)
        signal_group(signal.SIGKILL)  # whatever the server left in its group
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 0 if stop else status


def cmd_demo() -> int:
    """Run the demo: the embedded default, a figure of proxy vs true value per principal."""
    import pandas as pd

    from mesaopt.analysis.figures import plot_proxy_vs_value
    from mesaopt.model.runner import run_simulation

    scenario = load_scenario(None)
    print(f"mesaopt demo: {_summary(scenario)}")
    result = run_simulation(scenario, DEMO_DIR, source="<default scenario>")
    steps = pd.read_parquet(result.paths["steps"])
    events = pd.read_parquet(result.paths["events"])
    figure = plot_proxy_vs_value(steps, events, DEMO_DIR / "proxy_vs_value.png")
    final = steps[steps["step"] == steps["step"].max()].set_index("principal")
    tables = "{steps,agents,selections,events,network}.parquet"
    print(f"tables:   {DEMO_DIR}/{tables} + manifest.json")
    print(f"figure:   {figure}")
    for name, row in final.iterrows():
        print(
            f"  {name:<10} proxy {row['proxy']:7.3f}  true value {row['value']:7.3f}  "
            f"principal loss {row['principal_loss']:6.3f}  mesa loss {row['mesa_loss']:6.3f}"
        )
    print("next:     python run.py simulate scenarios/baseline.toml --out out/")
    return 0


#: The optional packages a command needs, with the extra that installs them (pyproject.toml).
OPTIONAL_PACKAGES = {"sensitivity": ("SALib", "sensitivity"), "viz": ("solara", "viz")}


def _check_environment(command: str | None, cluster: str | None = None) -> None:
    """Raise ValueError before any work on a bad ``MESAOPT_WORKER_START``.

    (A bad ``MESAOPT_THREADS`` is refused earlier: :func:`main` imports the thread pool, which
    reads it, before parsing.)

    Also when the command needs an optional package that is not installed (``sensitivity``:
    SALib, ``viz``: Solara, ``--cluster slurm``: dask-jobqueue), naming the extra that installs
    it: before a sensitivity analysis runs anything, and before ``viz`` announces a server that
    could not start.
    """
    import importlib.util

    needs = [OPTIONAL_PACKAGES[command]] if command in OPTIONAL_PACKAGES else []
    if cluster == "slurm":
        needs.append(("dask_jobqueue", "slurm"))
    for package, extra in needs:
        if importlib.util.find_spec(package) is None:
            what = "--cluster slurm" if extra == "slurm" else command
            raise ValueError(
                f"{what} needs {package}, which is not installed: "
                f'pip install -e ".[{extra}]" in the mesaopt checkout'
            )
    if command in ("sweep", "sensitivity", "experiments"):
        from mesaopt.analysis.executors import worker_start_method

        worker_start_method()


def _disk_full_message(command: str | None, err: OSError) -> str:
    """One line for a write that ran out of space: what is kept and what to do next.

    A run folder is written in a hidden staging folder and appears complete or not at all
    (:mod:`model.atomic_folder`), so a failed ``simulate`` leaves nothing; a sweep keeps every
    run that finished and resumes from them.
    """
    where = f" ({err.filename})" if err.filename else ""
    if command in ("sweep", "sensitivity", "experiments"):
        kept = "every finished run is kept: free space and run the same command again to resume"
    elif command == "simulate":
        kept = "nothing was kept: free space (or choose another --out) and run again"
    else:
        kept = "free space (or choose another --out) and run again"
    return f"no space left on the device{where}; {kept}"


def _interrupted_message(command: str | None, out: str | None) -> str:
    """What Ctrl-C left: a run keeps nothing, a sweep or experiments every finished run."""
    if command in ("sweep", "sensitivity", "experiments"):
        if out is not None and not os.path.lexists(out):  # stopped before it wrote anything
            return "nothing was written"
        folder = out if (out or "").endswith("/") else f"{out}/"  # "sw/" and "sw" alike: sw/
        return f"run the same command again to resume ({folder} keeps every finished run)"
    if command == "simulate":
        return "nothing was kept (a run folder appears complete or not at all)"
    return "nothing more was done"


def _stopped(err: KeyboardInterrupt) -> tuple[str, int]:
    """How a stop is named and its exit status: SIGTERM 143, Ctrl-C 130 (128 + the signal)."""
    return ("terminated", 143) if isinstance(err, Terminated) else ("interrupted", 130)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``mesaopt`` command; returns the exit status.

    Ctrl-C is one line wherever it lands, start-up (parsing, the first imports) included.
    """
    try:
        # The thread pool reads MESAOPT_THREADS when first imported: before parsing, since an
        # argument's check imports it (a bad value was reported as a bad --steps: fuzzing pass)
        import mesaopt.model.parallel  # noqa: F401

        args = build_parser().parse_args(argv)
        # imports the engines' modules (seconds): Ctrl-C too
        _check_environment(args.command, getattr(args, "cluster", None))
    except ValueError as err:  # argparse reports its own errors: the environment's
        print(f"mesaopt: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:
        word, status = _stopped(err)
        print(f"mesaopt: {word}; nothing was done", file=sys.stderr)
        return status
    return _main(args)


def cli() -> None:
    """The ``mesaopt`` console script and ``python run.py``: run :func:`main`, exit with its status.

    Once the command is over and its one line printed, what is left is the interpreter's
    shutdown (joining threads, flushing), where a Ctrl-C would print a traceback or turn a
    success into 130: from then on it (or SIGTERM) ends the process at once with the command's
    status, and once the threads are joined and the other atexit hooks have run, both are
    ignored. (The interpreter puts a handler written in Python back to the default before its
    last clean-up, so a Ctrl-C or SIGTERM there killed a finished run without a word; an ignored
    signal it leaves ignored.)
    """
    import atexit
    import signal

    # `kill` or a batch scheduler's time limit cleans up as a Ctrl-C does (model.errors); a
    # forked child (a Dask worker) keeps the default: the driver stops it
    signal.signal(signal.SIGTERM, raise_terminated)
    if hasattr(os, "register_at_fork"):  # POSIX; elsewhere no child is forked
        os.register_at_fork(after_in_child=_default_sigterm)
    # Registered first, run last: once every other hook has run, a Ctrl-C or SIGTERM is ignored
    for stop in (signal.SIGINT, signal.SIGTERM):
        atexit.register(signal.signal, stop, signal.SIG_IGN)
    status = main()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (BrokenPipeError, KeyboardInterrupt):
        pass
    for stop in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop, lambda signum, frame: os._exit(status))
    sys.exit(status)


def _default_sigterm() -> None:
    """In a forked child: SIGTERM back to its default (the command's handler is the parent's)."""
    import signal

    with contextlib.suppress(ValueError):  # not the child's main thread: nothing to undo
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


#: Commands that run the model, and so may compile its kernels (None: the demo).
MODEL_COMMANDS = frozenset({None, "simulate", "validate", "sweep", "sensitivity", "experiments"})


def _compile_notice(args: argparse.Namespace) -> contextlib.AbstractContextManager:
    """One line on stderr if the command compiles the model's kernels.

    On a terminal only, as the progress bars (tqdm's ``disable=None``), and not with ``--quiet``:
    a log or a test that reads stderr keeps its one line per error.
    """
    quiet = getattr(args, "quiet", False) or not sys.stderr.isatty()
    if args.command not in MODEL_COMMANDS or quiet:
        return contextlib.nullcontext()
    from mesaopt.model.compile_notice import compile_notice

    def write(line: str) -> None:
        from tqdm import tqdm  # above a progress bar that is already drawn, not through it

        tqdm.write(line, file=sys.stderr)

    return compile_notice(write)


def _main(args: argparse.Namespace) -> int:
    """Run the parsed command; every failure a user can cause is one line and an exit status."""
    handlers = {"simulate": cmd_simulate, "validate": cmd_validate, "scenarios": cmd_scenarios}
    handlers.update(check=cmd_check)
    handlers.update(sweep=cmd_sweep, export=cmd_export, sensitivity=cmd_sensitivity)
    handlers.update(report=cmd_report, viz=cmd_viz)
    handlers.update(experiments=cmd_experiments)
    try:
        with _compile_notice(args):
            status = cmd_demo() if args.command is None else handlers[args.command](args)
        sys.stdout.flush()  # a closed pipe shows here, inside the try (Python docs, "signal")
        return status
    except ScenarioError as err:
        print(f"mesaopt: error: {err.one_line()}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, SystemError) as err:
        # A Ctrl-C that lands inside a compiled kernel's call comes out of Numba's dispatcher
        # as a SystemError caused by it (model.errors.interruption)
        stop = interruption(err)  # the KeyboardInterrupt itself, or the one that caused it
        if stop is None:
            raise
        message = _interrupted_message(args.command, getattr(args, "out", None))
        word, status = _stopped(stop)
        print(f"mesaopt: {word}; {message}", file=sys.stderr)
        return status  # what a shell reports for a command stopped by that signal
    except MemoryError:
        # Past the loader's memory estimate (a tighter `ulimit -v`, other processes): one line;
        # the run's hidden folder is removed on the way out, so nothing is left behind.
        print(
            "mesaopt: error: out of memory; lower network.n_agents, selection.n or "
            "selection.eval_samples (or free memory) and run again",
            file=sys.stderr,
        )
        return 1
    except BrokenPipeError:
        # The reader went away (`mesaopt scenarios --schema | head`): stop quietly, as Unix
        # tools do, and keep Python from complaining again when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a tool killed by a closed pipe
    except OSError as err:  # after BrokenPipeError, one of its kind
        from mesaopt.model.atomic_folder import is_disk_full

        if is_disk_full(err):
            message = _disk_full_message(args.command, err)
        else:  # the system refused (permissions, a vanished file): one line, not a traceback
            where = f"{_clipped(os.fsdecode(err.filename))}: " if err.filename else ""
            message = f"{where}{err.strerror or err}"
        print(f"mesaopt: error: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    cli()
