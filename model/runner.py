"""One run end to end: scenario in, model stepped, tables and manifest out.

:func:`run_simulation` is what the command line (``run.py simulate``) and the batch tools call for
a single run. It owns the recorder, the progress bar and the manifest; the model owns the dynamics.
"""

from __future__ import annotations

import functools
import platform
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

from mesaopt.model.model import MesaOptModel
from mesaopt.model.recording import Recorder
from mesaopt.model.scenario import Scenario
from mesaopt.model.scenario_files import to_toml_dict

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
    """Run one scenario and write its tables and manifest to ``out_dir``.

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
        ScenarioError: If the scenario is invalid in a way only building the model reveals
            (edge list, peer-effect stability); nothing is written then.
    """
    out_dir = Path(out_dir)
    recorder = Recorder(out_dir, fmt)
    started = datetime.now(UTC)
    clock = time.perf_counter()
    # The kernels multiply (N, d) by (d, d) matrices: BLAS threads buy nothing there, and when
    # runs share the cores (sweep workers) they oversubscribe them badly (docs/performance.md).
    blas = _threadpools().limit(limits=1, user_api="blas")
    try:
        model = MesaOptModel(scenario, base_dir=base_dir, recorder=recorder)
    except Exception:
        recorder.discard()
        blas.restore_original_limits()
        raise
    build_seconds = time.perf_counter() - clock
    steps = scenario.run.steps
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
    finally:
        blas.restore_original_limits()
    manifest = {
        "mesaopt_version": package_versions()["mesaopt"],
        "scenario": to_toml_dict(scenario),
        "scenario_source": source,
        "seed": scenario.run.seed,
        "steps": steps,
        "n_agents": scenario.network.n_agents,
        "n_edges": model.network.n_edges,
        "agent_snapshots": model.snapshots_on,
        "versions": package_versions(),
        "git_revision": git_revision(),
        "command": sys.argv,
        "started_utc": started.isoformat(timespec="seconds"),
        "build_seconds": round(build_seconds, 4),
        "wall_seconds": round(time.perf_counter() - clock, 4),
    }
    manifest = recorder.close(manifest)
    return RunResult(
        out_dir=out_dir,
        paths=recorder.paths,
        manifest=manifest,
        model=model,
        tables=recorder.tables,
    )
