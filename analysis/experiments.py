"""The essay's claims as experiments: run every arm through the sweep engine, judge every claim.

The shipped experiments (:data:`EXPERIMENTS`) are the files in ``scenarios/experiments/``
(:mod:`analysis.experiment_files`; what each compares and why is in docs/experiments.md).
:func:`run_experiments` runs each arm a claim needs as one sweep (:func:`analysis.sweep_runner.
run_design`, so serial, on a local Dask cluster or on an existing one, and resumable: finished
runs are skipped) into ``OUT/<experiment>/<arm>/``. Every arm uses the same replicate seeds, so a
claim's effect is paired by seed (:func:`analysis.verdicts.paired_verdict`). The verdict table goes
to ``OUT/verdicts.csv`` and ``OUT/verdicts.parquet``, and a report page with one figure per
experiment to ``OUT/report/index.html`` (:mod:`analysis.experiment_report`).
``OUT/experiments.json`` marks the folder as ours: a folder that is not empty and holds no such
mark is refused (:func:`model.atomic_folder.check_experiments_folder`).

Sizes: the file's ``quick`` size by default, ``full`` with ``full=True``. The environment
variable ``MESAOPT_EXPERIMENT_SIZE`` (e.g. ``replicates=2,n_agents=20``) or the ``size`` keyword
replaces both, for tests and trials; the size used is recorded in ``OUT/<experiment>/size.json``.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mesaopt import __version__
from mesaopt.analysis.experiment_files import (
    MAX_REPLICATES,
    Claim,
    Experiment,
    Size,
    check_experiment,
    read_experiment,
)
from mesaopt.analysis.sweep_runner import run_design
from mesaopt.analysis.verdicts import paired_verdict
from mesaopt.model.atomic_folder import EXPERIMENTS_MARK, check_experiments_folder
from mesaopt.model.errors import ScenarioError
from mesaopt.model.recording import atomic_path, write_json_atomic

#: Where the shipped experiment files are.
EXPERIMENT_DIR = Path(__file__).resolve().parents[1] / "scenarios" / "experiments"
#: Shipped experiments in the order they run and are reported.
ORDER = (
    "overoptimization",
    "regime_change",
    "superoptimizer",
    "federated",
    "trans",
    "deception",
    "network",
)
#: Environment variable that overrides the size of every experiment (tests, trials).
SIZE_ENV = "MESAOPT_EXPERIMENT_SIZE"
#: Columns of the verdict table: the required ones first.
VERDICT_COLUMNS = (
    "experiment",
    "claim",
    "metric",
    "effect",
    "ci_low",
    "ci_high",
    "n",
    "verdict",
    "expected_sign",
    "arms",
    "treatment_mean",
    "control_mean",
)


def _shipped() -> dict[str, Experiment]:
    return {name: read_experiment(EXPERIMENT_DIR / f"{name}.toml") for name in ORDER}


#: The shipped experiments by name.
EXPERIMENTS: dict[str, Experiment] = _shipped()


def parse_size(text: str, source: str = SIZE_ENV) -> Size:
    """Parse ``replicates=R[,n_agents=N][,steps=T]``.

    Args:
        text: The text.
        source: Where it came from, for messages.

    Returns:
        The size.

    Raises:
        ScenarioError: On an unknown or repeated key, a value that is not a whole number, fewer
            than 2 or more than :data:`~analysis.experiment_files.MAX_REPLICATES` replicates.
    """
    values: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, raw = part.partition("=")
        key = key.strip()
        if not sep or key not in ("replicates", "n_agents", "steps"):
            raise ScenarioError(source, f"expected replicates=R,n_agents=N,steps=T, got {part!r}")
        if key in values:  # two values for one key: which one was meant?
            raise ScenarioError(f"{source} {key}", "given twice")
        try:
            values[key] = int(raw)
        except ValueError:
            raise ScenarioError(
                f"{source} {key}", f"expected a whole number, got {raw!r}"
            ) from None
    if values.get("replicates", 0) < 2:
        raise ScenarioError(f"{source} replicates", "needs at least 2 replicates (a paired CI)")
    if values["replicates"] > MAX_REPLICATES:
        raise ScenarioError(
            f"{source} replicates",
            f"expected at most {MAX_REPLICATES:,}, got {values['replicates']:,}",
        )
    for key in ("n_agents", "steps"):
        if key in values and values[key] < 1:
            raise ScenarioError(f"{source} {key}", f"expected a number >= 1, got {values[key]}")
    return Size(values["replicates"], values.get("n_agents"), values.get("steps"))


def _select(names: list[str] | tuple[str, ...] | None) -> list[Experiment]:
    """The experiments to run: shipped ones by name, others by the path of their file."""
    if not names:
        return [EXPERIMENTS[name] for name in ORDER]
    chosen: dict[str, Experiment] = {}
    for name in dict.fromkeys(names):
        if name in EXPERIMENTS:
            experiment = EXPERIMENTS[name]
        elif name.endswith(".toml") or Path(name).is_file():
            experiment = read_experiment(name)
        else:
            raise ScenarioError(
                "experiments",
                f"no experiment {name!r} (one of {', '.join(ORDER)}, or an experiment file)",
            )
        if experiment.name in chosen:
            raise ScenarioError("experiments", f"two experiments named {experiment.name!r}")
        chosen[experiment.name] = experiment
    return list(chosen.values())


def _size_of(experiment: Experiment, full: bool, size: Size | None) -> Size:
    if size is not None:
        return size
    return experiment.sizes["full" if full else "quick"]


# ----------------------------------------------------------------------------- claims


def arm_steps(folder: Path, columns: list[str]) -> pd.DataFrame:
    """The tidy ``steps`` dataset of an arm's sweep folder (only the given metric columns)."""
    wanted = ["design_id", "seed", "step", "principal", *dict.fromkeys(columns)]
    parts = sorted((folder / "steps").glob("*.parquet"))
    if not parts:  # every run of the arm failed: no rows, but numeric columns
        types = {"design_id": "int64", "seed": "int64", "step": "int64", "principal": "object"}
        return pd.DataFrame({c: pd.Series(dtype=types.get(c, "float64")) for c in wanted})
    return pd.concat([pd.read_parquet(p, columns=wanted) for p in parts], ignore_index=True)


def _window_mean(
    steps: pd.DataFrame, metric: str, principal: str, window: tuple[int, int] | None
) -> pd.Series:
    rows = steps[steps["principal"] == principal]
    if window is not None:
        rows = rows[(rows["step"] >= window[0]) & (rows["step"] <= window[1])]
    return rows.groupby(["design_id", "seed"])[metric].mean()


def run_quantity(steps: pd.DataFrame, claim: Claim) -> pd.Series:
    """A claim's per-run quantity for every run of one arm, indexed by ``(design_id, seed)``.

    Args:
        steps: The arm's tidy ``steps`` dataset (:func:`arm_steps`).
        claim: The claim.

    Returns:
        The window mean of the metric, minus the versus principal's and the versus window's.
    """
    quantity = _window_mean(steps, claim.metric, claim.principal, claim.steps)
    if claim.versus_principal is not None:
        quantity = quantity - _window_mean(steps, claim.metric, claim.versus_principal, claim.steps)
    if claim.versus_steps is not None:
        quantity = quantity - _window_mean(steps, claim.metric, claim.principal, claim.versus_steps)
    return quantity


def _at(quantity: pd.Series, design_id: int) -> pd.Series:
    """The quantity at one design point, indexed by seed (empty if that point has no runs)."""
    if quantity.empty or design_id not in quantity.index.get_level_values("design_id"):
        return pd.Series(dtype=float)
    return quantity.xs(design_id, level="design_id")


def claim_pairs(
    experiment: Experiment, claim: Claim, quantities: dict[str, pd.Series]
) -> tuple[pd.Series, pd.Series]:
    """The paired treatment and control values of a claim, indexed by seed (inner join).

    Args:
        experiment: The experiment.
        claim: One of its claims.
        quantities: :func:`run_quantity` of the claim per arm.

    Returns:
        ``(treatment, control)`` on the seeds both have.
    """
    ids = (
        {value: i for i, value in enumerate(experiment.sweep_values)}
        if experiment.sweep_key
        else {None: 0}
    )

    def value_of(arm: str) -> pd.Series:
        quantity = quantities[arm]
        if claim.along is not None:
            return _at(quantity, ids[claim.along[1]]) - _at(quantity, ids[claim.along[0]])
        return _at(quantity, ids[claim.at] if experiment.sweep_key else 0)

    if claim.control is None:  # a curve claim within one arm: the far end against the near end
        quantity = quantities[claim.arm]
        treatment = _at(quantity, ids[claim.along[1]])
        control = _at(quantity, ids[claim.along[0]])
    else:
        treatment, control = value_of(claim.arm), value_of(claim.control)
    joined = pd.concat({"t": treatment, "c": control}, axis=1, join="inner").sort_index()
    return joined["t"], joined["c"]


def judge(experiment: Experiment, folder: Path) -> list[dict[str, Any]]:
    """Verdict rows of every claim of an experiment whose arms ran into ``folder/<arm>/``.

    Args:
        experiment: The experiment.
        folder: ``OUT/<experiment>``.

    Returns:
        One row per claim with the columns of :data:`VERDICT_COLUMNS`.
    """
    rows = []
    cache: dict[str, pd.DataFrame] = {}
    metrics = sorted({claim.metric for claim in experiment.claims})
    for claim in experiment.claims:
        quantities = {}
        for arm in filter(None, (claim.arm, claim.control)):
            if arm not in cache:
                cache[arm] = arm_steps(folder / arm, metrics)
            quantities[arm] = run_quantity(cache[arm], claim)
        treatment, control = claim_pairs(experiment, claim, quantities)
        verdict = paired_verdict(treatment.to_numpy(), control.to_numpy(), claim.expected_sign)
        arms = (
            f"{claim.arm}: {claim.along[1]} − {claim.along[0]}"
            if claim.control is None
            else claim.arms_text()
        )
        rows.append(
            {
                "experiment": experiment.name,
                "claim": claim.claim,
                "metric": claim.describe(experiment.sweep_key),
                "effect": verdict.effect,
                "ci_low": verdict.ci_low,
                "ci_high": verdict.ci_high,
                "n": verdict.n,
                "verdict": verdict.verdict,
                "expected_sign": claim.expected_sign,
                "arms": arms,
                "treatment_mean": _mean_of_finite(treatment),
                "control_mean": _mean_of_finite(control),
            }
        )
    return rows


def _mean_of_finite(values: Any) -> float:
    """The mean of the values that are not NaN; NaN when none is (no warning)."""
    array = np.asarray(values, dtype=float)
    array = array[~np.isnan(array)]
    return float(array.mean()) if len(array) else float("nan")


# ----------------------------------------------------------------------------- running


def run_experiments(
    names: list[str] | tuple[str, ...] | None = None,
    out: str | Path = "experiments",
    *,
    full: bool = False,
    scheduler: str | None = None,
    workers: int | None = None,
    progress: bool = True,
    engine: str = "local",
    size: Size | None = None,
    start_method: str | None = None,
) -> pd.DataFrame:
    """Run the experiments' arms through the sweep engine and judge every claim.

    Every experiment and arm is validated at the size used before anything is written. Arms
    run into ``out/<experiment>/<arm>/`` (a sweep folder: a second call after an interruption
    reuses the finished runs); the verdicts go to ``out/verdicts.csv`` and
    ``out/verdicts.parquet``, the report page to ``out/report/index.html``.

    Args:
        names: Experiment names (default: all seven, in :data:`ORDER`), or paths of experiment
            files of your own.
        out: The output folder.
        full: Publication size (each file's ``full`` size) instead of ``quick``.
        scheduler: Address of an existing Dask scheduler (``tcp://HOST:PORT``).
        workers: Local worker processes (default one per core).
        progress: Show progress on stderr.
        engine: ``"local"`` (Dask LocalCluster) or ``"serial"`` (in this process).
        size: Replaces every experiment's size (else ``MESAOPT_EXPERIMENT_SIZE`` if set).
        start_method: How LocalCluster workers start (see :func:`analysis.executors.
            worker_start_method`).

    Returns:
        The verdict table (columns :data:`VERDICT_COLUMNS`); ``attrs["failed_runs"]`` counts
        runs that failed (their pairs are left out of ``n``).

    Raises:
        ScenarioError: On an unknown name, a bad size or an invalid arm (nothing written then).
    """
    experiments = _select(names)
    if size is None and os.environ.get(SIZE_ENV, "").strip():
        size = parse_size(os.environ[SIZE_ENV])
    out = Path(out)
    check_experiments_folder(out)  # a file, an unwritable place, someone else's folder: refused
    for experiment in experiments:
        used = _size_of(experiment, full, size)
        size_name = "given" if size is not None else "full" if full else "quick"
        check_experiment(experiment, {size_name: used})
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(
        out / EXPERIMENTS_MARK,
        {"mesaopt": __version__, "experiments": [e.name for e in experiments]},
    )
    rows: list[dict[str, Any]] = []
    failed = 0
    clock = time.perf_counter()
    with _engine(engine, scheduler, workers, start_method) as address:
        for experiment in experiments:
            rows.extend(
                _run_experiment(
                    experiment, out, _size_of(experiment, full, size), engine, address, progress
                )
            )
            failed += _failed_runs(out / experiment.name, experiment)
    table = pd.DataFrame(rows, columns=list(VERDICT_COLUMNS))
    for name, writer in (("verdicts.csv", "to_csv"), ("verdicts.parquet", "to_parquet")):
        with atomic_path(out / name) as tmp:
            getattr(table, writer)(tmp, index=False)
    # Imported here, after every check: matplotlib would cost a refusal about a second.
    from mesaopt.analysis.experiment_report import write_report

    write_report(experiments, table, out)
    table.attrs["failed_runs"] = failed
    table.attrs["wall_seconds"] = time.perf_counter() - clock
    return table


def _run_experiment(
    experiment: Experiment,
    out: Path,
    used: Size,
    engine: str,
    scheduler: str | None,
    progress: bool,
) -> list[dict[str, Any]]:
    """Run every arm of one experiment that is not finished yet; return its verdict rows."""
    folder = out / experiment.name
    design = experiment.design(used)
    if progress:
        arms, points, replicates = len(experiment.arms_used()), len(design.points), used.replicates
        print(
            f"mesaopt experiments: {experiment.name} — {arms} arm{'s' * (arms != 1)} × "
            f"{points} point{'s' * (points != 1)} × "
            f"{replicates} replicate{'s' * (replicates != 1)}",
            file=sys.stderr,
        )
    for arm in experiment.arms_used():
        run_design(
            experiment.arm_base(arm, used),
            design,
            folder / arm,
            engine=engine,
            scheduler=scheduler,
            progress=progress,
            extra_record={"experiment": experiment.name, "arm": arm},
        )
    write_json_atomic(
        folder / "size.json",
        {"replicates": used.replicates, "n_agents": used.n_agents, "steps": used.steps},
    )
    return judge(experiment, folder)


def _failed_runs(folder: Path, experiment: Experiment) -> int:
    """Runs of the experiment's current designs that failed (from each arm's runs.parquet)."""
    count = 0
    for arm in experiment.arms_used():
        index = folder / arm / "runs.parquet"
        if index.is_file():
            count += int((pd.read_parquet(index, columns=["status"])["status"] == "failed").sum())
    return count


@contextmanager
def _engine(
    engine: str, scheduler: str | None, workers: int | None, start_method: str | None
) -> Iterator[str | None]:
    """The scheduler address every arm runs on: one LocalCluster for all of them.

    Twenty-odd arms each starting and stopping their own cluster would spend more time on that
    than on their runs (and workers that stay up keep their compiled kernels loaded), so a local
    engine is one LocalCluster, the one :func:`analysis.executors.open_engine` starts
    (:func:`analysis.executors.local_cluster`), whose address every :func:`run_design` call is
    given. A given ``scheduler`` is used as it is; the serial engine needs none (yields None).
    """
    if scheduler is not None or engine == "serial":
        yield scheduler
        return
    if engine != "local":
        raise ValueError(f"unknown engine {engine!r} (one of local, serial)")
    from mesaopt.analysis import executors

    executors._quiet_dask()
    with executors.local_cluster(workers, start_method) as cluster, cluster:
        yield cluster.scheduler_address


def format_verdicts(table: pd.DataFrame) -> str:
    """The verdict table as text: one line per claim (effect, 95% CI, n, verdict)."""
    if table.empty:
        return "(no claims)"
    shown = table.assign(
        sign=table["expected_sign"].map({1: "+", -1: "−"}),
        ci=[
            f"[{lo:.3g}, {hi:.3g}]"
            for lo, hi in zip(table["ci_low"], table["ci_high"], strict=True)
        ],
        effect=table["effect"].map(lambda v: f"{v:.3g}"),
    )
    return shown[
        ["experiment", "arms", "metric", "sign", "effect", "ci", "n", "verdict"]
    ].to_string(index=False)
