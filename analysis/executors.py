"""Executing the runs of a sweep: the worker-side task and the serial / Dask engines.

:func:`execute_run` is what a worker does for one run: skip it if its folder is complete, else run
it into a scratch folder ``DIR/.partial-runs/<run_id>-<random>/`` and rename that to
``DIR/runs/<run_id>/`` in one step (:func:`model.atomic_folder.swap_in`; so ``runs/`` holds only
whole run folders, with a ``manifest.json``, and failed runs' folders, with an ``error.txt``: only
that, or, for a run stopped by a non-finite number, its tables and a manifest marked ``failed``),
then write the run's rows of the tidy dataset (``DIR/steps/<run_id>.parquet``) and return a small
:class:`RunOutcome` (status, error, per-run reductions). The driver never sees a run's full tables.

:func:`open_engine` gives a ``map_unordered(fn, tasks)`` over one of:

* ``serial`` — in the driver process, one run after the other (debugging, tests);
* ``local`` — an embedded Dask ``LocalCluster``: one single-threaded process worker per core
  (``--workers`` to change), started and stopped with the sweep, dashboard off;
* ``scheduler`` — an existing Dask cluster at ``tcp://HOST:PORT`` (workers must import the
  installed project and see ``DIR`` on a shared filesystem);
* ``slurm`` — a ``dask_jobqueue.SLURMCluster`` scaled to ``--workers`` jobs (optional extra
  ``mesaopt[slurm]``; queue, account and walltime come from dask's jobqueue configuration).

Results are identical whatever the engine: every run's randomness comes from its own seed.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
import sys
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from mesaopt.analysis.stats import reduce_run
from mesaopt.analysis.sweep_design import RunSpec, column_value, run_id
from mesaopt.model.atomic_folder import is_disk_full, run_is_complete, swap_in
from mesaopt.model.errors import interruption
from mesaopt.model.finite import NonFiniteError

ENGINES = ("local", "serial")
#: Address schemes of Dask's communication layer a ``--scheduler`` may use.
SCHEDULER_SCHEMES = ("tcp", "tls", "ws", "wss", "ucx")
#: Seconds to wait for an existing scheduler to answer before giving up (nothing written yet).
CONNECT_TIMEOUT_S = 10
#: Scratch folder (in the sweep folder) where runs are written before being renamed into runs/.
TMP_DIR = ".partial-runs"
MapFn = Callable[[Callable[[Any], Any], list[Any]], Iterator[Any]]


@dataclass(frozen=True)
class RunTask:
    """Everything a worker needs for one run (picklable).

    Attributes:
        spec: The run's place in the design and its resolved scenario.
        out_dir: The sweep folder ``DIR``.
        base_dir: Folder that relative paths in the scenario resolve against.
        source: The base scenario's file name.
        param_types: Column type of each swept parameter (:func:`parameter_column_types`).
    """

    spec: RunSpec
    out_dir: str
    base_dir: str | None
    source: str
    param_types: dict[str, str] = field(default_factory=dict)


@dataclass
class RunOutcome:
    """What a worker hands back to the driver for one run (small).

    Attributes:
        run_id: The run's id.
        design_id: Its design point.
        replicate: Its replicate.
        seed: Its seed.
        status: ``"ok"`` (ran now), ``"skipped"`` (finished before) or ``"failed"``.
        error: The error's last line when failed.
        wall_seconds: Time the worker spent on it.
        reduction: Final-step and time-averaged metrics per principal (:func:`reduce_run`).
    """

    run_id: str
    design_id: int
    replicate: int
    seed: int
    status: str
    error: str | None = None
    wall_seconds: float = 0.0
    reduction: pd.DataFrame | None = None


def run_folder(out_dir: str | Path, run_id: str) -> Path:
    """The folder of run ``run_id`` in the sweep folder ``out_dir``."""
    return Path(out_dir) / "runs" / run_id


def is_complete(folder: Path, expected_id: str | None = None) -> bool:
    """True when a run folder holds a finished run (a manifest not marked ``failed``).

    With ``expected_id``, also that it is the run of that id: its manifest's scenario hashes to
    it (:func:`analysis.sweep_design.run_id`). A run simulated into a sweep's ``runs/<id>/`` by
    hand, or one of another scenario, is not that run: a resumed sweep runs it again instead of
    merging its tables.
    """
    if not run_is_complete(folder):
        return False
    if expected_id is None:
        return True
    try:
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        scenario = dict(manifest["scenario"])
    except (OSError, ValueError, KeyError, TypeError):  # unreadable: not the run asked for
        return False
    scenario.pop("sweep", None)  # a sweep's runs are resolved without one
    return run_id(scenario) == expected_id


def _write_tidy_part(task: RunTask, folder: Path, steps: pa.Table | None = None) -> pd.DataFrame:
    """Write the run's rows of the tidy dataset; return its ``steps`` table.

    Args:
        task: The run.
        folder: Its run folder.
        steps: Its ``steps`` table when the run was just made (else it is read from ``folder``).
    """
    spec = task.spec
    if steps is None:
        steps = pq.read_table(folder / "steps.parquet")
    n = steps.num_rows
    front: dict[str, pa.Array] = {
        "run_id": pa.array([spec.run_id] * n, pa.string()),
        "design_id": pa.array([spec.design_id] * n, pa.int64()),
        "replicate": pa.array([spec.replicate] * n, pa.int64()),
        "seed": pa.array([spec.seed] * n, pa.int64()),
    }
    for key, kind in task.param_types.items():
        value = column_value(spec.params[key], kind)
        front[key] = pa.array([value] * n)
    tidy = pa.table({**front, **{name: steps[name] for name in steps.column_names}})
    folder_out = Path(task.out_dir) / "steps"
    folder_out.mkdir(parents=True, exist_ok=True)
    final = folder_out / f"{spec.run_id}.parquet"
    tmp = folder_out / f".{spec.run_id}.tmp-{uuid.uuid4().hex[:8]}"
    pq.write_table(tidy, tmp, compression="zstd")
    os.replace(tmp, final)
    return steps.to_pandas()


def _attempt(task: RunTask, final: Path) -> tuple[str | None, pa.Table | None]:
    """Run into a temporary folder and rename it into place.

    Returns:
        The error (None on success) and the run's ``steps`` table when it is at hand in memory.
    """
    from mesaopt.model.runner import run_simulation
    from mesaopt.model.scenario_files import validate

    spec = task.spec
    final.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(task.out_dir) / TMP_DIR  # outside runs/: runs/ only ever holds whole folders
    scratch.mkdir(parents=True, exist_ok=True)
    tmp = scratch / f"{spec.run_id}-{uuid.uuid4().hex[:8]}"
    error: str | None = None
    steps: pa.Table | None = None
    try:
        scenario = validate(spec.scenario, task.source)
        result = run_simulation(
            scenario,
            tmp,
            base_dir=Path(task.base_dir) if task.base_dir else None,
            source=task.source,
            progress=False,
        )
        steps = result.tables.get("steps")
    except NonFiniteError as err:  # the run folder is written, its manifest marked failed
        (tmp / "error.txt").write_text(traceback.format_exc(), encoding="utf-8")
        error = f"{type(err).__name__}: {err}".splitlines()[0]
    except Exception as err:  # a failing run is recorded, the sweep goes on
        shutil.rmtree(tmp, ignore_errors=True)
        if is_disk_full(err):  # the machine's failure, not the run's: stop; a re-run resumes
            raise
        if (stop := interruption(err)) is not None:  # a Ctrl-C inside a kernel call: stop
            raise stop from None
        tmp.mkdir(parents=True)
        (tmp / "error.txt").write_text(traceback.format_exc(), encoding="utf-8")
        error = f"{type(err).__name__}: {err}".splitlines()[0]
    swap_in(tmp, final)  # in one step where the kernel can (model.atomic_folder)
    return error, steps


def execute_run(task: RunTask) -> RunOutcome:
    """Run one task on a worker (or skip it if finished) and return its outcome.

    Args:
        task: The run.

    Returns:
        Its outcome; errors in the model are caught and reported as ``"failed"``.
    """
    spec = task.spec
    clock = time.perf_counter()
    final = run_folder(task.out_dir, spec.run_id)
    status = "skipped"
    steps = None
    if not is_complete(final, spec.run_id):
        error, steps = _attempt(task, final)
        if error is not None:
            return RunOutcome(
                spec.run_id,
                spec.design_id,
                spec.replicate,
                spec.seed,
                "failed",
                error,
                time.perf_counter() - clock,
            )
        status = "ok"
    frame = _write_tidy_part(task, final, steps)
    return RunOutcome(
        spec.run_id,
        spec.design_id,
        spec.replicate,
        spec.seed,
        status,
        None,
        time.perf_counter() - clock,
        reduce_run(frame),
    )


def clean_temporary(out_dir: str | Path) -> int:
    """Remove temporary folders and files left by an interrupted sweep; return how many.

    Only call this while no sweep is writing to ``out_dir``.
    """
    removed = 0
    scratch = Path(out_dir) / TMP_DIR
    if scratch.is_symlink() or (scratch.exists() and not scratch.is_dir()):
        scratch.unlink()  # not the folder a sweep makes: every run would fail to make it
        removed += 1
    for pattern, where in (("*", TMP_DIR), (".*.tmp-*", "steps")):
        for path in (Path(out_dir) / where).glob(pattern):
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed += 1
    return removed


# --------------------------------------------------------------------------------- engines


def _serial_map(fn: Callable[[Any], Any], items: list[Any]) -> Iterator[Any]:
    for item in items:
        yield fn(item)


def _quiet_dask() -> None:
    """Dask's loggers in this process at ERROR: its INFO lines are not the command's.

    ``distributed`` sets its loggers' levels when first imported (``distributed`` at INFO),
    so it is imported first: set before, the level was undone, and a stop (Ctrl-C, SIGTERM to
    the process group) let the scheduler log "Batched Comm Closed" with a traceback.
    """
    import distributed  # noqa: F401

    for name in ("distributed", "dask", "tornado", "bokeh", "dask_jobqueue"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _on_one_thread(fn: Callable[[Any], Any], batch: list[Any]) -> list[Any]:
    """``[fn(item) for item in batch]``, the compiled kernels on one thread (one run per core)."""
    from mesaopt.model.parallel import kernel_threads

    with kernel_threads(1):
        return [fn(item) for item in batch]


#: Most runs per Dask task: batching cuts the scheduler's per-task work (~4 ms of driver CPU per
#: task, taken from the same cores as the runs), small batches keep the load balanced.
MAX_BATCH = 4
#: Batches per worker at least (so a slow batch cannot hold up the end of a sweep for long).
BATCHES_PER_WORKER = 8


def batches(items: list[Any], workers: int) -> list[list[Any]]:
    """Split ``items`` into consecutive batches for ``workers`` workers.

    Batches hold up to :data:`MAX_BATCH` items, fewer when there are not :data:`BATCHES_PER_WORKER`
    batches per worker; the last ``workers × MAX_BATCH`` items go one by one, so that the workers
    finish together.
    """
    workers = max(1, workers)
    size = max(1, min(MAX_BATCH, len(items) // (BATCHES_PER_WORKER * workers)))
    tail = len(items) if size == 1 else max(0, len(items) - workers * MAX_BATCH)
    head = [items[i : min(i + size, tail)] for i in range(0, tail, size)]
    return head + [[item] for item in items[tail:]]


def _dask_map(client: Any) -> MapFn:
    from distributed import as_completed

    def map_unordered(fn: Callable[[Any], Any], items: list[Any]) -> Iterator[Any]:
        workers = len(client.scheduler_info().get("workers", {})) or 1
        groups = batches(items, workers)
        keys = [
            f"mesaopt-{getattr(getattr(b[0], 'spec', None), 'run_id', n)}-{len(b)}"
            for n, b in enumerate(groups)
        ]
        futures = client.map(functools.partial(_on_one_thread, fn), groups, key=keys, pure=False)
        index = {future.key: group for future, group in zip(futures, groups, strict=True)}
        for future in as_completed(futures):
            try:
                results = future.result()
            except Exception as err:  # the worker died (KilledWorker) or could not import
                if is_disk_full(err):  # raised on purpose by _attempt: stop the sweep
                    raise
                results = [_lost(item, err) for item in index[future.key]]
            finally:
                future.release()
            yield from results

    return map_unordered


def _lost(task: Any, err: Exception) -> Any:
    """Outcome of a task whose worker failed outside :func:`execute_run`."""
    if isinstance(task, RunTask):
        spec = task.spec
        message = f"{type(err).__name__}: {err}".splitlines()[0]
        return RunOutcome(spec.run_id, spec.design_id, spec.replicate, spec.seed, "failed", message)
    raise err


#: Dask settings for the embedded LocalCluster, held for its life. Its dashboard is off, so the
#: statistical profiler, the host CPU and disk monitors and the active memory manager (no data
#: stays on the workers) only cost CPU, and the event-loop tick (a blocked-loop warning) and the
#: memory monitors need not wake every 20 and 100 ms. Measured on an idle 2-worker cluster over
#: 10 s: 0.78 s of CPU across driver and workers with only the profiler off, 0.11 s with all of
#: these (the cores the runs use; docs/sweeps.md). The workers also ignore Ctrl-C (the preload).
LOCAL_CLUSTER_CONFIG = {
    "distributed.worker.profile.enabled": False,
    "distributed.admin.system-monitor.host-cpu": False,
    "distributed.admin.system-monitor.disk": False,
    "distributed.admin.system-monitor.interval": "5s",
    "distributed.scheduler.active-memory-manager.start": False,
    "distributed.admin.tick.interval": "1s",
    "distributed.worker.memory.monitor-interval": "1s",
    # Ctrl-C reaches the workers too; the driver stops them (analysis/worker_setup.py)
    "distributed.worker.preload": ["mesaopt.analysis.worker_setup"],
}

#: Environment variable that overrides how local workers start (fork, spawn or forkserver).
START_METHOD_ENV = "MESAOPT_WORKER_START"
START_METHODS = ("fork", "spawn", "forkserver")


def worker_start_method(command_line: bool = False) -> str:
    """How local workers start: ``fork`` for a ``run.py`` command on Linux, else ``spawn``.

    A forked worker starts as a copy of the driver, which has already imported the model
    (:func:`_preload_runs`) and, in a process that ran a model before, loaded its compiled
    kernels; a spawned one starts a fresh interpreter that imports ``distributed`` and then the
    project before its first run, and takes longer to exit (BENCHMARKS.md, section "Sweeps").
    The project keeps no state a copy could share wrongly: its kernel thread pool is rebuilt in a
    forked child (:mod:`model.parallel`), and Numba's OpenMP layer, which forking breaks, is not
    used. But a fork copies whatever the calling process holds: a notebook's or an app's other
    threads (and their locks) and its memory (a worker would start at the notebook's size). So
    only the command line, whose process does nothing else, forks by default; library calls
    (``run_design`` from a notebook) keep Dask's default, ``spawn``, as do macOS and Windows.

    Args:
        command_line: The caller is a ``run.py`` command.

    Returns:
        ``MESAOPT_WORKER_START`` if set, else the default above.

    Raises:
        ValueError: If ``MESAOPT_WORKER_START`` is set to something else than a start method.
    """
    chosen = os.environ.get(START_METHOD_ENV, "").strip()
    if chosen:
        if chosen not in START_METHODS:
            raise ValueError(
                f"{START_METHOD_ENV}={chosen!r} is not a start method (one of "
                f"{', '.join(START_METHODS)})"
            )
        return chosen
    return "fork" if command_line and sys.platform.startswith("linux") else "spawn"


def _preload_runs() -> None:
    """Import what a run needs in the driver, so forked workers start with it imported."""
    import mesaopt.model.runner  # noqa: F401  (the model, its agents and the kernels' modules)


def default_workers() -> int:
    """Number of local workers: one per core."""
    return os.cpu_count() or 1


def check_scheduler_address(text: str) -> str:
    """Check a ``--scheduler`` address: ``SCHEME://HOST:PORT`` or ``HOST:PORT``.

    Args:
        text: The address as given.

    Returns:
        The address, unchanged.

    Raises:
        ScenarioError: (key ``--scheduler``) an unknown scheme, no host, or a port that is not a
            whole number in 1..65535.
    """
    from mesaopt.model.errors import ScenarioError

    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = "tcp", text
    if scheme not in SCHEDULER_SCHEMES:
        raise ScenarioError(
            "--scheduler",
            f"unknown scheme {scheme[:20]!r} (one of {', '.join(SCHEDULER_SCHEMES)}); "
            "expected tcp://HOST:PORT",
        )
    host, colon, port = rest.rpartition(":")
    if (
        not colon
        or not host
        or not (port.isascii() and port.isdigit())
        or not 1 <= int(port) <= 65535
    ):
        raise ScenarioError(
            "--scheduler", f"expected tcp://HOST:PORT with a port in 1..65535, got {text[:60]!r}"
        )
    return text


@contextmanager
def _connected(scheduler: str) -> Iterator[Any]:
    """A Dask client of the scheduler at ``scheduler``, or a one-line error if none answers."""
    from distributed import Client

    from mesaopt.model.errors import ScenarioError

    check_scheduler_address(scheduler)
    try:
        client = Client(scheduler, timeout=f"{CONNECT_TIMEOUT_S}s")
    except (OSError, TimeoutError, ValueError) as err:
        reason = str(err).splitlines()[0][:120] if str(err) else type(err).__name__
        raise ScenarioError(
            "--scheduler",
            f"no Dask scheduler answered at {scheduler} within {CONNECT_TIMEOUT_S} s ({reason})",
        ) from None
    with client:
        yield client


@contextmanager
def open_engine(
    engine: str = "local",
    *,
    scheduler: str | None = None,
    cluster: str | None = None,
    workers: int | None = None,
    deferred: list[Callable[[], None]] | None = None,
    start_method: str | None = None,
    warm_up: Callable[[], None] | None = None,
) -> Iterator[tuple[MapFn, str]]:
    """Start (or connect to) an execution engine for the length of a ``with`` block.

    Args:
        engine: ``"local"`` (embedded LocalCluster) or ``"serial"``; ignored when ``scheduler``
            or ``cluster`` is given.
        scheduler: Address of an existing Dask scheduler (``tcp://HOST:PORT``).
        cluster: ``"slurm"`` to start a dask-jobqueue SLURMCluster.
        workers: Local worker processes (default: one per core) or SLURM jobs (default 1).
        deferred: If given, stopping a LocalCluster (its workers take ~1 s to exit) is appended
            to this list instead of done when the block ends; the caller must call it (e.g. in
            a background thread while it writes its tables).
        start_method: How LocalCluster workers start (``fork``, ``spawn``, ``forkserver``);
            default :func:`worker_start_method`.
        warm_up: Called in this process before forked LocalCluster workers start (a small run
            that loads or compiles the kernels the runs need), so that they inherit the
            compiled kernels instead of each compiling them at once on a first run.

    Yields:
        ``(map_unordered, description)``: ``map_unordered(fn, items)`` yields ``fn(item)`` for
        every item as runs complete, in any order.

    Raises:
        ValueError: On an unknown engine or cluster kind.
        ScenarioError: (key ``--scheduler``) a malformed address, or no scheduler answering
            there within :data:`CONNECT_TIMEOUT_S` seconds.
        ImportError: If ``--cluster slurm`` is asked for without dask-jobqueue.
    """
    if scheduler is None and cluster is None and engine == "serial":
        yield _serial_map, "serial (in this process)"
        return
    if scheduler is None and cluster is None and engine != "local":
        raise ValueError(f"unknown engine {engine!r} (one of {', '.join(ENGINES)})")
    _quiet_dask()
    from distributed import Client

    if scheduler is not None:
        with _connected(scheduler) as client:
            n = len(client.scheduler_info().get("workers", {}))
            yield _dask_map(client), f"Dask scheduler {scheduler} ({n} workers now)"
        return
    if cluster is not None:
        if cluster != "slurm":
            raise ValueError(f"unknown cluster {cluster!r} (one of slurm)")
        try:
            from dask_jobqueue import SLURMCluster
        except ImportError:
            raise ImportError(
                "--cluster slurm needs dask-jobqueue: pip install 'mesaopt[slurm]'"
            ) from None
        with SLURMCluster(cores=1, processes=1, memory="2GB") as slurm:
            slurm.scale(jobs=workers or 1)
            with Client(slurm) as client:
                yield _dask_map(client), f"SLURM via dask-jobqueue ({workers or 1} jobs)"
        return
    n = workers or default_workers()
    with local_cluster(n, start_method, warm_up) as local:
        try:
            with Client(local) as client:
                yield _dask_map(client), f"Dask LocalCluster ({n} process workers × 1 thread)"
        finally:
            if deferred is None:
                local.close()
            else:
                deferred.append(local.close)


@contextmanager
def local_cluster(
    workers: int | None = None,
    start_method: str | None = None,
    warm_up: Callable[[], None] | None = None,
) -> Iterator[Any]:
    """The embedded LocalCluster of a sweep (:func:`open_engine`) and of the experiments.

    Started with :data:`LOCAL_CLUSTER_CONFIG`, set for the cluster's life (a restarted worker
    starts alike); not closed when the block ends: the caller closes it (a sweep in the
    background while it writes its tables).

    Args:
        workers: Worker processes (default: one per core), one thread each.
        start_method: How workers start (default :func:`worker_start_method`).
        warm_up: Called before forked workers start (see :func:`open_engine`).

    Yields:
        The started ``distributed.LocalCluster``.

    Raises:
        ValueError: On an unknown start method.
    """
    import dask
    from distributed import LocalCluster

    method = start_method or worker_start_method()
    if method not in START_METHODS:
        raise ValueError(f"unknown start method {method!r} (one of {', '.join(START_METHODS)})")
    if method == "fork":
        _preload_runs()
        if warm_up is not None:
            warm_up()
    options = {"distributed.worker.multiprocessing-method": method, **LOCAL_CLUSTER_CONFIG}
    with dask.config.set(options):
        yield LocalCluster(
            n_workers=workers or default_workers(),
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            # The scheduler's HTTP server (health and metrics routes, no dashboard) would listen
            # on 0.0.0.0:8787 and warn, on stderr, when a second cluster (a concurrent sweep)
            # finds the port taken: on this machine only, on a free port, quietly.
            scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
            # A task that raises (a full disk) reaches the driver, which reports it in one
            # line; the worker would also log it with its traceback.
            silence_logs=logging.CRITICAL,
        )
