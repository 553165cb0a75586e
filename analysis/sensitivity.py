"""Global sensitivity analysis with SALib: Sobol and Morris designs run through the sweep engine.

``run.py sensitivity SCENARIO --method sobol|morris --param key=low:high ...`` samples the
parameter box with SALib (:func:`sample`), turns the samples into the design points of a sweep
(:func:`sensitivity_design`; integer parameters — both bounds whole numbers — are rounded, and
repeated points are run once), runs them with :func:`analysis.sweep_runner.run_design` like any
sweep, and computes indices with confidence intervals for one output (:func:`indices`): a
metric's ``final`` or time-averaged (``mean``) value for one principal (or ``all``), averaged over
replicates.

* Sobol (Saltelli/Sobol' sequence, ``N·(D+2)`` runs, N a power of two): first-order ``S1`` and
  total ``ST`` indices with bootstrap confidence half-widths.
* Morris (elementary effects, ``N·(D+1)`` runs, 4 levels): ``mu_star`` with its bootstrap
  confidence half-width, ``mu`` and ``sigma``.

SALib is an optional extra (``pip install 'mesaopt[sensitivity]'``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mesaopt.analysis.sweep_design import Design, replicate_seeds
from mesaopt.model.errors import ScenarioError

METHODS = ("sobol", "morris")
MORRIS_LEVELS = 4


@dataclass(frozen=True)
class Bound:
    """One parameter's range: ``key=low:high``.

    Attributes:
        key: Dotted scenario key.
        low: Lower bound.
        high: Upper bound.
        integer: Both bounds are whole numbers written without a point: samples are rounded.
    """

    key: str
    low: float
    high: float
    integer: bool


def parse_param(text: str) -> Bound:
    """Parse ``--param key=low:high``.

    Args:
        text: The argument.

    Returns:
        The bound.

    Raises:
        ScenarioError: If it is malformed or ``low >= high``.
    """
    key, sep, raw = text.partition("=")
    key = key.strip()
    parts = raw.split(":")
    if not sep or not key or len(parts) != 2:
        raise ScenarioError(text or "--param", "parameters look like key=low:high")
    try:
        low, high = (float(p) for p in parts)
    except ValueError:
        raise ScenarioError(f"--param {key}", f"bounds must be numbers, got {raw!r}") from None
    if not (np.isfinite(low) and np.isfinite(high)) or low >= high:
        raise ScenarioError(f"--param {key}", f"needs finite low < high, got {raw!r}")
    integer = all(p.strip().lstrip("+-").isdigit() for p in parts)
    return Bound(key, low, high, integer)


def problem(bounds: list[Bound]) -> dict[str, Any]:
    """The SALib problem dictionary of the bounds."""
    return {
        "num_vars": len(bounds),
        "names": [b.key for b in bounds],
        "bounds": [[b.low, b.high] for b in bounds],
    }


def sample(method: str, bounds: list[Bound], samples: int, seed: int) -> np.ndarray:
    """Draw the SALib sample matrix (one row per model evaluation).

    Args:
        method: ``"sobol"`` or ``"morris"``.
        bounds: The parameters.
        samples: N: base samples (Sobol; a power of two) or trajectories (Morris).
        seed: Seed of the sampler.

    Returns:
        The sample matrix, unrounded.

    Raises:
        ScenarioError: On an unknown method or fewer than two samples.
    """
    if method not in METHODS:
        raise ScenarioError("--method", f"one of {', '.join(METHODS)}, got {method!r}")
    if samples < 2:
        raise ScenarioError("--samples", "needs at least 2")
    if len({b.key for b in bounds}) != len(bounds) or not bounds:
        raise ScenarioError("--param", "give each parameter once, at least one")
    spec = problem(bounds)
    if method == "sobol":
        from SALib.sample import sobol

        return sobol.sample(spec, samples, calc_second_order=False, seed=seed)
    from SALib.sample import morris

    return morris.sample(spec, samples, num_levels=MORRIS_LEVELS, seed=seed)


def sensitivity_design(
    method: str, bounds: list[Bound], matrix: np.ndarray, replicates: int, seed: int
) -> tuple[Design, np.ndarray]:
    """Turn a sample matrix into sweep design points (repeated points once).

    Args:
        method: The method (recorded as the design's kind).
        bounds: The parameters.
        matrix: The sample matrix.
        replicates: Replicates per point.
        seed: Sweep seed the replicate seeds spawn from.

    Returns:
        The design and, per sample row, the index of its design point.
    """
    points: list[dict[str, Any]] = []
    where: dict[tuple[Any, ...], int] = {}
    point_of = np.empty(len(matrix), dtype=np.int64)
    for row, values in enumerate(matrix):
        point = {
            b.key: round(float(v)) if b.integer else float(v)
            for b, v in zip(bounds, values, strict=True)
        }
        key = tuple(point.values())
        if key not in where:
            where[key] = len(points)
            points.append(point)
        point_of[row] = where[key]
    keys = [b.key for b in bounds]
    return Design(keys, points, replicate_seeds(seed, replicates), seed, method), point_of


def output_per_point(
    run_metrics: pd.DataFrame, n_points: int, metric: str, statistic: str, principal: str
) -> np.ndarray:
    """The chosen output per design point, averaged over replicates.

    Args:
        run_metrics: Per-run reductions (``run_metrics.parquet``).
        n_points: Number of design points.
        metric: A ``steps`` metric column.
        statistic: ``"final"`` or ``"mean"``.
        principal: A principal's name or ``"all"``.

    Returns:
        One value per design point (NaN where runs failed or the metric is NaN).

    Raises:
        ScenarioError: If the metric or principal is unknown.
    """
    if metric not in run_metrics.columns:
        raise ScenarioError("--metric", f"no metric {metric!r} in the steps table")
    rows = run_metrics[
        (run_metrics["statistic"] == statistic) & (run_metrics["principal"] == principal)
    ]
    if rows.empty:
        raise ScenarioError("--principal", f"no principal {principal!r}")
    means = rows.groupby("design_id")[metric].mean()
    return means.reindex(range(n_points)).to_numpy(dtype=float)


def indices(
    method: str,
    bounds: list[Bound],
    matrix: np.ndarray,
    y: np.ndarray,
    seed: int,
    level: float = 0.95,
) -> pd.DataFrame:
    """Sensitivity indices with confidence intervals, one row per parameter and index.

    Args:
        method: ``"sobol"`` or ``"morris"``.
        bounds: The parameters.
        matrix: The (unrounded) sample matrix.
        y: The output per sample row.
        seed: Seed of the bootstrap.
        level: Confidence level.

    Returns:
        Columns ``parameter, index, value, conf, ci_low, ci_high`` (``conf`` the CI half-width;
        NaN for Morris' ``mu`` and ``sigma``, which SALib gives no interval for).

    Raises:
        ValueError: If ``y`` has non-finite values.
    """
    if not np.all(np.isfinite(y)):
        raise ValueError(f"{int(np.sum(~np.isfinite(y)))} outputs are missing or not finite")
    spec = problem(bounds)
    rows: list[dict[str, Any]] = []
    if method == "sobol":
        from SALib.analyze import sobol

        result = sobol.analyze(spec, y, calc_second_order=False, conf_level=level, seed=seed)
        pairs = (("S1", "S1_conf"), ("ST", "ST_conf"))
    else:
        from SALib.analyze import morris

        result = morris.analyze(
            spec, matrix, y, conf_level=level, num_levels=MORRIS_LEVELS, seed=seed
        )
        pairs = (("mu_star", "mu_star_conf"), ("mu", None), ("sigma", None))
    for i, bound in enumerate(bounds):
        for name, conf_name in pairs:
            value = float(np.asarray(result[name])[i])
            conf = float(np.asarray(result[conf_name])[i]) if conf_name else np.nan
            rows.append(
                {
                    "parameter": bound.key,
                    "index": name,
                    "value": value,
                    "conf": conf,
                    "ci_low": value - conf,
                    "ci_high": value + conf,
                }
            )
    return pd.DataFrame(rows)
