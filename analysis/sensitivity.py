"""Global sensitivity analysis with SALib: Sobol and Morris designs run through the sweep engine.

``run.py sensitivity SCENARIO --method sobol|morris --param key=low:high ...`` samples the
parameter box with SALib (:func:`sample`), turns the samples into the design points of a sweep
(:func:`sensitivity_design`; integer parameters are rounded, and repeated points are run once),
runs them with :func:`analysis.sweep_runner.run_design` like any
sweep, and computes indices with confidence intervals for one output (:func:`indices`): a
metric's ``final`` or time-averaged (``mean``) value for one principal (or ``all``), averaged over
replicates.

* Sobol (Saltelli/Sobol' sequence, ``N·(D+2)`` runs, N a power of two): first-order ``S1`` and
  total ``ST`` indices with bootstrap confidence half-widths.
* Morris (elementary effects, ``N·(D+1)`` runs, 4 levels): ``mu_star`` with its bootstrap
  confidence half-width, ``mu`` and ``sigma``.

A parameter's type comes from the scenario schema (:func:`parameter_type`), never from how its
bounds are written: ``agents.risk_aversion=0:2`` samples floats in [0, 2] because the schema says
``risk_aversion`` is a float, and ``principals.0.selection.n=1:64`` samples whole numbers because
``selection.n`` is an int. Boolean and text keys have no range and are refused.

SALib is an optional extra (``pip install 'mesaopt[sensitivity]'``).
"""

from __future__ import annotations

import types
import typing
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel

from mesaopt.analysis.sweep_design import MAX_RUNS, SEED_NOT_SWEPT, Design, replicate_seeds
from mesaopt.model.errors import ScenarioError
from mesaopt.model.scenario import ChannelConfig, NoiseConfig, RegimeConfig, Scenario

METHODS = ("sobol", "morris")
MORRIS_LEVELS = 4


@dataclass(frozen=True)
class Bound:
    """One parameter's range: ``key=low:high``.

    Attributes:
        key: Dotted scenario key.
        low: Lower bound.
        high: Upper bound.
        integer: The schema types the key as an int: samples are rounded to whole numbers.
    """

    key: str
    low: float
    high: float
    integer: bool


def _members(annotation: Any) -> list[Any]:
    """The alternatives of a type annotation, ``Annotated`` and ``Optional`` unwrapped."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _members(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return [m for arg in typing.get_args(annotation) for m in _members(arg)]
    return [annotation]


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _child(annotation: Any, part: str, owner: Any) -> Any:
    """The annotation one dotted step below ``annotation`` (None when there is no such key)."""
    for member in _members(annotation):
        origin = typing.get_origin(member)
        if _is_model(member) and part in member.model_fields:
            return member.model_fields[part].annotation
        if origin is list and part.isascii() and part.isdigit():
            return typing.get_args(member)[0]
        if origin is dict:
            if owner is RegimeConfig:  # regimes.<i>.set.<field>: a channel field
                if part == "noise":
                    return NoiseConfig
                field = ChannelConfig.model_fields.get(part)
                return field.annotation if field is not None and part != "name" else None
            return typing.get_args(member)[1]
    return None


def parameter_type(key: str) -> type:
    """The number type the scenario schema gives a dotted key: ``int`` or ``float``.

    Union fields count as their numeric alternative (``contract.beta`` is a float or
    ``"optimal"``: float; ``agents.capacity`` is an int or a distribution: int); a float
    alternative wins over an int one. A regime change's ``set.<field>`` has the type of that
    channel field.

    Args:
        key: Dotted scenario key, e.g. ``principals.0.selection.n``.

    Returns:
        ``int`` or ``float``.

    Raises:
        ScenarioError: If the schema has no such key, or the key is not a number (a bool, a text,
            a table).
    """
    annotation: Any = Scenario
    owner: Any = None
    for part in key.split("."):
        below = _child(annotation, part, owner)
        if below is None:
            raise ScenarioError(f"--param {key}", f"the scenario schema has no key {part!r} here")
        owner = next((m for m in _members(annotation) if _is_model(m)), owner)
        annotation = below
    leaves = [m for m in _members(annotation) if m is not type(None)]
    if float in leaves:
        return float
    if int in leaves:
        return int
    kinds = ", ".join(getattr(m, "__name__", str(m)) for m in leaves)
    raise ScenarioError(
        f"--param {key}", f"is not a number in the scenario schema ({kinds}); it has no range"
    )


def parse_param(text: str) -> Bound:
    """Parse ``--param key=low:high``; the key's type comes from the scenario schema.

    Args:
        text: The argument.

    Returns:
        The bound (``integer`` when the schema types the key as an int).

    Raises:
        ScenarioError: If it is malformed, ``low >= high``, the key is not a number in the
            schema, or an int key has bounds that are not whole numbers.
    """
    key, sep, raw = text.partition("=")
    key = key.strip()
    parts = raw.split(":")
    if not sep or not key or len(parts) != 2:
        raise ScenarioError(text or "--param", "parameters look like key=low:high")
    if key == "run.seed":
        raise ScenarioError(f"--param {key}", SEED_NOT_SWEPT)
    try:
        low, high = (float(p) for p in parts)
    except ValueError:
        raise ScenarioError(f"--param {key}", f"bounds must be numbers, got {raw!r}") from None
    if not (np.isfinite(low) and np.isfinite(high)) or low >= high:
        raise ScenarioError(f"--param {key}", f"needs finite low < high, got {raw!r}")
    integer = parameter_type(key) is int
    if integer and not (low.is_integer() and high.is_integer()):
        raise ScenarioError(
            f"--param {key}", f"is a whole number in the scenario schema; got bounds {raw!r}"
        )
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
        ScenarioError: On an unknown method, fewer than two samples, a Sobol N that is not a
            power of two, or more than :data:`~analysis.sweep_design.MAX_RUNS` runs.
    """
    if method not in METHODS:
        raise ScenarioError("--method", f"one of {', '.join(METHODS)}, got {method!r}")
    if samples < 2:
        raise ScenarioError("--samples", "needs at least 2")
    if method == "sobol" and samples & (samples - 1):
        # Saltelli's estimators converge only on 2^k points of the Sobol' sequence (SALib warns)
        below = 1 << (samples.bit_length() - 1)
        raise ScenarioError(
            "--samples", f"Sobol needs a power of 2, got {samples} (try {below} or {2 * below})"
        )
    if len({b.key for b in bounds}) != len(bounds) or not bounds:
        raise ScenarioError("--param", "give each parameter once, at least one")
    rows = samples * (len(bounds) + (2 if method == "sobol" else 1))
    if rows > MAX_RUNS:
        raise ScenarioError(
            "--samples", f"{samples:,} samples make {rows:,} runs, more than {MAX_RUNS:,}"
        )
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

    Raises:
        ScenarioError: If the design has more than :data:`~analysis.sweep_design.MAX_RUNS`
            runs (its distinct points times the replicates).
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
    if len(points) * replicates > MAX_RUNS:
        raise ScenarioError(
            "--replicates",
            f"{len(points):,} design points × {replicates:,} replicates make "
            f"{len(points) * replicates:,} runs, more than {MAX_RUNS:,}",
        )
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
        ValueError: If ``y`` has non-finite values, is constant (Sobol: the indices are 0/0), or
            SALib meets a 0/0 or an overflow.
    """
    if not np.all(np.isfinite(y)):
        raise ValueError(f"{int(np.sum(~np.isfinite(y)))} outputs are missing or not finite")
    if method == "sobol" and np.ptp(y) == 0:
        # Sobol indices are shares of Var(y): 0/0 here (SALib would warn and write zeros).
        raise ValueError(
            f"the output is {float(y[0])!r} at every sample point, so its variance has no "
            "shares: choose another --metric or wider --param ranges"
        )
    spec = problem(bounds)
    rows: list[dict[str, Any]] = []
    # A RuntimeWarning inside SALib means a 0/0 or an overflow behind some index: an error,
    # never a NaN or a silently zeroed number in the table.
    from SALib.analyze import morris, sobol  # imported first: its import warnings are no 0/0

    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        try:
            if method == "sobol":
                result = sobol.analyze(
                    spec, y, calc_second_order=False, conf_level=level, seed=seed
                )
                pairs = (("S1", "S1_conf"), ("ST", "ST_conf"))
            else:
                result = morris.analyze(
                    spec, matrix, y, conf_level=level, num_levels=MORRIS_LEVELS, seed=seed
                )
                pairs = (("mu_star", "mu_star_conf"), ("mu", None), ("sigma", None))
        except RuntimeWarning as warning:
            raise ValueError(f"SALib could not compute the indices ({warning})") from None
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
