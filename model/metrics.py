"""What is measured (DESIGN.md §3): per-agent payoffs, categories, and the per-step table rows.

Every definition sits next to its code and is spelled out column by column in ``docs/tables.md``.
The simulator knows everything; these measures use ground truth that principals never see.

Payoff accounting (per agent i, per step):

- pay w_i = α_j + β_j·M_i is a transfer from principal to agent, and so is a penalty;
- principal profit = V_i − w_i + penalty_i;
- private payoff = θ_iᵀa_i − ½a_iᵀKa_i − (ρ/2)β_j²σ_M² + Σ_k δ_k a_ik (G a_·k)_i;
- utility U_i = w_i + private payoff + externality received − penalty_i;
- welfare = V_i + private payoff + externality received = profit + utility.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

#: Mesa-optimizer categories relative to the agent's principal. The primary category is the first
#: flag that holds in the order super, trans, sub, aligned (most dangerous first).
CATEGORIES = ("super", "sub", "trans", "aligned")
_PRIMARY_ORDER = (0, 2, 1)  # super, trans, sub; aligned when none holds


@dataclass
class StepOutcome:
    """Realized outcomes of one step, one entry per agent (all arrays (N,) unless stated)."""

    output: np.ndarray  # (N, d) realized output y = a + ε
    proxy: np.ndarray
    value: np.ndarray
    pay: np.ndarray
    intrinsic: np.ndarray
    effort_cost: np.ndarray
    risk_premium: np.ndarray
    peer_payoff: np.ndarray
    externality_given: np.ndarray
    externality_received: np.ndarray
    penalty: np.ndarray

    @property
    def private_payoff(self) -> np.ndarray:
        """Agent's payoff from its own effort, net of cost and risk premium, before pay."""
        return self.intrinsic - self.effort_cost - self.risk_premium + self.peer_payoff

    @property
    def utility(self) -> np.ndarray:
        """Agent utility U_i (pay + private payoff + externalities received − penalty)."""
        return self.pay + self.private_payoff + self.externality_received - self.penalty

    @property
    def profit(self) -> np.ndarray:
        """Principal profit from agent i: V_i − w_i + penalty_i."""
        return self.value - self.pay + self.penalty


def categorize(
    agent_capacity: np.ndarray,
    principal_capacity: np.ndarray,
    objective: np.ndarray,
    principal_values: np.ndarray,
    trans_cosine: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Flag each agent super / sub / trans / aligned relative to its principal.

    ``super``: C_i > C_j (it perceives channels its principal cannot). ``sub``: C_i < C_j.
    ``trans``: cosine(θ_i, v_j) < ``trans_cosine`` (its goals differ from the principal's true
    values, through selection on a proxy or private goals). ``aligned``: none of these.

    Args:
        agent_capacity: C_i, (N,).
        principal_capacity: C_j of each agent's principal, (N,).
        objective: θ_i, (N, d).
        principal_values: v_j of each agent's principal, (N, d).
        trans_cosine: Cosine threshold below which goals count as misaligned.

    Returns:
        Flags (N, 4) bool in the order of ``CATEGORIES``, and the primary category index (N,).
    """
    norms = np.linalg.norm(objective, axis=1) * np.linalg.norm(principal_values, axis=1)
    dot = np.einsum("ij,ij->i", objective, principal_values)
    cosine = np.divide(dot, norms, out=np.zeros_like(dot), where=norms > 0)
    flags = np.zeros((len(agent_capacity), 4), dtype=bool)
    flags[:, 0] = agent_capacity > principal_capacity
    flags[:, 1] = agent_capacity < principal_capacity
    flags[:, 2] = cosine < trans_cosine
    flags[:, 3] = ~flags[:, :3].any(axis=1)
    primary = np.full(len(agent_capacity), 3, dtype=np.int64)
    for index in reversed(_PRIMARY_ORDER):
        primary[flags[:, index]] = index
    return flags, primary


def gini(x: np.ndarray) -> float:
    """Gini coefficient of ``x`` (NaN when empty or when the mean is not positive).

    Negative entries are allowed (the coefficient may then exceed 1); it is the mean absolute
    difference over twice the mean.
    """
    n = len(x)
    if n == 0:
        return float("nan")
    mean = float(x.mean())
    if mean <= 0:
        return float("nan")
    ordered = np.sort(x)
    ranks = np.arange(1, n + 1)
    return float(np.sum((2 * ranks - n - 1) * ordered) / (n * n * mean))


def correlation(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation (NaN with fewer than 3 points or no variance)."""
    if len(x) < 3:
        return float("nan")
    sx, sy = x.std(), y.std()
    if sx == 0 or sy == 0:
        return float("nan")
    return float(np.mean((x - x.mean()) * (y - y.mean())) / (sx * sy))


def aggregate_steps(
    *,
    step: int,
    per_agent: dict[str, np.ndarray],
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
        per_agent: Per-agent metric arrays (proxy, value, ..., goodhart_adversarial).
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
    groups: list[tuple[str, np.ndarray, Any]] = [
        (p.name, principal_of == j, p) for j, p in enumerate(principals)
    ]
    groups.append(("all", np.ones(len(principal_of), dtype=bool), None))
    rows = []
    for name, mask, principal in groups:
        n = int(mask.sum())
        row: dict[str, Any] = {"step": step, "principal": name, "n_agents": n}
        row["alpha"] = principal.alpha if principal is not None else np.nan
        row["beta"] = principal.beta if principal is not None else np.nan
        for k, channel in enumerate(channel_names):
            row[f"belief_{channel}"] = (
                float(principal.value_belief[k]) if principal is not None else np.nan
            )
        for key, values in per_agent.items():
            row[key] = float(values[mask].mean()) if n else np.nan
        row["welfare"] = row["value"] + row["private_payoff"] + row["externality_received"]
        row["gini_utility"] = gini(per_agent["utility"][mask])
        for k, channel in enumerate(channel_names):
            row[f"effort_{channel}"] = float(action[mask, k].mean()) if n else np.nan
        for c, category in enumerate(CATEGORIES):
            in_category = mask & (primary == c)
            count = int(in_category.sum())
            row[f"n_{category}"] = count
            row[f"flagged_{category}"] = int((mask & flags[:, c]).sum())
            for loss in ("principal_loss", "mesa_loss"):
                row[f"{loss}_{category}"] = (
                    float(per_agent[loss][in_category].mean()) if count else np.nan
                )
        _selection_columns(row, selection_stats, principal)
        row["goodhart_extremal"] = float(outside[mask].mean()) if n else np.nan
        proxy, value = per_agent["proxy"][mask], per_agent["value"][mask]
        row["corr_proxy_value"] = correlation(proxy, value)
        if n:
            top = proxy >= np.quantile(proxy, top_quantile)
            row["corr_proxy_value_top"] = correlation(proxy[top], value[top])
        else:
            row["corr_proxy_value_top"] = np.nan
        row["share_stale"] = float(stale[mask].mean()) if n else np.nan
        row["n_caught"] = int(caught[mask].sum())
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
