"""Figures of a sweep folder: the over-optimization curve and any swept parameter vs any metric.

A sweep folder (written by ``run.py sweep``, layout in docs/sweeps.md) holds ``sweep.json`` and one
run folder per run under ``runs/<run_id>/``. :func:`read_sweep` reads the ``steps``, ``selections``
and manifest (never a live model) of every complete run that ``sweep.json`` lists — ``runs/`` may
also keep runs of an earlier design, which are not part of this sweep — and reduces each run to a
few numbers; the swept parameters come from ``sweep.json`` (``parameters``) or, failing that, from
the scenario keys that differ between the runs' manifests. Intervals are 95% Student-t intervals
over the runs (replicates) at each parameter value.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from mesaopt.analysis.figures import OKABE_ITO, save_figure
from mesaopt.analysis.stats import t_quantile
from mesaopt.analysis.theory import (
    expected_max_std_normal,
    regressional_selection_gain,
    student_t_selection_curve,
)
from mesaopt.model.atomic_folder import run_is_complete
from mesaopt.model.measures import PARTS

#: Monte-Carlo selections per n of the heavy-tail reference curve (its SE is drawn as a band).
HEAVY_TAIL_REPS = 2000

#: Run-level metrics of the ``steps`` table reduced per run (time mean over the run).
RUN_METRICS = ("value", "proxy", "principal_loss", "mesa_loss")

#: The principal loss's Shapley parts (``loss_<part>`` of the ``steps`` table), also reduced to
#: their time means per run and drawn against each swept parameter.
LOSS_PART_METRICS = tuple(f"loss_{part}" for part in PARTS)

_METRIC_LABELS = {
    "value": "true value V per agent",
    "proxy": "proxy M per agent",
    "principal_loss": "principal loss per agent",
    "mesa_loss": "mesa loss per agent",
    "loss_goals": "loss part: goals",
    "loss_capacity": "loss part: capacity",
    "loss_world_model": "loss part: world model",
    "loss_kind": "loss part: kind and power",
    "loss_noise": "loss part: output noise",
}


@dataclass(frozen=True)
class SweepRuns:
    """The runs of a sweep, each reduced to a few numbers.

    Attributes:
        path: The sweep folder.
        parameters: The swept dotted keys.
        runs: One row per run and principal (``all`` included): ``run_id``, the swept parameters,
            the time mean of every metric in :data:`RUN_METRICS` and :data:`LOSS_PART_METRICS`
            (when the runs recorded them), and for real principals the
            mean selection gains ``measured_gain`` (chosen measured score − candidates' mean) and
            ``true_gain`` (chosen true value − candidates' mean), plus ``sd_true`` (candidates'
            sd of true value) and ``noise_var`` (n × squared mean score noise over candidates,
            an unbiased estimate of the score noise variance), ``var_true`` (candidates'
            variance of true value, unbiased; NaN for n = 1); ``design_id`` and ``replicate``
            come from ``sweep.json``.
        train_on: Each principal's training signal (``metric`` or ``value``).
        closed_form: Per principal, ``None`` when the regressional closed form applies to every
            run, else why it does not (the first failing run's reason).
        missing: Run ids listed in ``sweep.json`` without a complete run folder (failed or not
            yet run).
        heavy_tail: Per principal, its Student-t reference when every run has the same one
            (:func:`heavy_tail_reference`), else None.
        seed: The sweep seed (``sweep.json``), which seeds the Monte-Carlo references.
    """

    path: Path
    parameters: list[str]
    runs: pd.DataFrame
    train_on: dict[str, str]
    closed_form: dict[str, str | None] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    heavy_tail: dict[str, HeavyTailReference | None] = field(default_factory=dict)
    seed: int = 0


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


def closed_form_condition(scenario: dict[str, Any], index: int) -> str | None:
    """Whether a principal's selection score is its true value plus noise, from a run's scenario.

    Candidates are scored by ``s·ȳ`` (ȳ: mean sandbox outcome = action + noise) and their true
    value is ``v·a`` (:func:`agents.sandbox.select_best_of_n`), so the score is the true value
    up to noise exactly when the training signal ``s`` equals the principal's true values ``v``
    on every channel: ``train_on = "metric"`` with ``m = v`` on every channel, or
    ``train_on = "value"`` with ``v̂ = v`` (every channel it values is within its capacity, and no
    federated update refits ``v̂`` during the run). A regime change of a channel's value, metric
    or level during the run may break the equality, so it voids the condition. The closed form
    is Gaussian: the score noise of every channel the signal weighs must be normal, or Student-t
    with df ≥ :data:`NORMAL_APPROXIMATION_DF` (heavy tails have :func:`heavy_tail_reference`).

    Args:
        scenario: A run's fully resolved scenario (``manifest.json`` ``scenario``).
        index: The principal's position in ``scenario["principals"]``.

    Returns:
        ``None`` when the closed form applies, else the reason it does not (one short phrase).
    """
    reason = _signal_condition(scenario, index)
    if reason is not None:
        return reason
    principal = scenario["principals"][index]
    overrides = principal.get("values") or {}
    values = np.array([float(overrides.get(c["name"], c["value"])) for c in scenario["channels"]])
    samples = int((principal.get("selection") or {}).get("eval_samples", 4))
    return _gaussian_noise_condition(scenario, values, samples)


def _signal_condition(scenario: dict[str, Any], index: int) -> str | None:
    """None when the principal's training signal is its true value (noise aside), else why not."""
    principal = scenario["principals"][index]
    channels = scenario["channels"]
    overrides = principal.get("values") or {}
    values = np.array([float(overrides.get(c["name"], c["value"])) for c in channels])
    metric = np.array([float(c["metric"]) for c in channels])
    train_on = principal.get("train_on", "metric")
    steps = int(scenario.get("run", {}).get("steps", 0))
    if train_on == "metric":
        if not np.allclose(metric, values):
            return "it trains on the metric and m ≠ v on some channel"
    else:
        level = np.array([int(c.get("level", 0)) for c in channels])
        unseen = (level > int(principal.get("capacity", 0))) & (values != 0)
        if unseen.any():
            return "it trains on v̂, which misses a valued channel beyond its capacity"
        every = int((principal.get("federated") or {}).get("every", 0))
        if 0 < every <= steps:
            return "it trains on v̂, which federated updates refit during the run"
    for regime in scenario.get("regimes") or []:
        if int(regime["at"]) <= steps and {"value", "metric", "level"} & set(regime["set"]):
            return f"a regime change at step {regime['at']} alters m, v or a channel level"
    return None


#: The Gaussian closed form is drawn when the score noise's excess kurtosis is at most that of
#: one Student-t with this many degrees of freedom, 6 / (df − 4) = 0.23 — the usual rule of thumb
#: for the normal approximation of t. Heavier score noise gets the Monte-Carlo reference instead
#: (:func:`heavy_tail_reference`) or no overlay.
NORMAL_APPROXIMATION_DF = 30.0
MAX_EXCESS_KURTOSIS = 6.0 / (NORMAL_APPROXIMATION_DF - 4.0)


def _noise_moments(noise: dict[str, Any]) -> tuple[float, float]:
    """Variance and excess kurtosis of one channel's noise (inf where they do not exist)."""
    dist, scale = noise.get("dist", "normal"), float(noise.get("scale", 1.0))
    if dist == "laplace":
        return 2.0 * scale**2, 3.0
    if dist == "student_t":
        df = float(noise.get("df", 3.0))
        variance = scale**2 * df / (df - 2.0) if df > 2 else np.inf
        return variance, 6.0 / (df - 4.0) if df > 4 else np.inf
    return scale**2, 0.0


def _noises(scenario: dict[str, Any], channel: dict[str, Any]) -> list[dict[str, Any]]:
    """A channel's noise, then after each regime change that sets it (within the run)."""
    steps = int(scenario.get("run", {}).get("steps", 0))
    noise = dict(channel.get("noise") or {"dist": "normal", "scale": 1.0, "df": 3.0})
    out = [noise]
    for regime in scenario.get("regimes") or []:
        new = regime.get("set", {}).get("noise")
        if regime.get("channel") == channel["name"] and int(regime["at"]) <= steps and new:
            noise = noise | dict(new)
            out.append(noise)
    return out


def _gaussian_noise_condition(
    scenario: dict[str, Any], signal: np.ndarray, eval_samples: int
) -> str | None:
    """None when the score noise is near enough Gaussian for the closed form, else why not.

    The score noise is Σ_k s_k·ε̄_k, ε̄_k the mean of ``eval_samples`` draws of channel k's noise;
    its excess kurtosis is Σ_k κ_k·(s_k²σ_k²)² / (Σ_k s_k²σ_k²)² / eval_samples for independent
    channels (κ_k, σ_k² the channel's; the worst noise a regime change sets counts). It must be
    at most :data:`MAX_EXCESS_KURTOSIS`.
    """
    parts = []
    for channel, weight in zip(scenario["channels"], signal, strict=True):
        if weight == 0:
            continue
        moments = [_noise_moments(n) for n in _noises(scenario, channel)]
        variance, kurtosis = max(moments, key=lambda m: (m[1], m[0]))
        parts.append((channel["name"], weight**2 * variance, kurtosis))
    if not parts:
        return None
    worst = max(parts, key=lambda p: (p[2], p[1]))
    if any(not np.isfinite(v) for _, v, _ in parts):
        name = next(n for n, v, _ in parts if not np.isfinite(v))
        return f"channel {name!r} has score noise of infinite variance (Student-t, df ≤ 2)"
    total = sum(v for _, v, _ in parts)
    if total == 0:
        return None
    excess = sum(k * v**2 for _, v, k in parts if v > 0) / total**2 / max(eval_samples, 1)
    if excess > MAX_EXCESS_KURTOSIS:
        shown = "∞" if not np.isfinite(excess) else f"{excess:.2g}"
        return (
            f"the score noise is heavy-tailed (excess kurtosis {shown}, mostly channel "
            f"{worst[0]!r}; the Gaussian closed form needs ≤ {MAX_EXCESS_KURTOSIS:.2g}, that of "
            f"Student-t with df = {NORMAL_APPROXIMATION_DF:g})"
        )
    return None


@dataclass(frozen=True)
class HeavyTailReference:
    """The Student-t selection a principal's sweep is compared with (Monte Carlo).

    Attributes:
        scale: Scale of the score's t noise (|signal weight| × the channel's noise scale).
        df: Its degrees of freedom.
        channel: The channel it comes from.
    """

    scale: float
    df: float
    channel: str


def heavy_tail_reference(scenario: dict[str, Any], index: int) -> HeavyTailReference | None:
    """Whether a principal's score is true value + scaled Student-t noise, from a run's scenario.

    That holds when the closed-form condition holds but for the noise
    (:func:`closed_form_condition`: the training signal is the true value), exactly one channel
    carries signal weight, its noise is Student-t with df below
    :data:`NORMAL_APPROXIMATION_DF` throughout the run (too heavy for the Gaussian closed
    form), and each candidate is scored on one
    sandbox sample (``eval_samples = 1``: a mean of several t draws is not t). Then
    :func:`analysis.theory.student_t_selection_curve` is the reference for the true-value gain.

    Args:
        scenario: A run's fully resolved scenario (``manifest.json`` ``scenario``).
        index: The principal's position in ``scenario["principals"]``.

    Returns:
        The reference's noise, or None when it does not apply.
    """
    if _signal_condition(scenario, index) is not None:
        return None
    principal = scenario["principals"][index]
    if int((principal.get("selection") or {}).get("eval_samples", 4)) != 1:
        return None
    overrides = principal.get("values") or {}
    channels = scenario["channels"]
    weights = [float(overrides.get(c["name"], c["value"])) for c in channels]
    scored = [(c, w) for c, w in zip(channels, weights, strict=True) if w != 0]
    if len(scored) != 1:
        return None
    channel, weight = scored[0]
    noises = _noises(scenario, channel)
    if len({json.dumps(n, sort_keys=True) for n in noises}) != 1:
        return None
    noise = noises[0]
    if noise.get("dist") != "student_t" or _noise_moments(noise)[1] <= MAX_EXCESS_KURTOSIS:
        return None
    return HeavyTailReference(
        abs(weight) * float(noise["scale"]), float(noise["df"]), str(channel["name"])
    )


def _run_rows(
    folder: Path, manifest: dict[str, Any], parameters: list[str], extra: dict[str, Any]
) -> list[dict]:
    steps = pd.read_parquet(folder / "steps.parquet")
    selections_path = folder / "selections.parquet"
    selections = pd.read_parquet(selections_path) if selections_path.is_file() else pd.DataFrame()
    params = {key: _lookup(manifest["scenario"], key) for key in parameters}
    rows = []
    for name, group in steps.groupby("principal", sort=False):
        row: dict[str, Any] = {"run_id": folder.name, **extra, "principal": name, **params}
        for metric in RUN_METRICS:
            row[metric] = float(group[metric].mean())
        for metric in LOSS_PART_METRICS:
            if metric in group:  # (runs of mesaopt 1 have no decomposition)
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
                several = chosen[chosen["n"] > 1]  # n/(n−1): sd over candidates has ddof 0
                row["var_true"] = (
                    float(
                        (
                            several["candidates_sd_true"] ** 2 * several["n"] / (several["n"] - 1)
                        ).mean()
                    )
                    if len(several)
                    else np.nan
                )
                noise = chosen["candidates_mean_proxy"] - chosen["candidates_mean_expected_proxy"]
                row["noise_var"] = float((chosen["n"] * noise**2).mean())
        rows.append(row)
    return rows


#: Run ids a ``sweep.json`` may name: one folder name inside ``runs/`` (no separators, no "..").
SAFE_RUN_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


def _read_manifest(file: Path) -> dict[str, Any] | None:
    """A run's manifest, or None when it is missing, empty, truncated or has no scenario."""
    try:
        manifest = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("scenario"), dict):
        return None
    return manifest


def read_sweep(path: str | Path) -> SweepRuns:
    """Read and reduce every complete run of a sweep folder that ``sweep.json`` lists.

    ``runs/`` keeps the folders of runs from earlier designs (docs/sweeps.md); only the run ids
    in ``sweep.json`` (``runs[].run_id``) belong to the sweep. A ``sweep.json`` without a
    ``runs`` list (written by hand) stands for every complete folder in ``runs/``. A run whose
    manifest is missing, empty or truncated counts as missing.

    Args:
        path: The sweep folder (``sweep.json`` and ``runs/<run_id>/``).

    Returns:
        The reduced runs, in ``sweep.json`` order.

    Raises:
        ValueError: If ``sweep.json`` cannot be read, names a run id that is not one folder name
            (``../x``), or none of the sweep's runs is complete.
    """
    path = Path(path)
    record = json.loads((path / "sweep.json").read_text(encoding="utf-8"))
    if not isinstance(record, dict):
        raise ValueError(f"{path / 'sweep.json'}: not a sweep record (a JSON object)")
    listed = record.get("runs")
    if listed is None:
        entries = {p.name: {} for p in sorted((path / "runs").iterdir()) if p.is_dir()}
    else:
        entries = {}
        for entry in listed:
            extra = {k: entry[k] for k in ("design_id", "replicate") if k in entry}
            run_id = str(entry["run_id"])
            if not SAFE_RUN_ID.fullmatch(run_id):  # a hand-edited id must not leave runs/
                raise ValueError(f"{path / 'sweep.json'}: runs: unsafe run_id {run_id!r}")
            entries.setdefault(run_id, extra)
    manifests = {}
    for rid in entries:
        folder = path / "runs" / rid
        manifest = _read_manifest(folder / "manifest.json") if run_is_complete(folder) else None
        if manifest is not None:  # failed, truncated or missing runs are left out
            manifests[folder] = manifest
    folders = list(manifests)
    missing = [rid for rid in entries if path / "runs" / rid not in manifests]
    if not folders:
        raise ValueError(f"{path}: none of the sweep's {len(entries)} runs is complete")
    parameters = list(record.get("parameters") or [])
    if not parameters:
        flat = [_flatten(m["scenario"]) for m in manifests.values()]
        keys = sorted(set().union(*flat))
        parameters = [
            key for key in keys if key != "run.seed" and len({f.get(key) for f in flat}) > 1
        ]
    rows = [row for p in folders for row in _run_rows(p, manifests[p], parameters, entries[p.name])]
    first = next(iter(manifests.values()))["scenario"]
    train_on = {p["name"]: p.get("train_on", "metric") for p in first.get("principals", [])}
    closed_form: dict[str, str | None] = {}
    for name in train_on:
        reasons = [
            closed_form_condition(m["scenario"], i)
            for m in manifests.values()
            for i, p in enumerate(m["scenario"].get("principals", []))
            if p["name"] == name
        ]
        closed_form[name] = next((r for r in reasons if r is not None), None)
    heavy_tail: dict[str, HeavyTailReference | None] = {}
    for name in train_on:
        references = {
            heavy_tail_reference(m["scenario"], i)
            for m in manifests.values()
            for i, p in enumerate(m["scenario"].get("principals", []))
            if p["name"] == name
        }
        heavy_tail[name] = references.pop() if len(references) == 1 else None
    seed = record.get("sweep_seed")
    return SweepRuns(
        path,
        parameters,
        pd.DataFrame(rows),
        train_on,
        closed_form,
        missing,
        heavy_tail,
        int(seed) if isinstance(seed, int) and seed >= 0 else 0,
    )


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
    half = t_quantile(0.5 + level / 2, len(x) - 1) * float(x.std(ddof=1)) / np.sqrt(len(x))
    return mean, mean - half, mean + half


def _curve(frame: pd.DataFrame, by: str, column: str) -> pd.DataFrame:
    rows = []
    for value, group in frame.groupby(by, sort=True):
        mean, low, high = mean_ci(group[column])
        rows.append({by: value, "mean": mean, "low": low, "high": high, "runs": len(group)})
    return pd.DataFrame(rows)


def _draw_band(
    ax: plt.Axes,
    x: np.ndarray,
    curve: pd.DataFrame,
    colour: str,
    label: str,
    style: str = "o-",
) -> None:
    ax.plot(x, curve["mean"], style, color=colour, lw=1.6, ms=4, label=label)
    ax.fill_between(x, curve["low"], curve["high"], color=colour, alpha=0.2, lw=0)


def thinned_labels(labels: list[str], max_labels: int) -> list[str]:
    """Every k-th label (the rest blank) so that at most ``max_labels`` show, the last kept.

    Args:
        labels: One label per tick.
        max_labels: How many fit side by side.

    Returns:
        The labels, blanks where a tick stays unlabelled.
    """
    if len(labels) <= max_labels:
        return list(labels)
    every = -(-len(labels) // max_labels)  # ceiling
    last = len(labels) - 1
    keep = {i for i in range(0, len(labels), every)}
    if last not in keep:  # show the largest value, dropping its nearest labelled neighbour
        keep.discard(max(keep))
        keep.add(last)
    return [label if i in keep else "" for i, label in enumerate(labels)]


#: Labels "b\nn=N" that fit side by side on a 5-inch axis at 8 pt.
POWER_TICK_LABELS = 7


def _power_ticks(ax: plt.Axes, ns: np.ndarray) -> None:
    """Tick the log2 n axis at every swept n, labelling at most seven of them with bits and n."""
    ns = np.unique(ns.astype(float))
    bits = np.log2(ns)
    labels = [f"{b:g}\nn={n:g}" for b, n in zip(bits, ns, strict=True)]
    ax.set_xticks(bits, thinned_labels(labels, POWER_TICK_LABELS))
    ax.tick_params(axis="x", labelsize=8)


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

    Left: at selection, the chosen candidate's gain over the candidates' mean, measured (the
    training score) and true, vs log2 n. When the score is the true value plus noise
    (:func:`closed_form_condition`: ``train_on = "metric"`` with m = v on every channel, or
    ``train_on = "value"`` with v̂ = v) the closed forms are overlaid: the true gain
    σ_θ²/√(σ_θ² + σ_ε²)·E[max of n N(0,1)] (:func:`analysis.theory.regressional_selection_gain`)
    and the measured gain √(σ_θ² + σ_ε²)·E[max of n N(0,1)], with σ_θ (candidates' true-value
    sd) and σ_ε (score noise sd) estimated from the selections table. Right: the deployed agents'
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
    ns = frame[key].astype(float)
    frame["bits"] = np.log2(ns)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4))
    left, right = axes
    measured = _curve(frame, "bits", "measured_gain")
    true = _curve(frame, "bits", "true_gain")
    x = measured["bits"].to_numpy()
    reason = sweep.closed_form.get(principal, "the sweep does not say what it trains on")
    reference = sweep.heavy_tail.get(principal)
    spread = np.nanmax(np.abs(true["mean"])) if len(true) else np.nan
    # Heavy-tailed score noise makes the measured gain dwarf the true one (for df ≤ 1 it has no
    # mean at all): give it its own axis so that the true-value curve keeps its shape.
    twin = reference is not None or bool(np.nanmax(np.abs(measured["mean"])) > 20 * spread)
    measured_ax = left.twinx() if twin else left
    _draw_band(
        measured_ax,
        x,
        measured,
        OKABE_ITO[0],
        "measured gain (training score)" + (", right axis" if twin else ""),
    )
    _draw_band(left, x, true, OKABE_ITO[1], "true-value gain", "s-")
    several = frame[ns > 1]  # one candidate has no spread
    estimable = len(several) and "var_true" in several
    if reason is None and estimable:
        sigma_theta = float(np.sqrt(several["var_true"].mean()))
        sigma_eps = float(np.sqrt(frame["noise_var"].mean()))
        grid = np.unique(np.round(np.logspace(0, np.log2(ns.max()), 60, base=2)))
        total = float(np.hypot(sigma_theta, sigma_eps))
        e_max = np.array([expected_max_std_normal(int(n)) for n in grid])
        true_form = [regressional_selection_gain(int(n), sigma_theta, sigma_eps) for n in grid]
        measured_ax.plot(
            np.log2(grid),
            total * e_max,
            color=OKABE_ITO[0],
            ls=":",
            lw=1.8,
            label="closed form √(σ_θ²+σ_ε²)·E[max n]",
        )
        left.plot(
            np.log2(grid),
            true_form,
            color=OKABE_ITO[1],
            ls=":",
            lw=1.8,
            label="closed form σ_θ²/√(σ_θ²+σ_ε²)·E[max n]",
        )
        signal = "v̂" if sweep.train_on.get(principal) == "value" else "m"
        note = (
            "Closed forms (dotted, Gaussian): the score is true value + noise "
            f"(s = {signal} = v on every channel); σ_θ = {sigma_theta:.3f} "
            f"(candidates' true-value sd), σ_ε = {sigma_eps:.3f} (score noise sd), both "
            "estimated from the selections."
        )
    elif reference is not None and estimable:
        sigma_theta = float(np.sqrt(several["var_true"].mean()))
        grid = np.unique(ns.to_numpy().astype(np.int64))
        means, errors = student_t_selection_curve(
            grid,
            sigma_theta,
            reference.scale,
            reference.df,
            HEAVY_TAIL_REPS,
            np.random.default_rng(sweep.seed),
        )
        bits = np.log2(grid)
        left.plot(
            bits,
            means,
            color="0.2",
            ls=":",
            lw=1.8,
            marker="x",
            ms=4,
            label=f"heavy-tail Monte Carlo (t, df = {reference.df:g}): true gain",
        )
        left.fill_between(
            bits, means - 1.96 * errors, means + 1.96 * errors, color="0.2", alpha=0.12, lw=0
        )
        note = (
            f"No Gaussian closed form: {reason}. Dotted: Monte-Carlo reference "
            "(analysis.theory.student_t_selection_curve) — true value of the best of n "
            f"candidates θ ~ N(0, σ_θ²) scored by θ + {reference.scale:g}·t(df = "
            f"{reference.df:g}) (channel {reference.channel!r}), {HEAVY_TAIL_REPS:,} selections "
            f"per n, band ±1.96 SE; σ_θ = {sigma_theta:.3f} estimated from the selections."
        )
    else:
        note = f"No closed-form overlay: {reason or 'no selection with n > 1'}."
    left.set_title("At selection: chosen candidate − candidates' mean", fontsize=10)
    left.set_ylabel("true-value gain (value units)" if twin else "gain (score / value units)")
    proxy = _curve(frame, "bits", "proxy")
    value = _curve(frame, "bits", "value")
    _draw_band(right, proxy["bits"].to_numpy(), proxy, OKABE_ITO[0], "proxy M")
    same = np.allclose(proxy["mean"], value["mean"], equal_nan=True)
    _draw_band(
        right,
        value["bits"].to_numpy(),
        value,
        OKABE_ITO[1],
        "true value V (= proxy M here)" if same else "true value V",
        "s--",
    )
    right.set_title("Deployed agents: time mean per agent", fontsize=10)
    right.set_ylabel("output per agent (proxy / value units)")
    for ax in axes:
        ax.set_xlabel("selection power log₂ n (bits)")
        _power_ticks(ax, ns.to_numpy())
        ax.axhline(0, color="0.8", lw=0.8)
        ax.grid(alpha=0.3)
        handles, labels = ax.get_legend_handles_labels()
        if ax is left and measured_ax is not left:
            more = measured_ax.get_legend_handles_labels()
            handles, labels = more[0] + handles, more[1] + labels
        # With the measured gain on its own axis the true-value curve rises and falls from the
        # upper left, where the legend would cover it.
        corner = "upper right" if ax is left and measured_ax is not left else "upper left"
        ax.legend(handles, labels, frameon=False, fontsize=8, loc=corner)
    if measured_ax is not left:
        measured_ax.set_ylabel("measured gain (score units)", color=OKABE_ITO[0])
        measured_ax.tick_params(axis="y", colors=OKABE_ITO[0])
    runs = int(frame.groupby("bits").size().min())
    fig.suptitle(
        f"Over-optimization: principal {principal} ({key}); 95% CI over ≥{runs} runs per point",
        fontsize=11,
    )
    fig.tight_layout()
    fig.text(0.01, 0.0, note, fontsize=8, color="0.3", va="top", wrap=True)
    return save_figure(fig, Path(path), svg)


def plot_parameter_vs_metrics(
    sweep: SweepRuns,
    parameter: str,
    path: str | Path,
    *,
    metrics: tuple[str, ...] = RUN_METRICS,
    what: str = "run metrics",
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
        what: What the metrics are, for the title.
        svg: Also write an SVG next to it.

    Returns:
        The PNG's path.
    """
    frame = sweep.runs.dropna(subset=[parameter]).copy()
    numeric = pd.api.types.is_numeric_dtype(frame[parameter])
    if not numeric:
        frame[parameter] = frame[parameter].astype(str)
    names = list(dict.fromkeys(frame["principal"]))
    labels = {name: name for name in names}
    real = [name for name in names if name != "all"]
    if len(real) == 1 and "all" in names:  # one principal: its curves are the "all" curves
        names = real
        labels = {real[0]: f"{real[0]} (= all agents)"}
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.4 * len(metrics) + 0.6, 3.6))
    axes = np.atleast_1d(axes)
    values = np.unique(frame[parameter].to_numpy(dtype=float)) if numeric else np.zeros(0)
    log_x = numeric and values.min() > 0 and values.max() >= 8 * values.min()
    for ax, metric in zip(axes, metrics, strict=True):
        for i, name in enumerate(names):
            curve = _curve(frame[frame["principal"] == name], parameter, metric)
            x = curve[parameter].to_numpy(dtype=float) if numeric else np.arange(len(curve))
            colour = "0.15" if name == "all" else OKABE_ITO[i % len(OKABE_ITO)]
            _draw_band(ax, x, curve, colour, labels[name], "s--" if name == "all" else "o-")
            if not numeric:
                ax.set_xticks(x, curve[parameter])
        ax.set_title(_METRIC_LABELS.get(metric, metric), fontsize=9)
        ax.set_xlabel(parameter, fontsize=8)
        ax.grid(alpha=0.3)
        if log_x:
            ax.set_xscale("log", base=2)
        if numeric and len(values) <= 16:
            ax.set_xticks(values, thinned_labels([f"{v:g}" for v in values], 5))
            ax.minorticks_off()
            ax.tick_params(axis="x", labelsize=8)
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
    fig.suptitle(f"{parameter} vs {what} (time means, 95% CI over runs{note})", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, Path(path), svg)
