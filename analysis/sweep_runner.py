"""One sweep end to end: plan the runs, execute them on an engine, write the sweep's tables.

:func:`run_design` is what ``run.py sweep`` and ``run.py sensitivity`` call. It validates every
run before anything is written (a bad design point is a :class:`~model.errors.ScenarioError`),
writes ``DIR/sweep.json``, clears what an interrupted sweep left half-written, runs what is not
finished yet through :mod:`analysis.executors` (showing runs done/total, failures and an ETA on
stderr), and finally writes, from the workers' small outcomes only:

* ``DIR/runs.parquet`` — one row per run: ids, seed, parameters, status, error, seconds;
* ``DIR/run_metrics.parquet`` — per run and principal, the ``final`` and ``mean`` of every metric;
* ``DIR/summary.parquet`` and ``summary.csv`` — per design point, principal, statistic and metric:
  n, mean, sd and the 95% t interval (:mod:`analysis.stats`).

The tidy dataset ``DIR/steps/`` (one Parquet file per run, written by the workers) is pruned of
runs that are not part of the current design, so that it always reads as this sweep's dataset.
The layout is in docs/sweeps.md.
"""

from __future__ import annotations

import json
import shutil
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from numbers import Integral
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm import tqdm

from mesaopt.analysis.executors import (
    RunOutcome,
    RunTask,
    clean_temporary,
    execute_run,
    open_engine,
)
from mesaopt.analysis.run_folder import REPORT_MARK
from mesaopt.analysis.stats import summarize
from mesaopt.analysis.sweep_design import (
    Design,
    RunSpec,
    column_value,
    design_record,
    grid_design,
    parameter_column_types,
    plan_runs,
    write_design,
)
from mesaopt.model.atomic_folder import check_sweep_folder
from mesaopt.model.recording import atomic_path
from mesaopt.model.scenario_files import load_overridden, validate


@dataclass
class SweepResult:
    """What a sweep did.

    Attributes:
        out_dir: The sweep folder.
        design: The design.
        runs: The planned runs.
        outcomes: One outcome per run, in plan order.
        summary: The summary table (also in ``summary.parquet``).
        run_metrics: Per-run reductions with run columns (also in ``run_metrics.parquet``).
        wall_seconds: Driver wall time.
    """

    out_dir: Path
    design: Design
    runs: list[RunSpec]
    outcomes: list[RunOutcome]
    summary: pd.DataFrame
    run_metrics: pd.DataFrame
    wall_seconds: float

    def count(self, status: str) -> int:
        """Number of runs with this status (``ok``, ``skipped``, ``failed``)."""
        return sum(o.status == status for o in self.outcomes)

    @property
    def failed(self) -> list[RunOutcome]:
        """The failed runs."""
        return [o for o in self.outcomes if o.status == "failed"]


@dataclass(frozen=True)
class BaseScenario:
    """A scenario file's raw data with overrides applied, and where it came from.

    Attributes:
        data: Raw data (validated once; each run re-validates with its point applied).
        source: File name for messages.
        base_dir: Folder relative paths resolve against.
    """

    data: dict[str, Any]
    source: str
    base_dir: Path | None


def load_base(path: str | Path | None, overrides: list[str]) -> BaseScenario:
    """Read a scenario file and apply ``--set`` overrides.

    The result is validated per design point (a grid may supply a key the file lacks).

    Args:
        path: The scenario file, or None for the embedded default.
        overrides: ``dotted.key=value`` assignments.

    Returns:
        The base scenario.

    Raises:
        ScenarioError: On any bad input, naming the key and the file.
    """
    data, source = load_overridden(path, overrides)
    return BaseScenario(data, source, Path(path).parent if path is not None else None)


def sweep_design(
    base: BaseScenario,
    grid: dict[str, list[Any]],
    replicates: int | None = None,
    seed: int | None = None,
) -> Design:
    """The design of ``run.py sweep``: the scenario's ``[sweep]`` section with CLI entries on top.

    Args:
        base: The base scenario (its ``sweep`` section, if any, is read).
        grid: ``--grid`` values per key; they replace the file's entry for the same key.
        replicates: ``--replicates`` (default: the file's, else 1).
        seed: Sweep seed (default: ``sweep.seed``, else ``run.seed``).

    Returns:
        The full-factorial design.
    """
    # Only [run] and [sweep] matter here; the rest is validated per design point.
    stub = {
        "run": base.data.get("run", {}),
        "sweep": base.data.get("sweep"),
        "channels": [{"name": "stub"}],
        "principals": [{"name": "stub"}],
    }
    scenario = validate(stub, base.source)
    section = scenario.sweep
    merged: dict[str, Any] = dict(section.grid) if section else {}
    merged.update(grid)
    if replicates is None:
        replicates = section.replicates if section else 1
    if seed is None:
        seed = section.seed if section and section.seed is not None else scenario.run.seed
    # name what the user wrote: the command line's --grid, else the file's [sweep] grid
    too_many = "--grid" if grid else "sweep.grid" if merged else None
    return grid_design(merged, replicates, seed, source=base.source, too_many_key=too_many)


def _progress_bar(total: int, enabled: bool, desc: str) -> tqdm:
    return tqdm(
        total=total,
        desc=desc,
        unit="run",
        file=sys.stderr,
        disable=not enabled or None,  # None: on a terminal only, as the run's own bar
        dynamic_ncols=True,
        bar_format="{desc}: {n_fmt}/{total_fmt} runs |{bar}| {elapsed}, ETA {remaining}{postfix}",
    )


def _tables(
    design: Design, runs: list[RunSpec], outcomes: dict[str, RunOutcome]
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Build the runs index, the per-run metrics and the summary from the outcomes."""
    types = parameter_column_types(design)
    index_rows = []
    metric_frames = []
    for spec in runs:
        outcome = outcomes[spec.run_id]
        params = {key: column_value(spec.params[key], types[key]) for key in design.parameters}
        head = {
            "run_id": spec.run_id,
            "design_id": spec.design_id,
            "replicate": spec.replicate,
            "seed": spec.seed,
            **params,
        }
        index_rows.append(
            {
                **head,
                "status": outcome.status,
                "error": outcome.error,
                "wall_seconds": round(outcome.wall_seconds, 4),
            }
        )
        if outcome.reduction is not None:
            frame = outcome.reduction.copy()
            for position, (key, value) in enumerate(head.items()):
                frame.insert(position, key, value)
            metric_frames.append(frame)
    index = pd.DataFrame(index_rows)
    run_metrics = pd.concat(metric_frames, ignore_index=True) if metric_frames else pd.DataFrame()
    summary = summarize(run_metrics, design.parameters) if metric_frames else pd.DataFrame()
    return index, run_metrics, summary


class _Closing:
    """Runs closing functions in a background thread; :meth:`join` waits and re-raises."""

    def __init__(self, closers: list[Callable[[], None]]):
        self._closers = closers
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._close, name="mesaopt-engine-close")
        self._thread.start()

    def _close(self) -> None:
        for close in self._closers:
            try:
                close()
            except BaseException as err:  # handed to the caller by join()
                self._error = self._error or err

    def join(self) -> None:
        """Wait until everything is closed; raise the first error of closing."""
        self._thread.join()
        if self._error is not None:
            raise self._error


#: What ``run.py export`` writes into a sweep folder beside its tables (the tables that are
#: the sweep's own, ``summary.csv`` among them, are rewritten by every sweep).
EXPORTED_FILES = (
    "steps.csv",
    "steps.parquet",
    "network.csv",
    "network.parquet",
    "runs.csv",
    "run_metrics.csv",
)
#: What ``run.py sensitivity`` computes from a design's runs (it writes them again, or removes
#: them, after its runs: see ``run.py``).
SENSITIVITY_FILES = ("sensitivity.parquet", "sensitivity.csv")


def remove_derived(out_dir: Path, *, design_changed: bool) -> list[str]:
    """Remove what was derived from a sweep folder's earlier tables: exports and its report.

    Called when a sweep is about to change the tables (another design, or a run added), so that
    no file in the folder describes runs the folder no longer holds, or misses runs it now
    holds. ``DIR/report`` is removed only if it holds the report's mark (a folder of the user's
    of that name stays); sensitivity indices only when the design changed (they belong to
    another design then). Links are left alone, and nothing outside ``out_dir`` is touched.

    Args:
        out_dir: The sweep folder.
        design_changed: The design differs from the one the folder held.

    Returns:
        The names removed.
    """
    removed = []
    for name in EXPORTED_FILES + (SENSITIVITY_FILES if design_changed else ()):
        path = out_dir / name
        if path.is_file() and not path.is_symlink():
            path.unlink()
            removed.append(name)
    report = out_dir / "report"
    if not report.is_symlink() and (report / REPORT_MARK).is_file():
        shutil.rmtree(report)
        removed.append("report/")
    return removed


def _same_design(earlier: Any, record: dict[str, Any]) -> bool:
    """Whether ``sweep.json`` already held this design (the scenario's path as typed aside)."""
    if not isinstance(earlier, dict):
        return False
    now = json.loads(json.dumps(record, default=str))
    return {k: v for k, v in earlier.items() if k != "scenario_source"} == {
        k: v for k, v in now.items() if k != "scenario_source"
    }


def _earlier_record(path: Path) -> Any:
    """The ``sweep.json`` an earlier sweep wrote into the folder (None if none can be read)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _prune_steps(out_dir: Path, keep: set[str]) -> None:
    """Remove tidy-dataset files of runs that are not in the current design."""
    for path in (out_dir / "steps").glob("*.parquet"):
        if path.stem not in keep:
            path.unlink(missing_ok=True)


def warm_kernels(tasks: list[RunTask]) -> None:
    """Load (or, on a first run, compile) the kernels of the sweep's runs, in this process.

    Forked workers inherit them: with a cold cache every worker would otherwise compile the same
    kernels at the same time on its first run: the CPU of one compile per worker, which on an
    idle machine with a core per worker costs no wall-clock time but on a shared one does
    (docs/sweeps.md has the measurements). The warm-up is the ``steps`` probe of the first run's
    scenario (:func:`model.runner.probe_steps`: one step on a small ring, the kinds and channels
    of the runs), whether or not that run is finished: telling would read every finished run's
    manifest once more before the workers do. It is only a head start: a probe that fails says
    nothing about the run, which reports its own error.

    Args:
        tasks: The sweep's runs.
    """
    if not tasks:
        return
    from mesaopt.model.runner import probe_steps
    from mesaopt.model.scenario_files import validate

    first = tasks[0]
    try:
        probe_steps(validate(first.spec.scenario, first.source), first.source)
    except Exception:  # a head start only: the run reports its own error
        pass


def run_design(
    base: BaseScenario,
    design: Design,
    out_dir: str | Path,
    *,
    engine: str = "local",
    scheduler: str | None = None,
    cluster: str | None = None,
    workers: int | None = None,
    progress: bool = True,
    extra_record: dict[str, Any] | None = None,
    start_method: str | None = None,
) -> SweepResult:
    """Run every run of a design that is not finished yet and write the sweep's tables.

    Args:
        base: The base scenario.
        design: Design points and replicate seeds.
        out_dir: The sweep folder ``DIR``.
        engine: ``"local"`` or ``"serial"`` (see :func:`analysis.executors.open_engine`).
        scheduler: Address of an existing Dask scheduler.
        cluster: ``"slurm"`` for dask-jobqueue.
        workers: Local worker processes or SLURM jobs.
        progress: Show progress on stderr.
        extra_record: More entries for ``sweep.json`` (e.g. the sensitivity problem).
        start_method: How LocalCluster workers start (default:
            :func:`analysis.executors.worker_start_method`, ``spawn`` unless overridden).

    Returns:
        The sweep's result (failed runs are in it; the caller decides the exit status).

    Raises:
        ScenarioError: If a design point is invalid (nothing is written then).
    """
    clock = time.perf_counter()
    out_dir = Path(out_dir)
    check_sweep_folder(out_dir)  # a file, an unwritable place, someone else's folder: refused
    runs = plan_runs(base.data, design, base.source, base.base_dir)
    types = parameter_column_types(design)
    record = design_record(design, runs, base.source)
    record.update(extra_record or {})
    base_dir = str(base.base_dir.resolve()) if base.base_dir is not None else None
    tasks = [RunTask(spec, str(out_dir.resolve()), base_dir, base.source, types) for spec in runs]

    outcomes: dict[str, RunOutcome] = {}
    deferred: list[Callable[[], None]] = []  # closing the LocalCluster, done while writing tables
    try:
        with open_engine(
            engine,
            scheduler=scheduler,
            cluster=cluster,
            workers=workers,
            deferred=deferred,
            start_method=start_method,
            warm_up=lambda: warm_kernels(tasks),
        ) as (map_unordered, description):
            # Only now, with the engine running (a scheduler answered), is anything written.
            (out_dir / "runs").mkdir(parents=True, exist_ok=True)
            clean_temporary(out_dir)
            # Exports and the report describe the tables as they were: gone once the design
            # changes, or (below) once a run is added.
            stale = not _same_design(_earlier_record(out_dir / "sweep.json"), record)
            if stale:
                remove_derived(out_dir, design_changed=True)
            write_design(out_dir / "sweep.json", record)
            if progress:
                print(
                    f"mesaopt sweep: {len(design.points)} design points × {len(design.seeds)} "
                    f"replicates = {len(runs)} runs on {description} → {out_dir}/",
                    file=sys.stderr,
                )
            counts = {"ok": 0, "skipped": 0, "failed": 0}
            with _progress_bar(len(tasks), progress, "sweep") as bar:
                for outcome in map_unordered(execute_run, tasks):
                    outcomes[outcome.run_id] = outcome
                    counts[outcome.status] += 1
                    if outcome.status == "ok" and not stale:
                        stale = True
                        remove_derived(out_dir, design_changed=False)
                    bar.set_postfix_str(
                        f"{counts['failed']} failed, {counts['skipped']} already done",
                        refresh=False,
                    )
                    bar.update(1)
    except BaseException:
        for close in deferred:
            close()
        raise
    closing = _Closing(deferred)
    try:
        _prune_steps(out_dir, {spec.run_id for spec in runs})
        index, run_metrics, summary = _tables(design, runs, outcomes)
        for frame, name in (
            (index, "runs.parquet"),
            (run_metrics, "run_metrics.parquet"),
            (summary, "summary.parquet"),
            (summary, "summary.csv"),
        ):
            with atomic_path(out_dir / name) as tmp:
                if name.endswith(".csv"):
                    frame.to_csv(tmp, index=False)
                else:
                    frame.to_parquet(tmp, index=False)
    finally:
        closing.join()
    return SweepResult(
        out_dir=out_dir,
        design=design,
        runs=runs,
        outcomes=[outcomes[spec.run_id] for spec in runs],
        summary=summary,
        run_metrics=run_metrics,
        wall_seconds=time.perf_counter() - clock,
    )


def run_sweep(
    scenario: str | Path | None,
    out_dir: str | Path,
    *,
    grid: dict[str, list[Any]] | None = None,
    replicates: int | None = None,
    seed: int | None = None,
    overrides: list[str] | None = None,
    engine: str = "local",
    workers: int | None = None,
    scheduler: str | None = None,
    progress: bool = False,
) -> SweepResult:
    """Run a full-factorial sweep of a scenario file from Python, as ``run.py sweep`` does.

    Args:
        scenario: The scenario file (None: the embedded default); its ``[sweep]`` section, if any,
            is the base grid.
        out_dir: The sweep folder; finished runs in it are skipped (the sweep resumes).
        grid: Values per dotted key (e.g. ``{"principals.0.selection.n": [1, 4, 16]}``); they
            replace the file's entry for the same key.
        replicates: Replicates per design point (default: the file's, else 1).
        seed: Sweep seed (default: ``sweep.seed``, else ``run.seed``).
        overrides: ``dotted.key=value`` assignments applied to the base scenario first.
        engine: ``"local"`` (a Dask LocalCluster) or ``"serial"`` (in this process).
        workers: Local worker processes.
        scheduler: Address of an existing Dask scheduler.
        progress: Show progress on stderr.

    Returns:
        The sweep's result; :func:`analysis.run_folder.read_sweep` reads the folder back.

    Raises:
        ScenarioError: On a bad file, override or design point (nothing is written then).
        TypeError: If an argument has the wrong type (``replicates="2"``, ``overrides="k=v"``).
    """
    for name, value in (("replicates", replicates), ("seed", seed), ("workers", workers)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, Integral)):
            raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r:.40}")
    if grid is not None and not isinstance(grid, dict):
        raise TypeError(f"grid must be a dict of key: values, got {type(grid).__name__}")
    if isinstance(overrides, str | bytes):
        raise TypeError(f"overrides must be a list of 'key=value' strings, got {overrides!r:.80}")
    base = load_base(scenario, list(overrides or []))
    design = sweep_design(base, dict(grid or {}), replicates, seed)
    return run_design(
        base,
        design,
        out_dir,
        engine=engine,
        scheduler=scheduler,
        workers=workers,
        progress=progress,
    )
