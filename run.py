"""mesaopt command line: ``python run.py COMMAND ...`` (installed as ``mesaopt``).

Commands:
    simulate   run one scenario and write its tables (steps, agents, selections, events)
    validate   check a scenario file (and overrides) without running it
    scenarios  list the shipped scenarios, or print the JSON schema with --schema

With no command, runs a small demo on the embedded default scenario and draws proxy vs true value
per principal. Bad input (scenario files, overrides, edge lists, arguments) prints one line naming
the key and the file and exits with status 2, before anything is written.
"""

from __future__ import annotations

import argparse
import json
import sys
from contextlib import contextmanager
from pathlib import Path

from model.errors import ScenarioError
from model.scenario import Scenario, load_scenario

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
    parser.add_argument("--steps", type=_non_negative_int, help="override run.steps")
    parser.add_argument("--seed", type=_non_negative_int, help="override run.seed")


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``mesaopt`` command."""
    parser = argparse.ArgumentParser(
        prog="mesaopt",
        description="Principals, the mesa-optimizers they build, and how the proxy comes apart "
        "from true value. Without a command: run a small demo.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    simulate = commands.add_parser("simulate", help="run one scenario and write its tables")
    _add_scenario_arguments(simulate)
    simulate.add_argument("--out", default="out", help="output folder (default: out)")
    simulate.add_argument("--format", choices=("parquet", "csv"), default="parquet")
    simulate.add_argument("--quiet", action="store_true", help="no progress bar or summary")

    validate = commands.add_parser(
        "validate", help="check a scenario (schema, network, agents) without running it"
    )
    _add_scenario_arguments(validate)

    scenarios = commands.add_parser("scenarios", help="list shipped scenarios")
    scenarios.add_argument("--schema", action="store_true", help="print the JSON schema")
    _add_view_commands(commands)
    return parser


def _resolve(args: argparse.Namespace) -> tuple[Scenario, Path | None, str]:
    overrides = list(args.overrides)
    if args.steps is not None:
        overrides.append(f"run.steps={args.steps}")
    if args.seed is not None:
        overrides.append(f"run.seed={args.seed}")
    path = Path(args.scenario) if args.scenario else None
    scenario = load_scenario(path, overrides)
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
    return (
        f"{net.n_agents} agents on {net.topology}, {len(scenario.channels)} channels, "
        f"principals: {names}; {scenario.run.steps} steps, seed {scenario.run.seed}"
    )


def cmd_simulate(args: argparse.Namespace) -> int:
    """Run one scenario and write its tables."""
    from model.runner import run_simulation

    scenario, base_dir, source = _resolve(args)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ScenarioError("--out", f"{out} exists and is not a folder")
    if not args.quiet:
        print(f"mesaopt: {source}: {_summary(scenario)}", file=sys.stderr)
    with _attributed_to(source):
        result = run_simulation(
            scenario,
            out,
            fmt=args.format,
            base_dir=base_dir,
            source=source,
            progress=not args.quiet,
        )
    if not args.quiet:
        counts = ", ".join(f"{t} {n}" for t, n in result.manifest["row_counts"].items())
        print(
            f"mesaopt: wrote {out}/ ({counts} rows; manifest.json) in "
            f"{result.manifest['wall_seconds']:.2f} s"
        )
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    """Validate a scenario file and overrides, and build its network and agents (no steps)."""
    from model.model import MesaOptModel

    scenario, base_dir, source = _resolve(args)
    with _attributed_to(source):
        MesaOptModel(scenario, base_dir=base_dir)
    print(f"ok: {source}: {_summary(scenario)}")
    return 0


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
        print(json.dumps(Scenario.model_json_schema(), indent=2))
        return 0
    found = shipped_scenarios()
    width = max((len(name) for name in found), default=8)
    print(f"{'(default)':<{width}}  embedded default scenario (= baseline)")
    for name, (path, description) in found.items():
        print(f"{name:<{width}}  {description}  [{path.relative_to(PROJECT_ROOT)}]")
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
    viz.add_argument("--port", type=_non_negative_int, default=8765, help="port (default 8765)")


def cmd_report(args: argparse.Namespace) -> int:
    """Draw every figure of a run or sweep folder and write report.html."""
    from analysis.report import NotARunError, build_report

    try:
        report = build_report(args.dir, args.out, animate=args.animate)
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
    """Serve the SolaraViz app (``solara run analysis/app.py``) until interrupted."""
    import os
    import subprocess

    if args.scenario:
        load_scenario(args.scenario)  # a bad file fails here, with one line
    env = dict(os.environ, SOLARA_TELEMETRY_MIXPANEL_ENABLE="False")
    if args.scenario:
        env["MESAOPT_VIZ_SCENARIO"] = str(Path(args.scenario).resolve())
    app = PROJECT_ROOT / "analysis" / "app.py"
    command = [sys.executable, "-m", "solara", "run", str(app), "--host", args.host]
    command += ["--port", str(args.port), "--no-open", "--production"]
    print(f"mesaopt: serving the app on http://{args.host}:{args.port}/ (Ctrl-C stops)")
    try:
        return subprocess.call(command, env=env, cwd=PROJECT_ROOT)
    except KeyboardInterrupt:
        return 0


def cmd_demo() -> int:
    """Run the demo: the embedded default, a figure of proxy vs true value per principal."""
    import pandas as pd

    from analysis.figures import plot_proxy_vs_value
    from model.runner import run_simulation

    scenario = load_scenario(None)
    print(f"mesaopt demo: {_summary(scenario)}")
    result = run_simulation(scenario, DEMO_DIR, source="<default scenario>")
    steps = pd.read_parquet(result.paths["steps"])
    events = pd.read_parquet(result.paths["events"])
    figure = plot_proxy_vs_value(steps, events, DEMO_DIR / "proxy_vs_value.png")
    final = steps[steps["step"] == steps["step"].max()].set_index("principal")
    print(f"tables:   {DEMO_DIR}/{{steps,agents,selections,events}}.parquet + manifest.json")
    print(f"figure:   {figure}")
    for name, row in final.iterrows():
        print(
            f"  {name:<10} proxy {row['proxy']:7.3f}  true value {row['value']:7.3f}  "
            f"principal loss {row['principal_loss']:6.3f}  mesa loss {row['mesa_loss']:6.3f}"
        )
    print("next:     python run.py simulate scenarios/baseline.toml --out out/")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``mesaopt`` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handlers = {"simulate": cmd_simulate, "validate": cmd_validate, "scenarios": cmd_scenarios}
    handlers.update(report=cmd_report, viz=cmd_viz)
    try:
        if args.command is None:
            return cmd_demo()
        return handlers[args.command](args)
    except ScenarioError as err:
        print(f"mesaopt: error: {err.one_line()}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
