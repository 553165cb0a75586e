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
from mesaopt.model.measures import CATEGORIES, FLAGS, PARTS
from mesaopt.model.measures_jit import (
    COMBINATIONS,
    METRIC_ROWS,
    PAIR_LOSSES,
    GroupSums,
    group_sums,
)
from mesaopt.model.parallel import parallel_map

__all__ = ["LOSSES", "aggregate_steps", "sample_estimates"]

#: The losses reported per flag and per primary category (the outcome kernel sums these).
LOSSES = PAIR_LOSSES


def aggregate_steps(
    *,
    step: int,
    metrics: np.ndarray,
    principal_of: np.ndarray,
    principals: Sequence[Any],
    flags: np.ndarray,
    action: np.ndarray,
    channel_names: Sequence[str],
    outside: np.ndarray,
    stale: np.ndarray,
    caught: np.ndarray,
    selection_stats: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]],
    top_quantile: float,
    sample_rows: np.ndarray,
    sample_parts: np.ndarray,
    sample_primary: np.ndarray,
    sums: GroupSums | None = None,
) -> list[dict[str, Any]]:
    """Build the ``steps`` rows of one step: one per principal, then ``all``.

    Means are per agent of the group. Per-flag columns are over every agent of the group;
    per-primary-category and loss-part columns are over the decomposed agents (every agent up to
    :data:`model.decomposition.DECOMPOSITION_SAMPLE`, else a fixed stratified sample;
    :func:`sample_estimates`). The mean over an empty set of agents (a flag nobody has, a
    category nobody is in) is written as 0, next to its count of 0; only a principal with no
    agents at all has NaN means. Columns are documented in ``docs/tables.md``.

    Args:
        step: The step number.
        metrics: Per-agent metrics, (len(METRIC_ROWS), N), rows in the order of
            :data:`model.measures_jit.METRIC_ROWS`.
        principal_of: Principal index per agent.
        principals: The principals (for names, contract and belief).
        flags: Flags (N, len(FLAGS)) in the order of :data:`model.measures.FLAGS`.
        action: Efforts (N, d).
        channel_names: Channel names.
        outside: Agents acting outside the range seen in selection (N,).
        stale: Agents whose world model predates the current regime (N,).
        caught: Agents caught by an audit this step (N,).
        selection_stats: Per selection batch this step: (principal index, winner's curse,
            chosen − mean expected score, chosen − mean measured score).
        top_quantile: Proxy quantile above which the top-group correlation is measured.
        sample_rows: The decomposed agents of this step's means, (S,) sorted.
        sample_parts: Their loss parts, (len(PARTS), S) in :data:`model.measures.PARTS` order.
        sample_primary: Their primary categories, (S,) indices into
            :data:`model.measures.CATEGORIES`.
        sums: The group sums the outcome kernel added up (:class:`model.measures_jit.GroupSums`),
            the same numbers as summing ``metrics``, ``action``, ``outside`` and the flags here,
            provided the caller has added the decomposed agents' ``goodhart_causal`` into
            ``sums.metrics`` (the kernel leaves it 0; :func:`model.measurement.measure_step`
            adds it); None: sum them here.

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

    n_flags = len(FLAGS)
    combos = COMBINATIONS  # 2^len(FLAGS) ≤ 2^8: the code of a combination fits in a byte
    loss_rows = [METRIC_ROWS.index(loss) for loss in LOSSES]
    if sums is None:
        metric_sums = group_sums(metrics, principal_of, n_groups)
        effort_sums = group_sums(action.T, principal_of, n_groups)
        n_outside = np.bincount(principal_of[outside], minlength=n_groups)
        # Losses per flag. Flags are not exclusive: sum over (principal, combination of flags)
        # pairs in one pass, then add up the combinations that hold each flag.
        code = flags.view(np.uint8) @ (1 << np.arange(n_flags)).astype(np.uint8)
        pair = principal_of * combos + code
        by_combo = group_sums(metrics, pair, n_groups * combos, loss_rows)
        per_combo = np.bincount(pair, minlength=n_groups * combos)
    else:
        metric_sums = sums.metrics.sum(axis=0)
        effort_sums = sums.effort.sum(axis=0)
        n_outside = sums.outside.sum(axis=0)
        by_combo = sums.pair_losses.sum(axis=0)
        per_combo = sums.pair_count.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):  # NaN for a principal with no agents
        means = with_all(metric_sums) / counts[:, None]
        efforts = with_all(effort_sums) / counts[:, None]
        outside_share = with_all(n_outside) / counts
        stale_share = with_all(np.bincount(principal_of[stale], minlength=n_groups)) / counts
    n_caught = with_all(np.bincount(principal_of[caught], minlength=n_groups))
    utility, proxy = per_agent["utility"], per_agent["proxy"]
    by_utility, by_proxy = parallel_map(lambda x: sort_by_group(x, principal_of), [utility, proxy])
    ginis = group_ginis(utility, principal_of, n_groups, by_utility)
    corr, corr_top = group_correlations(
        proxy, per_agent["value"], principal_of, n_groups, top_quantile, by_proxy
    )

    by_combo = by_combo.reshape(n_groups, combos, len(LOSSES))
    holds = (np.arange(combos)[:, None] >> np.arange(n_flags)) & 1  # (combination, flag)
    flag_sums = with_all(np.einsum("gcq,cf->gfq", by_combo, holds))
    per_combo = per_combo.reshape(n_groups, combos)
    n_flagged = with_all(per_combo @ holds)  # (groups + 1, flags), exact integer counts
    flag_loss = flag_sums / np.maximum(n_flagged, 1)[:, :, None]  # 0 where nobody is flagged

    sample = sample_estimates(
        principal_of,
        n_groups,
        sample_rows,
        sample_parts,
        sample_primary,
        metrics[np.ix_(loss_rows, sample_rows)],  # the sampled rows only: no (2, N) copy
    )

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
        row["gini_utility"] = ginis[g]
        for k, channel in enumerate(channel_names):
            row[f"effort_{channel}"] = float(efforts[g, k])
        for c, category in enumerate(CATEGORIES):
            row[f"n_{category}"] = int(sample["n_primary"][g, c])
            for q, loss in enumerate(LOSSES):
                row[f"{loss}_{category}"] = float(sample["category_loss"][g, c, q])
        for f, flag in enumerate(FLAGS):
            row[f"flagged_{flag}"] = int(n_flagged[g, f])
            for q, loss in enumerate(LOSSES):
                row[f"{loss}_flagged_{flag}"] = float(flag_loss[g, f, q])
        row["n_decomposed"] = int(sample["n_decomposed"][g])
        for p, part in enumerate(PARTS):
            row[f"loss_{part}"] = float(sample["mean"][g, p])
            row[f"loss_{part}_se"] = float(sample["se"][g, p])
        _selection_columns(row, selection_stats, principal)
        row["goodhart_extremal"] = float(outside_share[g])
        row["corr_proxy_value"] = float(corr[g])
        row["corr_proxy_value_top"] = float(corr_top[g])
        row["share_stale"] = float(stale_share[g])
        row["n_caught"] = int(n_caught[g])
        rows.append(row)
    return rows


def sample_estimates(
    principal_of: np.ndarray,
    n_groups: int,
    rows: np.ndarray,
    parts: np.ndarray,
    primary: np.ndarray,
    losses: np.ndarray,
) -> dict[str, np.ndarray]:
    """Group means of the loss parts, with standard errors, and losses per primary category.

    The decomposed agents are a stratified sample without replacement (strata = principals;
    :func:`model.decomposition.fixed_sample`): m_j of principal j's n_j agents, all of them when
    the run is small. Principal j's mean part is the sample mean ȳ_j, its standard error
    ``s_j/√m_j·√(1 − m_j/n_j)`` (``s_j`` with ddof 1; the finite-population correction makes it 0
    when every agent is decomposed). The ``all`` row is the stratified estimate
    ``Σ_j W_j ȳ_j`` with ``W_j = n_j/N`` and standard error ``√(Σ_j W_j² SE_j²)`` (Cochran 1977,
    *Sampling Techniques*, ch. 5). Losses per primary category weight each decomposed agent by
    ``n_j/m_j`` (the inverse of its chance to be sampled), so the ``all`` row counts every
    principal by its size; ``n_<category>`` counts decomposed agents.

    Args:
        principal_of: Each agent's principal, (N,).
        n_groups: J.
        rows: The decomposed agents, (S,).
        parts: Their loss parts, (len(PARTS), S).
        primary: Their primary categories, (S,).
        losses: The decomposed agents' principal and mesa loss, (len(LOSSES), S).

    Returns:
        ``n_decomposed`` (J + 1,), ``mean`` and ``se`` (J + 1, len(PARTS)), ``n_primary``
        (J + 1, len(CATEGORIES)) and ``category_loss`` (J + 1, len(CATEGORIES), len(LOSSES));
        0 for an empty group.
    """
    n_j = np.bincount(principal_of, minlength=n_groups).astype(float)
    group = principal_of[rows]
    m_j = np.bincount(group, minlength=n_groups).astype(float)
    taken = np.maximum(m_j, 1.0)
    sums = np.stack([np.bincount(group, weights=part, minlength=n_groups) for part in parts])
    mean = sums / taken  # (parts, J)
    squares = np.stack(
        [
            np.bincount(group, weights=(part - mean[p, group]) ** 2, minlength=n_groups)
            for p, part in enumerate(parts)
        ]
    )
    variance = squares / np.maximum(m_j - 1.0, 1.0)
    unsampled = 1.0 - np.divide(m_j, n_j, out=np.ones_like(m_j), where=n_j > 0)
    se = np.sqrt(variance / taken * unsampled)
    weight = n_j / max(len(principal_of), 1)
    mean_all = mean @ weight
    se_all = np.sqrt((se**2) @ weight**2)

    n_cat = len(CATEGORIES)
    pair = group * n_cat + primary
    expansion = n_j[group] / m_j[group]
    n_primary = np.bincount(pair, minlength=n_groups * n_cat).reshape(n_groups, n_cat)
    weight_sums = np.bincount(pair, weights=expansion, minlength=n_groups * n_cat)
    loss_sums = np.stack(
        [
            np.bincount(pair, weights=expansion * loss, minlength=n_groups * n_cat)
            for loss in losses
        ],
        axis=-1,
    ).reshape(n_groups, n_cat, len(losses))
    weight_sums = weight_sums.reshape(n_groups, n_cat)

    def with_all(x: np.ndarray) -> np.ndarray:
        return np.concatenate([x, x.sum(axis=0, keepdims=True)])

    all_weights = with_all(weight_sums)
    category_loss = with_all(loss_sums) / np.where(all_weights > 0, all_weights, 1.0)[:, :, None]
    return {
        "n_decomposed": with_all(m_j).astype(np.int64),
        "mean": np.vstack([mean.T, mean_all]),
        "se": np.vstack([se.T, se_all]),
        "n_primary": with_all(n_primary),
        "category_loss": category_loss,
    }


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
