"""Statistics over runs: per-run reductions and per-design-point summaries with t-based 95% CIs.

A run's ``steps`` table is reduced to two rows per principal (and ``all``): ``final`` (the metric at
the last step) and ``mean`` (the metric averaged over steps 1…T, NaN steps skipped) —
:func:`reduce_run`. Reductions are small; the sweep driver collects them and
:func:`summarize` turns them into one tidy row per design point, principal, statistic and metric
with the replicates' count, mean, standard deviation and a two-sided 95% confidence interval
mean ± t₀.₉₇₅,ₙ₋₁ · sd/√n (NaN when fewer than two replicates).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy.special import stdtrit

#: Columns of a ``steps`` table that are not metrics.
ID_COLUMNS = ("step", "principal")
STATISTICS = ("final", "mean")
SUMMARY_COLUMNS = ("n", "mean", "sd", "ci_low", "ci_high")


def metric_columns(steps: pd.DataFrame) -> list[str]:
    """Numeric columns of a ``steps`` table other than ``step``."""
    columns = []
    for name, dtype in steps.dtypes.items():
        if name in ID_COLUMNS:
            continue
        if isinstance(dtype, np.dtype):  # the common case, without pandas' slower dtype checks
            numeric = dtype.kind in "iufc"
        else:
            numeric = pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)
        if numeric:
            columns.append(name)
    return columns


def reduce_run(steps: pd.DataFrame) -> pd.DataFrame:
    """Final-step and time-averaged metrics of one run, per principal.

    Args:
        steps: The run's ``steps`` table.

    Returns:
        Columns ``principal``, ``statistic`` (``final`` or ``mean``) and one per metric; the
        principals in the order they appear in ``steps``.
    """
    metrics = metric_columns(steps)
    if steps.empty:  # no step ran (the table may even lack its columns: see model.runner)
        return pd.DataFrame(columns=["principal", "statistic", *metrics])
    order = list(dict.fromkeys(steps["principal"]))
    step = steps["step"].to_numpy()
    last = steps.loc[step == step.max(), ["principal", *metrics]].set_index("principal")
    mean = steps.groupby("principal", sort=False)[metrics].mean()
    values = np.vstack(
        [table.reindex(order).to_numpy(dtype=float) for table in (last, mean)]
    ).reshape(2 * len(order), len(metrics))
    reduced = pd.DataFrame(values, columns=metrics)
    reduced.insert(0, "statistic", [name for name in STATISTICS for _ in order])
    reduced.insert(0, "principal", order * len(STATISTICS))
    return reduced


def t_quantile(q: float, df: Any) -> Any:
    """Quantile ``q`` of Student's t with ``df`` degrees of freedom, for 0 < q ≤ 1.

    The value of ``scipy.stats.t.ppf(q, df)`` (``scipy.special.stdtrit`` is what it evaluates,
    to the bit), without importing ``scipy.stats``: that import costs every command that draws
    or summarises about a second.

    Args:
        q: The probability (the intervals here use upper quantiles, 0.5 + level / 2).
        df: Degrees of freedom, a number or an array (NaN where not positive).

    Returns:
        The quantile, a float for scalar ``df``, else an array.
    """
    quantile = stdtrit(df, q)
    return float(quantile) if np.ndim(quantile) == 0 else quantile


def t_interval(values: np.ndarray, level: float = 0.95) -> tuple[int, float, float, float, float]:
    """Count, mean, sd and t-based confidence interval of the finite ``values``.

    Args:
        values: Replicate values.
        level: Confidence level.

    Returns:
        ``(n, mean, sd, ci_low, ci_high)``; sd and the interval are NaN for n < 2, everything but
        n is NaN for n = 0.
    """
    finite = values[np.isfinite(values)]
    n = len(finite)
    if n == 0:
        return 0, np.nan, np.nan, np.nan, np.nan
    mean = float(finite.mean())
    if n < 2:
        return 1, mean, np.nan, np.nan, np.nan
    sd = float(finite.std(ddof=1))
    half = t_quantile(0.5 + level / 2, n - 1) * sd / np.sqrt(n)
    return n, mean, sd, mean - half, mean + half


def summarize(reductions: pd.DataFrame, parameters: list[str], level: float = 0.95) -> pd.DataFrame:
    """Per design point: n, mean, sd and CI of every metric over replicates.

    Args:
        reductions: Per-run reductions with columns ``design_id``, the swept ``parameters``,
            ``principal``, ``statistic`` and the metrics (other run columns are ignored).
        parameters: The swept parameter columns.
        level: Confidence level of the interval.

    Returns:
        Tidy rows ``design_id, <parameters>, principal, statistic, metric, n, mean, sd, ci_low,
        ci_high``, in design, principal, statistic and metric order.
    """
    keys = ["design_id", *parameters, "principal", "statistic"]
    skip = {*keys, "run_id", "replicate", "seed"}
    metrics = [c for c in reductions.columns if c not in skip]
    rows: list[dict[str, Any]] = []
    grouped = reductions.groupby(["design_id", "principal", "statistic"], sort=False)
    for _, group in grouped:
        head = group.iloc[0]
        for metric in metrics:
            values = group[metric].to_numpy(dtype=float)
            n, mean, sd, low, high = t_interval(values, level)
            row = {key: head[key] for key in keys}
            row.update(metric=metric, n=n, mean=mean, sd=sd, ci_low=low, ci_high=high)
            rows.append(row)
    columns = [*keys, "metric", *SUMMARY_COLUMNS]
    summary = pd.DataFrame(rows, columns=columns)
    return summary.sort_values(["design_id"], kind="stable").reset_index(drop=True)
