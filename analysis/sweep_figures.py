"""Figures of a sweep folder: the over-optimization curve and any swept parameter vs any metric.

A sweep folder (written by ``run.py sweep``, layout in docs/sweeps.md) holds ``sweep.json`` and one
run folder per run under ``runs/<run_id>/``. :func:`read_sweep` reads every complete run's
``steps``, ``selections`` and manifest (never a live model) and reduces each run to a few numbers;
the swept parameters come from ``sweep.json`` (``parameters``) or, failing that, from the scenario
keys that differ between the runs' manifests. Intervals are 95% Student-t intervals over the
runs (replicates) at each parameter value.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from scipy import stats as sps

from analysis.figures import OKABE_ITO, save_figure
from analysis.theory import regressional_selection_gain

#: Run-level metrics of the ``steps`` table reduced per run (time mean over the run).
RUN_METRICS = ("value", "proxy", "principal_loss", "mesa_loss")

_METRIC_LABELS = {
    "value": "true value V per agent",
    "proxy": "proxy M per agent",
    "principal_loss": "principal loss per agent",
    "mesa_loss": "mesa loss per agent",
}


@dataclass(frozen=True)
class SweepRuns:
    """The runs of a sweep, each reduced to a few numbers.

    Attributes:
        path: The sweep folder.
        parameters: The swept dotted keys.
        runs: One row per run and principal (``all`` included): ``run_id``, the swept parameters,
            the time mean of every metric in :data:`RUN_METRICS`, and for real principals the
            mean selection gains ``measured_gain`` (chosen measured score − candidates' mean) and
            ``true_gain`` (chosen true value − candidates' mean), plus ``sd_true`` (candidates'
            sd of true value) and ``noise_var`` (n × squared mean score noise over candidates,
            an unbiased estimate of the score noise variance).
        train_on: Each principal's training signal (``metric`` or ``value``).
    """

    path: Path
    parameters: list[str]
    runs: pd.DataFrame
    train_on: dict[str, str]


def _lookup(data: Any, key: str) -> Any:
    for part in key.split("."):
        if isinstance(data, list):
            data = data[int(part)]
        elif isinstance(data, dict):
            data = data.get(part)
        else:
            return None
    return data


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(data, dict):
        for key, value in data.items():
            out.update(_flatten(value, f"{prefix}{key}."))
    elif isinstance(data, list) and data and isinstance(data[0], dict):
        for i, value in enumerate(data):
            out.update(_flatten(value, f"{prefix}{i}."))
    else:
        out[prefix.rstrip(".")] = json.dumps(data, sort_keys=True)
    return out


def _run_rows(folder: Path, manifest: dict[str, Any], parameters: list[str]) -> list[dict]:
    steps = pd.read_parquet(folder / "steps.parquet")
    selections_path = folder / "selections.parquet"
    selections = pd.read_parquet(selections_path) if selections_path.is_file() else pd.DataFrame()
    params = {key: _lookup(manifest["scenario"], key) for key in parameters}
    rows = []
    for name, group in steps.groupby("principal", sort=False):
        row: dict[str, Any] = {"run_id": folder.name, "principal": name, **params}
        for metric in RUN_METRICS:
            row[metric] = float(group[metric].mean())
        if name != "all" and not selections.empty:
            chosen = selections[selections["principal"] == name]
            if len(chosen):
                row["n"] = int(chosen["n"].iloc[0])
                row["measured_gain"] = float(
                    (chosen["chosen_proxy"] - chosen["candidates_mean_proxy"]).mean()
                )
                row["true_gain"] = float(
                    (chosen["chosen_true"] - chosen["candidates_mean_true"]).mean()
                )
                row["sd_true"] = float(chosen["candidates_sd_true"].mean())
                noise = chosen["candidates_mean_proxy"] - chosen["candidates_mean_expected_proxy"]
                row["noise_var"] = float((chosen["n"] * noise**2).mean())
        rows.append(row)
    return rows


def read_sweep(path: str | Path) -> SweepRuns:
    """Read and reduce every complete run of a sweep folder.

    Args:
        path: The sweep folder (``sweep.json`` and ``runs/<run_id>/``).

    Returns:
        The reduced runs.

    Raises:
        ValueError: If the folder has no complete run.
    """
    path = Path(path)
    record = json.loads((path / "sweep.json").read_text(encoding="utf-8"))
    folders = sorted(p for p in (path / "runs").iterdir() if (p / "manifest.json").is_file())
    if not folders:
        raise ValueError(f"{path}: the sweep has no complete run")
    manifests = {p: json.loads((p / "manifest.json").read_text(encoding="utf-8")) for p in folders}
    parameters = list(record.get("parameters") or [])
    if not parameters:
        flat = [_flatten(m["scenario"]) for m in manifests.values()]
        keys = sorted(set().union(*flat))
        parameters = [
            key for key in keys if key != "run.seed" and len({f.get(key) for f in flat}) > 1
        ]
    rows = [row for p in folders for row in _run_rows(p, manifests[p], parameters)]
    first = next(iter(manifests.values()))["scenario"]
    train_on = {p["name"]: p.get("train_on", "metric") for p in first.get("principals", [])}
    return SweepRuns(path, parameters, pd.DataFrame(rows), train_on)


def mean_ci(values: pd.Series | np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """Mean and Student-t confidence interval of a sample (NaN bounds below two values).

    Args:
        values: The sample (NaNs dropped).
        level: Confidence level.

    Returns:
        ``(mean, low, high)``.
    """
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return np.nan, np.nan, np.nan
    mean = float(x.mean())
    if len(x) < 2:
        return mean, np.nan, np.nan
    half = float(sps.t.ppf(0.5 + level / 2, len(x) - 1)) * float(x.std(ddof=1)) / np.sqrt(len(x))
    return mean, mean - half, mean + half


def _curve(frame: pd.DataFrame, by: str, column: str) -> pd.DataFrame:
    rows = []
    for value, group in frame.groupby(by, sort=True):
        mean, low, high = mean_ci(group[column])
        rows.append({by: value, "mean": mean, "low": low, "high": high, "runs": len(group)})
    return pd.DataFrame(rows)


def _draw_band(ax: plt.Axes, x: np.ndarray, curve: pd.DataFrame, colour: str, label: str) -> None:
    ax.plot(x, curve["mean"], "o-", color=colour, lw=1.6, ms=4, label=label)
    ax.fill_between(x, curve["low"], curve["high"], color=colour, alpha=0.2, lw=0)


def selection_parameters(sweep: SweepRuns) -> dict[str, str]:
    """Swept selection-power keys (``principals.<j>.selection.n``) and their principal's name."""
    names = list(sweep.train_on)
    found = {}
    for key in sweep.parameters:
        parts = key.split(".")
        if len(parts) == 4 and parts[0] == "principals" and parts[2:] == ["selection", "n"]:
            index = int(parts[1])
            if index < len(names):
                found[key] = names[index]
    return found


def plot_overoptimization(
    sweep: SweepRuns, key: str, principal: str, path: str | Path, *, svg: bool = False
) -> Path:
    """The over-optimization curve: what selection power buys on the proxy and in true value.

    Left: at selection, the chosen candidate's gain over the candidates' mean, measured (proxy)
    and true, vs log2 n, with the closed-form regressional prediction
    σ_θ²/√(σ_θ² + σ_ε²)·E[max of n N(0,1)] (:func:`analysis.theory.regressional_selection_gain`)
    overlaid when the principal trains on its value belief (then the score is true value plus
    noise; σ_θ and σ_ε are estimated from the selections table). Right: the deployed agents'
    time-mean proxy and true value vs log2 n. Bands are 95% t intervals over runs.

    Args:
        sweep: The reduced sweep (:func:`read_sweep`).
        key: The swept selection key, e.g. ``principals.0.selection.n``.
        principal: The name of the principal that key belongs to.
        path: Where to write the PNG.
        svg: Also write an SVG next to it.

    Returns:
        The PNG's path.
    """
    frame = sweep.runs[sweep.runs["principal"] == principal].dropna(subset=[key]).copy()
    frame["bits"] = np.log2(frame[key].astype(float))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    left, right = axes
    measured = _curve(frame, "bits", "measured_gain")
    true = _curve(frame, "bits", "true_gain")
    x = measured["bits"].to_numpy()
    _draw_band(left, x, measured, OKABE_ITO[0], "measured (proxy) gain")
    _draw_band(left, x, true, OKABE_ITO[1], "true-value gain")
    applies = sweep.train_on.get(principal) == "value"
    if applies and "sd_true" in frame and (frame[key].astype(float) > 1).any():
        several = frame[frame[key].astype(float) > 1]  # one candidate has no spread
        sigma_theta = float(several["sd_true"].mean()) if len(several) else np.nan
        sigma_eps = float(np.sqrt(frame["noise_var"].mean()))
        grid = np.unique(np.round(np.logspace(0, np.log2(frame[key].max()), 40, base=2)))
        prediction = [regressional_selection_gain(int(n), sigma_theta, sigma_eps) for n in grid]
        left.plot(
            np.log2(grid),
            prediction,
            color="0.2",
            ls=":",
            lw=1.6,
            label=f"regressional prediction (σ_θ={sigma_theta:.2f}, σ_ε={sigma_eps:.2f})",
        )
        note = "prediction: score = true value + Gaussian noise"
    else:
        note = "no closed-form overlay: the principal trains on the metric, not on value"
    left.set_title("At selection: chosen candidate − candidates' mean", fontsize=10)
    left.set_ylabel("gain (score / value units)")
    left.annotate(note, (0.01, 0.01), xycoords="axes fraction", fontsize=7, color="0.35")
    for metric, colour, label in (
        ("proxy", OKABE_ITO[0], "proxy M"),
        ("value", OKABE_ITO[1], "true value V"),
    ):
        curve = _curve(frame, "bits", metric)
        _draw_band(right, curve["bits"].to_numpy(), curve, colour, label)
    right.set_title("Deployed agents: time mean per agent", fontsize=10)
    right.set_ylabel("units of output per agent")
    for ax in axes:
        ax.set_xlabel("selection power log₂ n (bits)")
        ax.axhline(0, color="0.8", lw=0.8)
        ax.grid(alpha=0.3)
        ax.legend(frameon=False, fontsize=8)
    runs = int(frame.groupby("bits").size().min())
    fig.suptitle(
        f"Over-optimization: principal {principal} ({key}); 95% CI over ≥{runs} runs per point",
        fontsize=11,
    )
    fig.tight_layout()
    return save_figure(fig, Path(path), svg)


def plot_parameter_vs_metrics(
    sweep: SweepRuns,
    parameter: str,
    path: str | Path,
    *,
    metrics: tuple[str, ...] = RUN_METRICS,
    svg: bool = False,
) -> Path:
    """A swept parameter vs run-level metrics, one panel per metric, one line per principal.

    Points average over runs (replicates and every other swept parameter) at each value of
    ``parameter``; bands are 95% t intervals. Non-numeric parameters are drawn as categories.

    Args:
        sweep: The reduced sweep (:func:`read_sweep`).
        parameter: The swept dotted key on the x axis.
        path: Where to write the PNG.
        metrics: Columns of :attr:`SweepRuns.runs` on the y axes.
        svg: Also write an SVG next to it.

    Returns:
        The PNG's path.
    """
    frame = sweep.runs.dropna(subset=[parameter]).copy()
    numeric = pd.api.types.is_numeric_dtype(frame[parameter])
    if not numeric:
        frame[parameter] = frame[parameter].astype(str)
    names = list(dict.fromkeys(frame["principal"]))
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.4 * len(metrics) + 0.6, 3.6))
    axes = np.atleast_1d(axes)
    for ax, metric in zip(axes, metrics, strict=True):
        for i, name in enumerate(names):
            curve = _curve(frame[frame["principal"] == name], parameter, metric)
            x = curve[parameter].to_numpy(dtype=float) if numeric else np.arange(len(curve))
            colour = "0.15" if name == "all" else OKABE_ITO[i % len(OKABE_ITO)]
            _draw_band(ax, x, curve, colour, name)
            if not numeric:
                ax.set_xticks(x, curve[parameter])
        ax.set_title(_METRIC_LABELS.get(metric, metric), fontsize=9)
        ax.set_xlabel(parameter, fontsize=8)
        ax.grid(alpha=0.3)
        values = frame[parameter].to_numpy(dtype=float) if numeric else np.zeros(0)
        if numeric and values.min() > 0 and values.max() >= 8 * values.min():
            ax.set_xscale("log", base=2)
    handles, labels = axes[-1].get_legend_handles_labels()
    fig.legend(
        handles,
        labels,
        title="principal",
        loc="center left",
        bbox_to_anchor=(1.0, 0.5),
        frameon=False,
        fontsize=8,
        title_fontsize=8,
    )
    others = [p for p in sweep.parameters if p != parameter]
    note = f"; averaged over {', '.join(others)}" if others else ""
    fig.suptitle(f"{parameter} vs run metrics (time means, 95% CI over runs{note})", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, Path(path), svg)
