"""The ``steps`` table: one row per principal and one for ``all``, from a step's per-agent measures.

The per-agent measures themselves (payoffs, losses, categories, Goodhart measures) are defined in
:mod:`model.measures` and computed by :mod:`model.measures_jit`; the order statistics per group
(Gini, correlations) are defined in :mod:`model.group_stats` and computed by
:mod:`model.group_stats_jit`. Every column is spelled out in ``docs/tables.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from mesaopt.model.group_stats_jit import group_correlations, group_ginis, sort_by_group
from mesaopt.model.measures import CATEGORIES
from mesaopt.model.measures_jit import METRIC_ROWS, group_sums
from mesaopt.model.parallel import parallel_map

__all__ = ["aggregate_steps"]


def aggregate_steps(
    *,
    step: int,
    metrics: np.ndarray,
    principal_of: np.ndarray,
    principals: Sequence[Any],
    flags: np.ndarray,
    primary: np.ndarray,
    action: np.ndarray,
    channel_names: Sequence[str],
    outside: np.ndarray,
    stale: np.ndarray,
    caught: np.ndarray,
    selection_stats: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]],
    top_quantile: float,
) -> list[dict[str, Any]]:
    """Build the ``steps`` rows of one step: one per principal, then ``all``.

    Means are per agent of the group. Columns are documented in ``docs/tables.md``.

    Args:
        step: The step number.
        metrics: Per-agent metrics, (len(METRIC_ROWS), N), rows in the order of
            :data:`model.measures_jit.METRIC_ROWS`.
        principal_of: Principal index per agent.
        principals: The principals (for names, contract and belief).
        flags: Category flags (N, 4).
        primary: Primary category index (N,).
        action: Efforts (N, d).
        channel_names: Channel names.
        outside: Agents acting outside the range seen in selection (N,).
        stale: Direct agents whose world model predates the current regime (N,).
        caught: Agents caught by an audit this step (N,).
        selection_stats: Per selection batch this step: (principal index, winner's curse,
            chosen − mean expected score, chosen − mean measured score).
        top_quantile: Proxy quantile above which the top-group correlation is measured.

    Returns:
        The rows.
    """
    n_groups = len(principals)
    size = len(principal_of)
    per_agent = dict(zip(METRIC_ROWS, metrics, strict=True))
    counts = np.bincount(principal_of, minlength=n_groups).astype(float)
    counts = np.append(counts, size)  # groups 0..J-1, then "all"

    def with_all(sums: np.ndarray) -> np.ndarray:
        """Append the overall total to per-group sums (groups on axis 0)."""
        return np.concatenate([sums, sums.sum(axis=0, keepdims=True)])

    with np.errstate(invalid="ignore", divide="ignore"):  # NaN for a principal with no agents
        means = with_all(group_sums(metrics, principal_of, n_groups)) / counts[:, None]
        efforts = with_all(group_sums(action.T, principal_of, n_groups)) / counts[:, None]
        outside_share = with_all(np.bincount(principal_of[outside], minlength=n_groups)) / counts
        stale_share = with_all(np.bincount(principal_of[stale], minlength=n_groups)) / counts
    n_cat = len(CATEGORIES)
    n_flagged = with_all(group_sums(flags.T, principal_of, n_groups))
    n_caught = with_all(np.bincount(principal_of[caught], minlength=n_groups))
    utility, proxy = per_agent["utility"], per_agent["proxy"]
    by_utility, by_proxy = parallel_map(lambda x: sort_by_group(x, principal_of), [utility, proxy])
    ginis = group_ginis(utility, principal_of, n_groups, by_utility)
    corr, corr_top = group_correlations(
        proxy, per_agent["value"], principal_of, n_groups, top_quantile, by_proxy
    )

    # Category counts and losses: sums over (principal, primary category) pairs.
    pair = principal_of * n_cat + primary
    losses = ("principal_loss", "mesa_loss")
    loss_rows = [METRIC_ROWS.index(loss) for loss in losses]
    by_pair = group_sums(metrics, pair, n_groups * n_cat, loss_rows)
    by_pair = with_all(by_pair.reshape(n_groups, n_cat, len(losses)))  # (groups + 1, cat., loss)
    n_primary = with_all(np.bincount(pair, minlength=n_groups * n_cat).reshape(n_groups, n_cat))
    with np.errstate(invalid="ignore", divide="ignore"):
        category_loss = {loss: by_pair[:, :, q] / n_primary for q, loss in enumerate(losses)}

    rows = []
    for g in range(n_groups + 1):
        principal = principals[g] if g < n_groups else None
        n = int(counts[g])
        row: dict[str, Any] = {
            "step": step,
            "principal": principal.name if principal is not None else "all",
            "n_agents": n,
        }
        row["alpha"] = principal.alpha if principal is not None else np.nan
        row["beta"] = principal.beta if principal is not None else np.nan
        for k, channel in enumerate(channel_names):
            row[f"belief_{channel}"] = (
                float(principal.value_belief[k]) if principal is not None else np.nan
            )
        for q, key in enumerate(METRIC_ROWS):
            row[key] = float(means[g, q])
        row["welfare"] = row["value"] + row["private_payoff"] + row["externality_received"]
        row["gini_utility"] = ginis[g]
        for k, channel in enumerate(channel_names):
            row[f"effort_{channel}"] = float(efforts[g, k])
        for c, category in enumerate(CATEGORIES):
            count = int(n_primary[g, c])
            row[f"n_{category}"] = count
            row[f"flagged_{category}"] = int(n_flagged[g, c])
            for loss in losses:
                row[f"{loss}_{category}"] = float(category_loss[loss][g, c]) if count else np.nan
        _selection_columns(row, selection_stats, principal)
        row["goodhart_extremal"] = float(outside_share[g])
        row["corr_proxy_value"] = float(corr[g])
        row["corr_proxy_value_top"] = float(corr_top[g])
        row["share_stale"] = float(stale_share[g])
        row["n_caught"] = int(n_caught[g])
        rows.append(row)
    return rows


def _selection_columns(row: dict[str, Any], stats: list, principal: Any) -> None:
    """Regressional Goodhart columns from this step's selections (NaN when none happened)."""
    batches = [s for s in stats if principal is None or s[0] == principal.index]
    if not batches:
        row["n_selected"] = 0
        row["goodhart_regressional"] = np.nan
        row["selection_shrinkage"] = np.nan
        return
    curse = np.concatenate([b[1] for b in batches])
    true_gain = np.concatenate([b[2] for b in batches]).sum()
    measured_gain = np.concatenate([b[3] for b in batches]).sum()
    row["n_selected"] = len(curse)
    row["goodhart_regressional"] = float(curse.mean())
    row["selection_shrinkage"] = float(true_gain / measured_gain) if measured_gain else np.nan
