"""Static figures of one run over time, drawn from recorded tables (never from a live model).

Every function takes the tables of a run (pandas DataFrames as read from its folder, see
:mod:`analysis.run_folder`) and writes a PNG (and an SVG next to it when ``svg=True``): proxy vs
true value per principal, the failure map by mesa-optimizer category, the principal loss split into
its causes (and per category flag), and the Goodhart breakdown.
Agent maps live in :mod:`analysis.agent_maps`, sweep figures in :mod:`analysis.sweep_figures`.
Colours come from the Okabe–Ito palette, which stays distinguishable under the common
colour-vision deficiencies.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from mesaopt.analysis.stats import t_quantile
from mesaopt.model.measures import FLAGS, PARTS
from mesaopt.model.recording import atomic_path

#: Okabe & Ito (2008) colour-blind-safe palette.
OKABE_ITO = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")

#: Fixed colour of each mesa-optimizer category (Okabe–Ito), the same in every figure and the app.
CATEGORY_COLOURS = {
    "super": "#D55E00",
    "sub": "#56B4E9",
    "trans": "#CC79A7",
    "stale": "#E69F00",
    "kind": "#0072B2",
    "aligned": "#009E73",
}


def save_figure(fig: plt.Figure, path: Path, svg: bool) -> Path:
    """Write ``fig`` as a PNG (and an SVG next to it) and close it.

    Args:
        fig: The figure.
        path: The PNG's path (folders are created).
        svg: Also write ``path`` with the ``.svg`` suffix.

    Returns:
        The PNG's path.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=130, bbox_inches="tight")
    if svg:
        with atomic_path(path.with_suffix(".svg")) as tmp:
            fig.savefig(tmp, bbox_inches="tight")
    plt.close(fig)
    return path


_save = save_figure


def _regime_steps(events: pd.DataFrame | None) -> list[int]:
    if events is None or events.empty:
        return []
    return sorted(int(s) for s in events.loc[events["kind"] == "regime", "step"].unique())


#: Height, in points, kept free of data at the top of an axes for the "regime change" label.
REGIME_LABEL_BAND = 16


def _mark_regimes(ax: plt.Axes, steps: list[int], *, label: bool = True) -> None:
    """Draw a dashed line at each regime change; with ``label``, name it in the axes' top band.

    The band (:data:`REGIME_LABEL_BAND` points) is kept free of data by raising the top of the y
    range, so the label never sits on a line. Call it after the axes' last plot: the range is
    then fixed.
    """
    for step in steps:
        ax.axvline(step, color="0.4", ls="--", lw=1)
    if not (label and steps):
        return
    _keep_top_band_free(ax, REGIME_LABEL_BAND)
    for step in steps:
        ax.annotate(
            "regime change",
            (step, 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(3, -3),
            textcoords="offset points",
            va="top",
            fontsize=8,
            color="0.3",
        )


def _keep_top_band_free(ax: plt.Axes, points: float) -> None:
    """Raise the top of ``ax``'s y range until its data stay ``points`` below the frame."""
    ax.autoscale_view()
    low, high = ax.get_ylim()
    height = ax.get_window_extent().height * 72.0 / ax.figure.dpi
    band = min(points / max(height, 1.0), 0.3)
    top = ax.dataLim.y1
    wanted = low + (top - low) / (1.0 - band)
    if np.isfinite(wanted) and wanted > high:
        ax.set_ylim(low, wanted)


def plot_proxy_vs_value(
    steps: pd.DataFrame, events: pd.DataFrame | None, path: str | Path, *, svg: bool = False
) -> Path:
    """Proxy M and true value V per principal over time, regime changes marked.

    Args:
        steps: The run's ``steps`` table.
        events: The run's ``events`` table (regime changes are drawn as vertical lines), or None.
        path: Where to write the PNG.
        svg: Also write an SVG next to it.

    Returns:
        The PNG's path.
    """
    principals = [p for p in steps["principal"].unique() if p != "all"]
    fig, axes = plt.subplots(
        1, len(principals), figsize=(5.2 * len(principals), 3.8), sharey=True, squeeze=False
    )
    regimes = _regime_steps(events)
    for ax, name in zip(axes[0], principals, strict=True):
        rows = steps[steps["principal"] == name].sort_values("step")
        ax.plot(rows["step"], rows["proxy"], color=OKABE_ITO[0], lw=1.6, label="proxy M")
        ax.plot(rows["step"], rows["value"], color=OKABE_ITO[1], lw=1.6, label="true value V")
        ax.axhline(0, color="0.8", lw=0.8)
        _mark_regimes(ax, regimes)
        ax.set_title(f"principal: {name}")
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("mean per agent (units of output)")
    axes[0][-1].legend(loc="best", frameon=False)
    fig.suptitle("Proxy vs true value per principal", y=1.02)
    return _save(fig, Path(path), svg)


def _agent_intervals(agents: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """Per principal and category: distinct agents and the t-interval half-width of each loss.

    An agent seen in several snapshots counts once (its losses are averaged over the snapshots
    in which it was of the category), so the interval is over agents, not agent-snapshots, which
    are strongly correlated.
    """
    needed = {"agent_id", "principal", "category", "principal_loss", "mesa_loss"}
    if agents is None or agents.empty or not needed <= set(agents.columns):
        return pd.DataFrame(columns=["principal", "category", "n"])
    per_agent = (
        agents.groupby(["principal", "category", "agent_id"], sort=False)[
            ["principal_loss", "mesa_loss"]
        ]
        .mean()
        .reset_index()
    )
    rows = []
    for (name, category), group in per_agent.groupby(["principal", "category"], sort=False):
        n = len(group)
        row: dict[str, object] = {"principal": name, "category": category, "n": n}
        for loss in ("principal_loss", "mesa_loss"):
            values = group[loss].to_numpy(dtype=float)
            values = values[np.isfinite(values)]
            if len(values) >= 2:
                t = t_quantile(0.5 + level / 2, len(values) - 1)
                row[f"{loss}_half"] = t * float(values.std(ddof=1)) / np.sqrt(len(values))
            else:
                row[f"{loss}_half"] = np.nan
        rows.append(row)
    return pd.DataFrame(rows)


def failure_table(steps: pd.DataFrame, agents: pd.DataFrame | None = None) -> pd.DataFrame:
    """Principal and mesa loss by principal and category, averaged over the run.

    Each step's category mean is weighted by the number of agents of that category, so the result
    is the mean loss per agent-step of the category. With the run's agent snapshots, each row
    also gets ``n`` (distinct agents of the category over the snapshots) and the half-widths
    ``principal_loss_half`` and ``mesa_loss_half`` of 95% Student-t intervals over those agents
    (NaN below two agents).

    Args:
        steps: The run's ``steps`` table.
        agents: The run's ``agents`` table (snapshots), or None.

    Returns:
        One row per principal and category: ``principal``, ``category``, ``agents`` (mean agents
        per step), ``principal_loss``, ``mesa_loss`` (NaN when the category never occurred),
        ``n``, ``principal_loss_half``, ``mesa_loss_half`` (NaN without snapshots).
    """
    rows = []
    for name in [p for p in steps["principal"].unique() if p != "all"]:
        group = steps[steps["principal"] == name]
        for category in CATEGORY_COLOURS:
            count = group[f"n_{category}"].to_numpy(dtype=float)
            total = count.sum()
            row = {"principal": name, "category": category, "agents": count.mean()}
            for loss in ("principal_loss", "mesa_loss"):
                values = np.nan_to_num(group[f"{loss}_{category}"].to_numpy(dtype=float))
                row[loss] = float((values * count).sum() / total) if total else np.nan
            rows.append(row)
    table = pd.DataFrame(rows)
    intervals = _agent_intervals(agents)
    table = table.merge(intervals, on=["principal", "category"], how="left")
    for column in ("n", "principal_loss_half", "mesa_loss_half"):
        if column not in table:
            table[column] = np.nan
    table["n"] = table["n"].astype(float)
    return table


#: Fewer agents than this in a category: its bar is hatched (no reliable interval).
FEW_AGENTS = 2


def plot_failure_map(
    steps: pd.DataFrame,
    path: str | Path,
    *,
    svg: bool = False,
    agents: pd.DataFrame | None = None,
) -> Path:
    """The two levels of failure by mesa-optimizer category: grouped bars with n and intervals.

    Left: principal loss (the principal built or paid a misaligned agent); right: mesa loss (the
    agent misses its own goal). Bars are grouped by category and coloured by principal. Over
    each bar is its n, so that a bar of one agent does not pass for one of hundreds: with the
    run's agent snapshots, the distinct agents of the category and a 95% interval over them
    (:func:`failure_table`); bars of fewer than :data:`FEW_AGENTS` agents are hatched and pale.
    Without snapshots, n is the mean count per step and no interval is drawn.

    Args:
        steps: The run's ``steps`` table.
        path: Where to write the PNG.
        svg: Also write an SVG next to it.
        agents: The run's ``agents`` table (snapshots), or None.

    Returns:
        The PNG's path.
    """
    table = failure_table(steps, agents)
    snapshots = bool(table["n"].notna().any())
    principals = list(dict.fromkeys(table["principal"]))
    categories = list(CATEGORY_COLOURS)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4))
    width = 0.8 / max(len(principals), 1)
    x = np.arange(len(categories))
    titles = {
        "principal_loss": "Principal loss (value units per agent-step)",
        "mesa_loss": "Mesa loss (utility units per agent-step)",
    }
    for ax, loss in zip(axes, ("principal_loss", "mesa_loss"), strict=True):
        for i, name in enumerate(principals):
            rows = table[table["principal"] == name].set_index("category").reindex(categories)
            heights = rows[loss].to_numpy(dtype=float)
            counts = rows["n"].to_numpy(dtype=float) if snapshots else rows["agents"].to_numpy()
            counts = np.nan_to_num(counts)
            halves = rows[f"{loss}_half"].to_numpy(dtype=float)
            offsets = x - 0.4 + width * (i + 0.5)
            colour = OKABE_ITO[i % len(OKABE_ITO)]
            few = snapshots & (counts < FEW_AGENTS)
            bars = ax.bar(
                offsets,
                np.nan_to_num(heights),
                width * 0.92,
                color=colour,
                label=name,
            )
            for bar, weak in zip(bars, few, strict=True):
                if weak:
                    bar.set_alpha(0.35)
                    bar.set_hatch("///")
                    bar.set_edgecolor(colour)
            ok = np.isfinite(heights) & np.isfinite(halves)
            if ok.any():
                ax.errorbar(
                    offsets[ok],
                    heights[ok],
                    yerr=halves[ok],
                    fmt="none",
                    ecolor="0.15",
                    elinewidth=1,
                    capsize=2.5,
                )
            per_step = rows["agents"].to_numpy(dtype=float)
            for bar, count, height, half, mean in zip(
                bars, counts, heights, halves, per_step, strict=True
            ):
                if not np.isfinite(height):
                    text = "none"
                elif snapshots and count < 1:  # seen between snapshots only
                    text = f"{mean:.2g}/step"
                else:
                    text = f"n={count:.0f}"
                top = np.nan_to_num(height) + (half if np.isfinite(half) else 0.0)
                ax.annotate(
                    text,
                    (bar.get_x() + bar.get_width() / 2, max(top, 0)),
                    xytext=(0, 2),
                    textcoords="offset points",
                    ha="center",
                    va="bottom",
                    fontsize=7,
                    color="0.25",
                )
        ax.axhline(0, color="0.5", lw=0.8)
        ax.set_xticks(x, categories)
        ax.set_xlabel("mesa-optimizer category (relative to its principal)")
        ax.set_title(titles[loss], fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        ax.margins(y=0.12)
    axes[0].set_ylabel("mean loss")
    from matplotlib.patches import Patch

    handles = [Patch(color=OKABE_ITO[i % len(OKABE_ITO)]) for i in range(len(principals))]
    axes[1].legend(
        handles, principals, title="principal", frameon=False, fontsize=8, title_fontsize=8
    )
    if snapshots:
        subtitle = (
            "n = distinct agents over the snapshots, with 95% t intervals over them; "
            f"hatched: fewer than {FEW_AGENTS} agents; x/step: mean agents per step, none in "
            "a snapshot"
        )
    else:
        subtitle = "n = mean agents per step (no agent snapshots: no intervals)"
    fig.suptitle(f"Failure map: who fails, and at which level\n{subtitle}", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, Path(path), svg)


#: The Shapley parts of the principal loss (``loss_<part>`` columns, :mod:`model.decomposition`),
#: each with its label and colour: a part's colour is that of the category it names in the failure
#: map (goals → trans, capacity → sub, world model → stale, kind → kind); noise names none.
LOSS_PARTS = {
    "goals": ("goals (θ + β m + δ Ga vs v)", CATEGORY_COLOURS["trans"]),
    "capacity": ("capacity (perception)", CATEGORY_COLOURS["sub"]),
    "world_model": ("world model (stale)", CATEGORY_COLOURS["stale"]),
    "kind": ("kind and power", CATEGORY_COLOURS["kind"]),
    "noise": ("output noise", "0.55"),
}
if tuple(LOSS_PARTS) != PARTS:
    raise RuntimeError("model.measures.PARTS changed: update analysis.figures.LOSS_PARTS")


def flag_loss_table(steps: pd.DataFrame) -> pd.DataFrame:
    """Principal loss per category flag, averaged over the run (an agent may hold several flags).

    Each step's mean over the flagged agents is weighted by their number, so the result is the
    mean loss per flagged agent-step, over every agent (not the decomposed sample).

    Args:
        steps: The run's ``steps`` table.

    Returns:
        One row per principal and flag: ``principal``, ``flag``, ``agents`` (mean flagged agents
        per step), ``principal_loss`` (NaN when the flag never held).
    """
    rows = []
    for name in [p for p in steps["principal"].unique() if p != "all"]:
        group = steps[steps["principal"] == name]
        for flag in FLAGS:
            count = group[f"flagged_{flag}"].to_numpy(dtype=float)
            total = count.sum()
            values = np.nan_to_num(group[f"principal_loss_flagged_{flag}"].to_numpy(dtype=float))
            rows.append(
                {
                    "principal": name,
                    "flag": flag,
                    "agents": float(count.mean()),
                    "principal_loss": float((values * count).sum() / total) if total else np.nan,
                }
            )
    return pd.DataFrame(rows)


def plot_loss_decomposition(
    steps: pd.DataFrame, events: pd.DataFrame | None, path: str | Path, *, svg: bool = False
) -> Path:
    """Where the principal loss comes from: its Shapley parts over time, and the loss per flag.

    One panel per principal draws each part's mean over the decomposed agents (``loss_<part>``)
    with a 95% band (± 1.96 ``loss_<part>_se``, the sample's standard error: no band when every
    agent is decomposed) and the principal loss over all agents (black), which the parts add up
    to when every agent is decomposed (on a sample, to within its standard errors). The last
    panel is the run's mean principal loss of the agents holding each category flag
    (:func:`flag_loss_table`), the losses a single primary category per agent would hide.

    Args:
        steps: The run's ``steps`` table.
        events: The run's ``events`` table (regime changes drawn as dashed lines), or None.
        path: Where to write the PNG.
        svg: Also write an SVG next to it.

    Returns:
        The PNG's path.
    """
    principals = [p for p in steps["principal"].unique() if p != "all"]
    regimes = _regime_steps(events)
    panels = len(principals) + 1
    fig, axes = plt.subplots(1, panels, figsize=(4.6 * panels, 4.0), squeeze=False)
    axes = axes[0]
    for ax, name in zip(axes[:-1], principals, strict=True):
        rows = steps[steps["principal"] == name].sort_values("step")
        step = rows["step"].to_numpy()
        for part, (label, colour) in LOSS_PARTS.items():
            mean = rows[f"loss_{part}"].to_numpy(dtype=float)
            half = 1.96 * rows[f"loss_{part}_se"].to_numpy(dtype=float)
            ax.plot(step, mean, lw=1.3, color=colour, label=label)
            if np.nanmax(half, initial=0.0) > 0:
                ax.fill_between(step, mean - half, mean + half, color=colour, alpha=0.2, lw=0)
        ax.plot(step, rows["principal_loss"], color="black", lw=1.0, ls=":", label="total")
        ax.axhline(0, color="0.6", lw=0.8)
        _mark_regimes(ax, regimes, label=ax is axes[0])
        decomposed = float(rows["n_decomposed"].mean()) if len(rows) else 0.0
        agents = float(rows["n_agents"].mean()) if len(rows) else 0.0
        ax.set_title(
            f"{name}: parts of the principal loss\n"
            f"({decomposed:,.0f} of {agents:,.0f} agents decomposed per step)",
            fontsize=10,
        )
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("value units per agent")
    axes[0].legend(frameon=False, fontsize=7.5, loc="best")

    ax = axes[-1]
    table = flag_loss_table(steps)
    width = 0.8 / max(len(principals), 1)
    x = np.arange(len(FLAGS))
    for i, name in enumerate(principals):
        rows = table[table["principal"] == name].set_index("flag").reindex(list(FLAGS))
        heights = rows["principal_loss"].to_numpy(dtype=float)
        bars = ax.bar(
            x - 0.4 + width * (i + 0.5),
            np.nan_to_num(heights),
            width * 0.92,
            color=OKABE_ITO[i % len(OKABE_ITO)],
            label=name,
        )
        for bar, height, count in zip(bars, heights, rows["agents"], strict=True):
            text = "none" if not np.isfinite(height) else f"{count:,.3g}/step"
            ax.annotate(
                text,
                (bar.get_x() + bar.get_width() / 2, max(np.nan_to_num(height), 0.0)),
                xytext=(0, 2),
                textcoords="offset points",
                ha="center",
                va="bottom",
                fontsize=6.5,
                color="0.25",
                rotation=90,
            )
    ax.axhline(0, color="0.5", lw=0.8)
    ax.set_xticks(x, FLAGS)
    ax.set_xlabel("category flag (flags overlap)")
    ax.set_title("Principal loss per flagged agent, run mean", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.margins(y=0.25)
    ax.legend(title="principal", frameon=False, fontsize=8, title_fontsize=8)
    fig.suptitle(
        "Where the principal loss comes from (Shapley parts; bands: 95% over the sampled agents)",
        fontsize=11,
    )
    fig.tight_layout()
    return save_figure(fig, Path(path), svg)


#: Goodhart measures of the ``steps`` table, with their panel titles and y labels.
GOODHART_PANELS = (
    ("goodhart_regressional", "Regressional: winner's curse", "measured − expected score"),
    ("goodhart_extremal", "Extremal: acting outside selection range", "share of agents"),
    ("goodhart_causal", "Causal: value lost to stale world models", "value per agent"),
    ("goodhart_adversarial", "Adversarial: value destroyed on gamed channels", "value per agent"),
)


def plot_goodhart_breakdown(
    steps: pd.DataFrame, events: pd.DataFrame | None, path: str | Path, *, svg: bool = False
) -> Path:
    """The four Goodhart variants over time, one panel each, one line per principal.

    Regressional Goodhart exists only at selection steps (drawn as markers); the others every step.

    Args:
        steps: The run's ``steps`` table.
        events: The run's ``events`` table (regime changes drawn as dashed lines), or None.
        path: Where to write the PNG.
        svg: Also write an SVG next to it.

    Returns:
        The PNG's path.
    """
    principals = [p for p in steps["principal"].unique() if p != "all"]
    regimes = _regime_steps(events)
    fig, axes = plt.subplots(2, 2, figsize=(11, 6.4), sharex=True)
    for ax, (column, title, ylabel) in zip(axes.flat, GOODHART_PANELS, strict=True):
        for i, name in enumerate(principals):
            rows = steps[steps["principal"] == name].sort_values("step")
            colour = OKABE_ITO[i % len(OKABE_ITO)]
            if column == "goodhart_regressional":
                rows = rows.dropna(subset=[column])
                ax.plot(rows["step"], rows[column], "o-", ms=3, lw=1, color=colour, label=name)
            else:
                ax.plot(rows["step"], rows[column], lw=1.4, color=colour, label=name)
        ax.axhline(0, color="0.8", lw=0.8)
        _mark_regimes(ax, regimes, label=ax is axes[0][0])
        ax.set_title(title, fontsize=10)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    for ax in axes[1]:
        ax.set_xlabel("step")
    axes[0][1].legend(title="principal", frameon=False, fontsize=8, title_fontsize=8)
    fig.suptitle("Goodhart breakdown over time", fontsize=11)
    fig.tight_layout()
    return save_figure(fig, Path(path), svg)
