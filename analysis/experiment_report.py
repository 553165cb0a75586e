"""The experiments' report page: one figure per experiment and the verdicts with their numbers.

:func:`write_report` writes ``OUT/report/index.html`` (self-contained but for its PNGs, which sit
next to it as ``OUT/report/<experiment>.png``). Each figure has one panel per claim: for a claim
without a swept parameter, the claim's metric over time in its two arms (mean over replicates,
95% t band per step; the claim's step windows shaded); for a claim along a swept parameter, the
claim's per-run quantity against the swept value in each arm (mean and 95% t interval over
replicates). The bands are per arm; the verdict's interval is that of the paired differences,
which is narrower when the arms share their random draws (:mod:`analysis.verdicts`).
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from mesaopt.analysis.experiment_files import Claim, Experiment
from mesaopt.analysis.experiments import arm_steps, run_quantity
from mesaopt.analysis.figures import OKABE_ITO, save_figure
from mesaopt.analysis.stats import t_quantile

_VERDICT_COLOURS = {"supported": "#009E73", "refuted": "#D55E00", "inconclusive": "#777777"}


def _band(values: pd.DataFrame, by: str, column: str) -> pd.DataFrame:
    """Mean and 95% t interval of ``column`` over replicates at each value of ``by``."""
    grouped = values.groupby(by)[column]
    frame = grouped.agg(["mean", "std", "count"])
    quantile = t_quantile(0.975, np.maximum(frame["count"] - 1, 1).to_numpy())
    half = np.where(frame["count"] > 1, quantile * frame["std"] / np.sqrt(frame["count"]), np.nan)
    return frame.assign(low=frame["mean"] - half, high=frame["mean"] + half)


def _per_step(steps: pd.DataFrame, claim: Claim) -> pd.DataFrame:
    """The claim's metric per step and seed (the versus principal's subtracted)."""
    own = steps[steps["principal"] == claim.principal].set_index(["seed", "step"])[claim.metric]
    if claim.versus_principal is not None:
        other = steps[steps["principal"] == claim.versus_principal]
        own = own - other.set_index(["seed", "step"])[claim.metric]
    return own.rename("y").reset_index()


def _arms(claim: Claim) -> list[str]:
    return [claim.arm] if claim.control is None else [claim.arm, claim.control]


def _draw_time(ax: plt.Axes, claim: Claim, steps: dict[str, pd.DataFrame]) -> None:
    for colour, arm in zip(OKABE_ITO, _arms(claim), strict=False):
        band = _band(_per_step(steps[arm], claim), "step", "y")
        if band.empty:
            ax.plot([], [], color=colour, lw=1.5, label=f"{arm} (no finished run)")
            continue
        ax.plot(band.index, band["mean"], color=colour, lw=1.5, label=arm)
        ax.fill_between(band.index, band["low"], band["high"], color=colour, alpha=0.25, lw=0)
    for window, shade in ((claim.steps, 0.10), (claim.versus_steps, 0.05)):
        if window is not None:
            ax.axvspan(window[0], window[1], color="black", alpha=shade, lw=0)
    ax.set_xlabel("step")


def _draw_sweep(
    ax: plt.Axes, experiment: Experiment, claim: Claim, steps: dict[str, pd.DataFrame]
) -> None:
    positions = np.arange(len(experiment.sweep_values))
    for colour, arm in zip(OKABE_ITO, _arms(claim), strict=False):
        quantity = run_quantity(steps[arm], claim).rename("y").reset_index()
        band = _band(quantity, "design_id", "y").reindex(range(len(positions)))
        ax.errorbar(
            positions,
            band["mean"],
            yerr=[band["mean"] - band["low"], band["high"] - band["mean"]],
            fmt="o-",
            color=colour,
            capsize=3,
            lw=1.5,
            label=arm,
        )
    marked = list(claim.along) if claim.along is not None else [claim.at]
    for value in marked:
        ax.axvline(experiment.sweep_values.index(value), color="black", alpha=0.15, lw=6)
    ax.set_xticks(positions, [str(v) for v in experiment.sweep_values])
    ax.set_xlabel(experiment.sweep_key or "")


def plot_experiment(experiment: Experiment, folder: Path, table: pd.DataFrame, path: Path) -> Path:
    """One figure of an experiment: a panel per claim, treatment and control with 95% bands.

    Args:
        experiment: The experiment.
        folder: ``OUT/<experiment>`` (its arms' sweep folders).
        table: Its rows of the verdict table, in claim order.
        path: The PNG to write.

    Returns:
        ``path``.
    """
    metrics = sorted({claim.metric for claim in experiment.claims})
    steps = {arm: arm_steps(folder / arm, metrics) for arm in experiment.arms_used()}
    count = len(experiment.claims)
    fig, axes = plt.subplots(1, count, figsize=(4.6 * count, 3.8), squeeze=False)
    for i, (ax, claim) in enumerate(zip(axes[0], experiment.claims, strict=True)):
        if experiment.sweep_key:
            _draw_sweep(ax, experiment, claim, steps)
        else:
            _draw_time(ax, claim, steps)
        row = table.iloc[i]
        ax.set_title(
            f"claim {i + 1}: {row['verdict']}\neffect {row['effect']:.3g} "
            f"[{row['ci_low']:.3g}, {row['ci_high']:.3g}], n = {row['n']}",
            fontsize=9,
            color=_VERDICT_COLOURS.get(row["verdict"], "black"),
        )
        who = (
            claim.principal
            if claim.versus_principal is None
            else (f"{claim.principal} − {claim.versus_principal}")
        )
        ax.set_ylabel(f"{claim.metric} ({who})", fontsize=8)
        ax.legend(fontsize=8, frameon=False)
        ax.grid(alpha=0.3)
    fig.suptitle(experiment.title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path, svg=False)


def _number(value: float) -> str:
    return "NaN" if not np.isfinite(value) else f"{value:.4g}"


def _claim_html(i: int, row: pd.Series) -> str:
    sign = "positive" if row["expected_sign"] == 1 else "negative"
    colour = _VERDICT_COLOURS.get(row["verdict"], "black")
    return (
        f"<li><p>{html.escape(row['claim'])}</p>"
        f"<p><b style='color:{colour}'>{row['verdict']}</b> — claim {i + 1} expects a {sign} "
        f"effect of <code>{html.escape(row['arms'])}</code> on "
        f"<code>{html.escape(row['metric'])}</code>: effect {_number(row['effect'])}, 95% CI "
        f"[{_number(row['ci_low'])}, {_number(row['ci_high'])}] over {row['n']} replicate pairs "
        f"(treatment mean {_number(row['treatment_mean'])}, control mean "
        f"{_number(row['control_mean'])}).</p></li>"
    )


def write_report(experiments: list[Experiment], table: pd.DataFrame, out: Path) -> Path:
    """Write ``out/report/index.html`` and one PNG per experiment; remove other experiments' PNGs.

    Args:
        experiments: The experiments that ran.
        table: The verdict table.
        out: The experiments' output folder.

    Returns:
        The HTML page's path.
    """
    report = out / "report"
    report.mkdir(parents=True, exist_ok=True)
    counts = table["verdict"].value_counts().to_dict() if not table.empty else {}
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>mesaopt experiments</title>",
        "<style>body{font-family:sans-serif;max-width:70em;margin:auto;padding:1em}"
        "td,th{padding:2px 8px;border-bottom:1px solid #ddd;font-size:90%}"
        "img{max-width:100%}</style></head><body>",
        "<h1>The essay's claims as experiments</h1>",
        "<p>Each claim compares a treatment arm with a control arm that differs by one mechanism, "
        "run with the same replicate seeds; the effect is the mean paired difference with its "
        "95% t interval. <i>supported</i>: the interval excludes zero on the claim's side; "
        "<i>refuted</i>: on the other side; <i>inconclusive</i>: it contains zero. "
        + ", ".join(f"{counts.get(v, 0)} {v}" for v in ("supported", "refuted", "inconclusive"))
        + ".</p>",
        table.drop(columns=["claim"]).to_html(index=False, float_format=lambda v: f"{v:.4g}"),
    ]
    for experiment in experiments:
        rows = table[table["experiment"] == experiment.name].reset_index(drop=True)
        folder = out / experiment.name
        figure = plot_experiment(experiment, folder, rows, report / f"{experiment.name}.png")
        size_file = folder / "size.json"
        size = json.loads(size_file.read_text(encoding="utf-8")) if size_file.is_file() else {}
        parts.append(f"<h2>{html.escape(experiment.name)}: {html.escape(experiment.title)}</h2>")
        parts.append(
            f"<p>File <code>scenarios/experiments/{experiment.path.name}</code>; arms "
            f"{', '.join(experiment.arms_used())}; size {html.escape(json.dumps(size))}.</p>"
        )
        parts.append("<ol>" + "".join(_claim_html(i, row) for i, row in rows.iterrows()) + "</ol>")
        parts.append(f"<img src='{figure.name}' alt='{html.escape(experiment.title)}'>")
    parts.append("</body></html>")
    page = report / "index.html"
    page.write_text("\n".join(parts), encoding="utf-8")
    # A figure of an experiment that did not run in this call would sit next to a page (and a
    # verdict table) that no longer describe it: only this call's figures stay.
    drawn = {f"{experiment.name}.png" for experiment in experiments}
    for old in report.glob("*.png"):
        if old.name not in drawn:
            old.unlink()
    return page
