"""One run end to end: scenario in, model stepped, tables and manifest out.

:func:`run_simulation` is what the command line (``run.py simulate``) and the batch tools call for
a single run. It owns the recorder, the progress bar and the manifest; the model owns the dynamics.
The run folder appears complete or not at all: the target is checked before the model is built,
the run is written into a hidden sibling and swapped in whole (:mod:`model.atomic_folder`). A run
stopped by a non-finite number (:class:`~model.finite.NonFiniteError`) is swapped in too, its
``manifest.json`` marked ``"status": "failed"`` with the error; a finished run is ``"complete"``.
"""

from __future__ import annotations

import functools
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import pyarrow as pa
from threadpoolctl import ThreadpoolController
from tqdm import tqdm

from mesaopt.model.atomic_folder import prepare_target, swap_in
from mesaopt.model.control_limits import divergence_hint
from mesaopt.model.errors import ScenarioError
from mesaopt.model.finite import NonFiniteError
from mesaopt.model.heap import retain_freed_memory
from mesaopt.model.model import MesaOptModel
from mesaopt.model.recording import Recorder
from mesaopt.model.scenario import Scenario, split_by_share
from mesaopt.model.scenario_files import to_toml_dict, validate

PROJECT_ROOT = Path(__file__).resolve().parent.parent
_PACKAGES = ("mesaopt", "mesa", "numpy", "scipy", "networkx", "pandas", "pyarrow", "pydantic")


@dataclass(frozen=True)
class RunResult:
    """Where a run's outputs went and what it cost.

    Attributes:
        out_dir: The run folder.
        paths: Path of each table.
        manifest: The manifest written to ``manifest.json``.
        model: The model after its last step.
        tables: The tables that were written straight from memory (all of them unless a table
            outgrew the recorder's buffer), as written, so that callers need not read them back.
    """

    out_dir: Path
    paths: dict[str, Path]
    manifest: dict[str, Any]
    model: MesaOptModel
    tables: dict[str, pa.Table] = field(default_factory=dict)


@functools.cache  # fixed for a process; saves ~40 ms per run in sweeps
def _package_versions() -> tuple[tuple[str, str | None], ...]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return tuple(versions.items())


def package_versions() -> dict[str, str | None]:
    """Versions of Python and the packages a run depends on."""
    return dict(_package_versions())


@functools.cache  # finding the loaded libraries costs ~3 ms: once per process, not once per run
def _threadpools() -> ThreadpoolController:
    return ThreadpoolController()


@functools.cache  # the loaded BLAS and its kernels do not change within a process
def blas_kernels() -> list[dict[str, str | None]]:
    """The BLAS libraries NumPy and SciPy loaded: library, version and CPU kernels in use.

    Recorded in the manifest because different CPU kernels of the same library round matrix
    products differently (OpenBLAS's Sandybridge kernels change 5 of the 59 golden tables against
    its Haswell, Zen and SkylakeX kernels), so tables are byte-identical across machines only when
    these match (docs/performance.md, "Across machines").
    """
    return [
        {
            "library": pool.get("internal_api"),
            "version": pool.get("version"),
            "architecture": pool.get("architecture"),
        }
        for pool in _threadpools().info()
        if pool.get("user_api") == "blas"
    ]


@functools.cache  # once per process (a sweep worker runs many runs)
def git_revision() -> str | None:
    """The project's git revision (``+dirty`` with uncommitted changes), if it is a checkout.

    Only when the package folder is itself the top level of a git work tree: an installed copy
    (site-packages) that happens to sit inside some other repository, e.g. a virtual environment
    in a user's project, reports None rather than that repository's revision.
    """
    root = PROJECT_ROOT.resolve()

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(root), *args],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()

    try:
        if Path(git("rev-parse", "--show-toplevel")).resolve() != root:
            return None
        rev = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{rev}+dirty" if dirty else rev


def run_simulation(
    scenario: Scenario,
    out_dir: str | Path,
    *,
    fmt: str = "parquet",
    base_dir: Path | None = None,
    source: str | None = None,
    progress: bool = True,
) -> RunResult:
    """Run one scenario and write its tables and manifest to ``out_dir``, complete or not at all.

    ``out_dir`` may be absent, empty or an earlier run folder (replaced whole, with anything else
    inside it, e.g. a ``report/``); it is checked before the model is built.

    Args:
        scenario: The validated scenario (its ``run.seed`` and ``run.steps`` are used).
        out_dir: The run folder.
        fmt: ``"parquet"`` or ``"csv"``.
        base_dir: Folder that relative paths in the scenario resolve against.
        source: The scenario file's name, for the manifest.
        progress: Show a progress bar (on stderr) when the run takes more than a second.

    Returns:
        The run's result.

    Raises:
        ScenarioError: If ``out_dir`` cannot be written (its parent is not a writable folder, it
            is a file, or a folder that is not a run), or if the scenario is invalid in a way only
            building the model reveals (edge list, peer-effect stability); nothing is written.
        NonFiniteError: If a step produced a non-finite number where the tables allow none; the
            run folder is written with the tables recorded before that batch and a manifest
            marked ``"status": "failed"``.
    """
    target = Path(os.path.abspath(out_dir))
    check_inputs_outside(target, scenario, base_dir, source)
    staging = prepare_target(target)
    try:
        return _run_into(scenario, Path(out_dir), staging, fmt, base_dir, source, progress)
    finally:
        if staging.exists():  # not swapped in: bad input, an interrupt or a bug
            shutil.rmtree(staging, ignore_errors=True)


def probe_steps(scenario: Scenario, source: str | None = None) -> list[dict[str, Any]]:
    """The ``steps`` rows of one step of the scenario on a small probe: the columns it records.

    The ``steps`` columns depend on the principals and channels only, not on the network or the
    values. The probe is the scenario on a ring (``k = 2``) just large enough that every principal
    has an agent (from ten nodes, doubling, at most the scenario's own size), without peer
    effects (so that no graph can make it unstable), regimes or a sweep grid, for one step, with
    no recorder.

    Args:
        scenario: The validated scenario.
        source: The scenario's file name, for an error the probe raises.

    Returns:
        The probe's ``steps`` rows (one per principal, then ``all``).
    """
    data = to_toml_dict(scenario)
    data["run"] = {**data.get("run", {}), "steps": 1, "agent_every": 0}
    data["network"] = {"topology": "ring", "n_agents": _probe_size(scenario), "k": 2}
    data["channels"] = [{**channel, "peer": 0.0} for channel in data["channels"]]
    data["regimes"] = []
    data["sweep"] = None
    probe = MesaOptModel(validate(data, source or "<steps probe>"))
    probe.step()
    return probe.last_steps


def _probe_size(scenario: Scenario) -> int:
    """The fewest nodes, from 10 doubling, that give every principal an agent.

    The doubling stops at the scenario's own size: if no ring below it gives every principal an
    agent, the probe takes that size (validation gives each principal an agent there; at least
    3, the smallest ring of degree 2). A scenario of fewer than ten agents is probed on ten.
    """
    shares = [p.share for p in scenario.principals]
    n = max(10, len(shares))
    while not min(split_by_share(shares, n)):
        if n >= scenario.network.n_agents:
            return max(3, scenario.network.n_agents)
        n *= 2
    return n


def steps_schema(scenario: Scenario) -> pa.Schema:
    """The schema of the scenario's ``steps`` table, as its first batch would set it.

    A run that records no ``steps`` row still writes the table with these columns.

    Args:
        scenario: The validated scenario.

    Returns:
        The schema of the :func:`probe_steps` rows.
    """
    return pa.Table.from_pylist(probe_steps(scenario)).schema


def check_inputs_outside(
    target: Path, scenario: Scenario, base_dir: Path | None, source: str | None
) -> None:
    """Refuse a run folder that holds the run's own scenario file or edge list.

    The run replaces its folder whole, so they would be deleted by the run they feed.

    Args:
        target: The run folder (absolute).
        scenario: The scenario (its edge list, if any, is an input).
        base_dir: Folder a relative edge-list path resolves against.
        source: The scenario file's name, if it names a file (``<default scenario>`` does not).

    Raises:
        ScenarioError: (key ``--out``) an input lies inside ``target``.
    """
    inputs = [Path(source)] if source else []  # "<default scenario>" names no file: skipped
    if scenario.network.topology == "edgelist" and scenario.network.path:
        edges = Path(scenario.network.path).expanduser()
        inputs.append(edges if edges.is_absolute() or base_dir is None else base_dir / edges)
    for file in inputs:
        try:  # RuntimeError: a symbolic-link loop (Python 3.12's resolve); the run names it
            inside = file.is_file() and target.resolve() in file.resolve().parents
        except (OSError, RuntimeError):
            continue
        if inside:
            raise ScenarioError(
                "--out",
                f"{target} holds {file.name}, an input of this run, and a run replaces its "
                "folder whole: name another folder",
            )


def _run_into(
    scenario: Scenario,
    target: Path,
    staging: Path,
    fmt: str,
    base_dir: Path | None,
    source: str | None,
    progress: bool,
) -> RunResult:
    """:func:`run_simulation` once the staging folder exists."""
    recorder = Recorder(staging, fmt)
    started = datetime.now(UTC)
    clock = time.perf_counter()
    # The kernels multiply (N, d) by (d, d) matrices: BLAS threads buy nothing there, and when
    # runs share the cores (sweep workers) they oversubscribe them badly (docs/performance.md).
    blas = _threadpools().limit(limits=1, user_api="blas")
    retain_freed_memory()  # large steps reuse freed pages (model.heap)
    try:
        model = MesaOptModel(scenario, base_dir=base_dir, recorder=recorder)
    except BaseException:
        recorder.discard()
        blas.restore_original_limits()
        raise
    build_seconds = time.perf_counter() - clock
    steps = scenario.run.steps
    failure: NonFiniteError | None = None
    bar = tqdm(
        total=steps,
        desc="simulating",
        unit="step",
        delay=1.0,
        disable=not progress or None,
        file=sys.stderr,
        leave=False,
    )
    try:
        with bar:
            for _ in range(steps):
                model.run_for(1)  # Mesa's clock: one step per time unit
                bar.update(1)
    except NonFiniteError as err:
        failure = err
        failure.explain(divergence_hint(model))
    except BaseException:
        recorder.discard()
        raise
    finally:
        blas.restore_original_limits()
    manifest = {
        "status": "failed" if failure else "complete",
        "mesaopt_version": package_versions()["mesaopt"],
        "scenario": to_toml_dict(scenario),
        "scenario_source": source,
        "seed": scenario.run.seed,
        "steps": steps,
        "n_agents": scenario.network.n_agents,
        "n_edges": model.network.n_edges,
        "agent_snapshots": model.snapshots_on,
        "versions": package_versions(),
        "blas": blas_kernels(),
        "git_revision": git_revision(),
        "command": sys.argv,
        "started_utc": started.isoformat(timespec="seconds"),
        "build_seconds": round(build_seconds, 4),
        "wall_seconds": round(time.perf_counter() - clock, 4),
    }
    if failure is not None:
        manifest["error"] = failure.one_line()
        manifest["failure"] = failure.record()
    if not recorder.has_columns("steps"):  # no step ran (run.steps = 0, or step 1 stopped)
        try:
            recorder.declare("steps", steps_schema(scenario))
        # The columns are a courtesy: a probe that cannot run must not lose the run's folder
        # (nor replace the error that stopped it); the table is then written without columns.
        except (ScenarioError, ArithmeticError, ValueError):
            pass
    manifest = recorder.close(manifest)
    swap_in(staging, Path(os.path.abspath(target)))
    if failure is not None:
        raise failure
    return RunResult(
        out_dir=target,
        paths={table: target / path.name for table, path in recorder.paths.items()},
        manifest=manifest,
        model=model,
        tables=recorder.tables,
    )
