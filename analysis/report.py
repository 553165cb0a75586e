"""The report of a run or sweep folder: every figure (PNG + SVG) and one self-contained HTML page.

:func:`build_report` is what ``run.py report DIR`` calls. For a run folder it draws proxy vs true
value, the failure map, the Goodhart breakdown and the agent maps (:mod:`analysis.figures`,
:mod:`analysis.agent_maps`), optionally the animation (:mod:`analysis.animation`); for a sweep
folder the over-optimization curve and every swept parameter vs the run metrics
(:mod:`analysis.sweep_figures`) and a per-design summary (one row per design point: its
parameters, replicates, mean and 95% CI of the key metrics), the full run list going to
``runs.csv`` (also embedded in the page as a download). ``report.html`` embeds every figure as
base64 data, so it can be mailed or archived on its own (no external ``src`` or ``href``).

Names read from a folder (principals, swept keys) become file names only through
:func:`safe_file_stem`, so that a hand-edited ``manifest.json`` or ``sweep.json`` — or a run
recorded before names were restricted — cannot make the report write outside its folder. A
folder whose manifest is empty, truncated or has no scenario is refused with one line
(:class:`~analysis.run_folder.NotARunError`) before anything is written.
"""

from __future__ import annotations

import base64
import html
import json
import numbers
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from mesaopt.analysis import figures
from mesaopt.analysis.agent_maps import (
    map_layout,
    plot_agent_map,
    plot_group_view,
    prefers_group_view,
)
from mesaopt.analysis.folder_kinds import check_run_or_sweep
from mesaopt.analysis.run_folder import (
    REPORT_MARK,
    NotARunError,
    RunTables,
    is_run_folder,
    read_run,
)
from mesaopt.analysis.sweep_figures import (
    LOSS_PART_METRICS,
    RUN_METRICS,
    mean_ci,
    plot_overoptimization,
    plot_parameter_vs_metrics,
    read_sweep,
    selection_parameters,
)
from mesaopt.model.atomic_folder import check_reused_folder
from mesaopt.model.measures import FLAGS, PARTS
from mesaopt.model.network import Network

#: Characters a file name made from a user-supplied string keeps; everything else becomes "_".
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass
class Report:
    """What :func:`build_report` wrote.

    Attributes:
        out_dir: The report folder.
        html: The HTML page.
        figures: PNG paths with their captions, in page order.
        animations: GIF/MP4 paths written with ``animate``.
        notes: Figures that could not be drawn and why, runs left out of a sweep.
    """

    out_dir: Path
    html: Path
    figures: list[tuple[Path, str]] = field(default_factory=list)
    animations: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def safe_file_stem(text: str, used: set[str] | None = None) -> str:
    """A file-name stem made from a user-supplied string that cannot leave its folder.

    Every run of characters other than letters, digits, ``_``, ``-`` and ``.`` becomes ``_``
    (so slashes go), leading dots and dashes are dropped (no ``..``, no hidden file,
    no option-like name), and the stem is at most 80 characters. With ``used``, a stem already
    taken gets ``_2``, ``_3``, ... so two names never share a file; the result is added to it.

    Args:
        text: The name (a principal, a dotted key).
        used: Stems already given out in the same folder (updated).

    Returns:
        A non-empty stem, e.g. ``x_.._.._.._ESCAPED`` for ``x/../../../ESCAPED``.
    """
    stem = _UNSAFE.sub("_", text).lstrip(".-")[:80] or "unnamed"
    if used is not None:
        base, i = stem, 2
        while stem in used:
            stem, i = f"{base}_{i}", i + 1
        used.add(stem)
    return stem


def _uri(path: Path) -> str:
    kind = {".png": "image/png", ".gif": "image/gif"}[path.suffix]
    return f"data:{kind};base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _number(value: Any) -> str:
    """A table cell: whole-number counts as integers (``143``), other numbers to 3 decimals."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return html.escape(str(value))
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if value != value:  # NaN
        return "—"
    return f"{value:.3f}"


def _table_html(frame: pd.DataFrame, counts: set[str] = frozenset()) -> str:
    """An HTML table; ``counts`` names rows (first column) or columns holding whole numbers."""
    columns = list(frame.columns)
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = []
    for row in frame.itertuples(index=False):
        cells = []
        count_row = len(columns) > 0 and str(row[0]) in counts
        for column, value in zip(columns, row, strict=True):
            if (count_row or column in counts) and isinstance(value, float) and value == value:
                value = round(value)
            cells.append(f"<td>{_number(value)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (
        f"<table class='numbers'><thead><tr>{head}</tr></thead><tbody>"
        + "".join(body)
        + "</tbody></table>"
    )


_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; color: #222;
       padding: 0 1em; line-height: 1.45; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: .2em; }
figure { margin: 1.5em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: .9em; }
table.numbers { border-collapse: collapse; font-size: .9em; }
table.numbers th, table.numbers td { padding: .25em .7em; text-align: right;
       border-bottom: 1px solid #eee; }
pre { background: #f6f6f6; padding: 1em; overflow-x: auto; font-size: .8em; }
.note { color: #8a5a00; }
"""


def _page(title: str, sections: list[str]) -> str:
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>"
        + "\n".join(sections)
        + "</body></html>\n"
    )


def _figure_html(path: Path, caption: str) -> str:
    return (
        f"<figure><img alt='{html.escape(caption)}' src='{_uri(path)}'>"
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def key_numbers(run: RunTables) -> pd.DataFrame:
    """Key numbers per principal: final step and mean over the run's last quarter.

    Args:
        run: The run's tables.

    Returns:
        One row per principal (``all`` last) with proxy, true value, the two losses and the
        principal loss's Shapley parts, the four Goodhart measures, the agent counts by
        primary category (of the decomposed agents) and by flag.
    """
    steps = run.steps
    last = int(steps["step"].max())
    tail = steps[steps["step"] > last - max(1, last // 4)]
    rows = []
    for name, group in tail.groupby("principal", sort=False):
        final = group[group["step"] == last].iloc[0]
        row: dict[str, Any] = {"principal": name}
        for column in ("proxy", "value", "principal_loss", "mesa_loss"):
            row[f"{column} (final)"] = float(final[column])
            row[f"{column} (last quarter)"] = float(group[column].mean())
        for part in PARTS:
            if f"loss_{part}" in group:  # (runs of mesaopt 1 have no decomposition)
                row[f"loss_{part} (last quarter)"] = float(group[f"loss_{part}"].mean())
        for column in ("goodhart_extremal", "goodhart_causal", "goodhart_adversarial"):
            row[column] = float(group[column].mean())
        row["goodhart_regressional"] = float(
            steps.loc[steps["principal"] == name, "goodhart_regressional"].mean()
        )
        for category in figures.CATEGORY_COLOURS:
            row[f"n_{category}"] = int(final[f"n_{category}"])
        if "n_decomposed" in final:  # (runs of mesaopt 1 have neither)
            row["n_decomposed"] = int(final["n_decomposed"])
        for flag in FLAGS:
            if f"flagged_{flag}" in final:
                row[f"flagged_{flag}"] = int(final[f"flagged_{flag}"])
        rows.append(row)
    return pd.DataFrame(rows)


def _scenario_summary(manifest: dict[str, Any]) -> str:
    scenario = manifest.get("scenario", {})
    network = scenario.get("network", {})
    principals = scenario.get("principals", [])
    lines = [
        ("source", manifest.get("scenario_source")),
        ("agents", f"{manifest.get('n_agents')} on {network.get('topology')}"),
        ("edges", manifest.get("n_edges")),
        ("steps, seed", f"{manifest.get('steps')}, {manifest.get('seed')}"),
        (
            "principals",
            "; ".join(
                f"{p.get('name')}: capacity {p.get('capacity')}, trains on {p.get('train_on')}, "
                f"selection n={(p.get('selection') or {}).get('n')}, "
                f"β={(p.get('contract') or {}).get('beta')}, "
                f"audit rate {(p.get('audit') or {}).get('rate')}"
                for p in principals
                if isinstance(p, dict)
            ),
        ),
        (
            "regime changes",
            ", ".join(
                f"step {r.get('at')}: {r.get('channel')}"
                for r in scenario.get("regimes") or []
                if isinstance(r, dict)
            )
            or "none",
        ),
        ("git revision", manifest.get("git_revision")),
        ("wall time", f"{manifest.get('wall_seconds')} s"),
    ]
    body = "".join(
        f"<tr><th style='text-align:left'>{html.escape(k)}</th>"
        f"<td style='text-align:left'>{html.escape(str(v))}</td></tr>"
        for k, v in lines
    )
    return f"<table class='numbers'>{body}</table>"


def _agent_figures(
    run: RunTables, network: Network, out: Path, animate: bool, report: Report
) -> None:
    """The agent maps: lattice or node-link maps, or the group view of a large/dense network."""
    add = report.figures.append
    grouped = prefers_group_view(network)
    if grouped:  # a hairball as nodes and links: aggregate it
        add(
            (
                plot_group_view(run.agents, network, out / "agent_groups.png", svg=True),
                f"Agents at the last snapshot by principal and category ({network.n_nodes:,} "
                f"agents, {network.n_edges:,} edges: too large or dense to draw node by node): "
                "edges between groups, mean losses with 95% intervals, mean efforts.",
            )
        )
        if not animate:
            return
    layout = map_layout(network, seed=int(run.manifest.get("seed") or 0), cache_dir=run.path)
    if animate:  # asked for: the node-link drawing over time, whatever the network's size
        from mesaopt.analysis.animation import animate_agent_map

        report.animations = animate_agent_map(run.agents, layout, out / "agent_map.gif")
    if grouped:
        return
    channels = [c for c in run.agents.columns if c.startswith("effort_")]
    add(
        (
            plot_agent_map(
                run.agents,
                layout,
                out / "agent_map.png",
                quantities=("category", "principal_loss", "mesa_loss"),
                svg=True,
            ),
            f"Agents at the last snapshot ({layout.caption()}): category (size = "
            "principal loss), principal loss, mesa loss.",
        )
    )
    add(
        (
            plot_agent_map(
                run.agents, layout, out / "agent_effort.png", quantities=channels, svg=True
            ),
            f"Effort per channel at the last snapshot ({layout.caption()}).",
        )
    )


def _run_report(run: RunTables, out: Path, animate: bool, report: Report) -> list[str]:
    if run.steps.empty:  # run.steps = 0, or a run stopped in its first step
        report.notes.append(
            "no figures and no key numbers: the run recorded no step after the build "
            "(its steps table is empty)"
        )
        return [
            f"<h1>mesaopt report: {html.escape(str(run.path))}</h1>",
            "<h2>Scenario</h2>",
            _scenario_summary(run.manifest),
        ]
    add = report.figures.append
    add(
        (
            figures.plot_proxy_vs_value(
                run.steps, run.events, out / "proxy_vs_value.png", svg=True
            ),
            "Proxy M and true value V per principal (mean per agent); dashed: regime changes.",
        )
    )
    add(
        (
            figures.plot_failure_map(
                run.steps, out / "failure_map.png", svg=True, agents=run.agents
            ),
            "Principal loss and mesa loss by mesa-optimizer category, averaged over the run; "
            "n over each bar, 95% intervals from the agent snapshots (hatched: too few agents "
            "for an interval).",
        )
    )
    add(
        (
            figures.plot_loss_decomposition(
                run.steps, run.events, out / "loss_parts.png", svg=True
            ),
            "Where the principal loss comes from: its exact Shapley parts (goals, capacity, world "
            "model, kind and power, noise) over time per principal, with 95% bands over the "
            "decomposed sample, the total over all agents dotted; right, the run's mean loss of "
            "the agents holding each category flag (flags overlap).",
        )
    )
    add(
        (
            figures.plot_goodhart_breakdown(run.steps, run.events, out / "goodhart.png", svg=True),
            "The four Goodhart variants over time, per principal.",
        )
    )
    if run.agents.empty:
        report.notes.append("no agent maps: the run has no agent snapshots")
    else:
        try:
            network = run.network
        # An older run without a network table, or one whose table does not fit its manifest
        # (MissingTableError and ScenarioError are ValueErrors): a note, not a failed report.
        except ValueError as err:
            report.notes.append(f"no agent maps: cannot read the network ({err})")
        else:
            _agent_figures(run, network, out, animate, report)
    numbers = key_numbers(run)
    sections = [
        f"<h1>mesaopt report: {html.escape(str(run.path))}</h1>",
        "<h2>Scenario</h2>",
        _scenario_summary(run.manifest),
        "<h2>Key numbers</h2>",
        "<p>Means per agent; <em>last quarter</em> averages the last 25% of steps; regressional "
        "Goodhart averages the selection steps. Counts are of the final step: "
        "<code>n_&lt;category&gt;</code> counts the decomposed agents "
        "(<code>n_decomposed</code>) by <em>primary</em> category, the cause of the largest part "
        "of their principal loss, so each agent is counted once; "
        "<code>flagged_&lt;flag&gt;</code> counts every agent that has the flag, and flags "
        "overlap (an agent can be super and trans at once).</p>",
        _table_html(
            numbers.set_index("principal").T.reset_index(names=""),
            counts={c for c in numbers.columns if c.startswith(("n_", "flagged_"))},
        ),
    ]
    return sections


def design_summary(runs: pd.DataFrame, parameters: list[str]) -> pd.DataFrame:
    """One row per design point: its parameters, replicates and mean (95% CI) of the key metrics.

    Args:
        runs: :attr:`analysis.sweep_figures.SweepRuns.runs` (one row per run and principal).
        parameters: The swept keys.

    Returns:
        For principal ``all``: ``design_id`` (when known), the parameters, ``replicates`` (runs
        at the point) and per metric of :data:`~analysis.sweep_figures.RUN_METRICS` its mean
        over the runs and ``<metric> 95% CI`` (Student-t, ``low … high``; ``—`` with one run).
    """
    frame = runs[runs["principal"] == "all"]
    by = ["design_id"] if "design_id" in frame and frame["design_id"].notna().all() else []
    by += [p for p in parameters if p in frame]
    rows = []
    groups = frame.groupby(by, sort=True, dropna=False) if by else [((), frame)]
    for key, group in groups:
        key = key if isinstance(key, tuple) else (key,)
        row: dict[str, Any] = dict(zip(by, key, strict=True))
        row["replicates"] = int(group["run_id"].nunique())
        for metric in RUN_METRICS:
            mean, low, high = mean_ci(group[metric])
            row[metric] = mean
            row[f"{metric} 95% CI"] = "—" if low != low else f"{low:.3f} … {high:.3f}"
        rows.append(row)
    return pd.DataFrame(rows)


def _csv_link(path: Path, label: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (
        f"<a download='{html.escape(path.name)}' href='data:text/csv;base64,{data}'>"
        f"{html.escape(label)}</a>"
    )


def _sweep_report(path: Path, out: Path, report: Report) -> list[str]:
    try:
        sweep = read_sweep(path)
    except (OSError, ValueError, KeyError, TypeError) as err:  # json errors are ValueErrors
        raise NotARunError(f"{path}/sweep.json: cannot read the sweep: {err}") from None
    _start_report_folder(out)
    if sweep.runs.empty:  # every run failed, or none recorded a step (run.steps = 0)
        report.notes.append(
            "no sweep figures and no design summary: no run of the sweep has a complete run "
            "folder with a step after the build"
        )
        return [
            f"<h1>mesaopt sweep report: {html.escape(str(path))}</h1>",
            f"<p>Nothing to summarize: {len(sweep.missing)} of the runs listed in sweep.json "
            "have no complete run folder, and the others recorded no step.</p>",
        ]
    used: set[str] = set()
    for key, principal in selection_parameters(sweep).items():
        stem = safe_file_stem(f"overoptimization_{principal}", used)
        report.figures.append(
            (
                plot_overoptimization(sweep, key, principal, out / f"{stem}.png", svg=True),
                f"Over-optimization curve of {principal} ({key}), 95% CIs over runs.",
            )
        )
    for parameter in sweep.parameters:
        stem = safe_file_stem(f"sweep_{parameter.replace('.', '_')}", used)
        report.figures.append(
            (
                plot_parameter_vs_metrics(sweep, parameter, out / f"{stem}.png", svg=True),
                f"{parameter} vs the run metrics (time means), 95% CIs over runs.",
            )
        )
        if set(LOSS_PART_METRICS) <= set(sweep.runs.columns):
            stem = safe_file_stem(f"sweep_{parameter.replace('.', '_')}_loss_parts", used)
            report.figures.append(
                (
                    plot_parameter_vs_metrics(
                        sweep,
                        parameter,
                        out / f"{stem}.png",
                        metrics=LOSS_PART_METRICS,
                        what="the Shapley parts of the principal loss",
                        svg=True,
                    ),
                    f"{parameter} vs the Shapley parts of the principal loss (time means of "
                    "each run's mean over its decomposed agents), 95% CIs over runs.",
                )
            )
    runs = sweep.runs["run_id"].nunique()
    if not sweep.parameters:
        report.notes.append(
            "no sweep figures: the sweep varies no parameter (no [sweep] grid and no --grid), "
            "so its runs are replicates of one design point"
        )
    if sweep.missing:
        report.notes.append(
            f"{len(sweep.missing)} of the sweep's {runs + len(sweep.missing)} runs have no "
            "complete run folder (failed or not run) and are left out: " + ", ".join(sweep.missing)
        )
    everyone = sweep.runs[sweep.runs["principal"] == "all"]
    listing = everyone[
        [c for c in ("run_id", "design_id", "replicate") if c in everyone]
        + [p for p in sweep.parameters if p in everyone]
        + list(RUN_METRICS)
    ]
    csv = out / "runs.csv"
    listing.to_csv(csv, index=False)
    summary = design_summary(sweep.runs, sweep.parameters)
    return [
        f"<h1>mesaopt sweep report: {html.escape(str(path))}</h1>",
        f"<p>{runs} complete runs of the {runs + len(sweep.missing)} listed in sweep.json; "
        f"swept: {html.escape(', '.join(sweep.parameters))}.</p>",
        "<h2>Design points (time means per agent, principal = all)</h2>",
        "<p>One row per design point: mean over its replicates and a 95% Student-t interval. "
        f"Every run: {_csv_link(csv, 'runs.csv')} (also written next to this page).</p>",
        _table_html(summary, counts={"design_id", "replicates"}),
    ]


def _check_manifest(path: Path) -> None:
    """Refuse, with one line, a run folder whose manifest is empty, truncated or not a run's."""
    file = path / "manifest.json"
    try:
        manifest = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:  # UnicodeDecodeError and JSONDecodeError included
        raise NotARunError(f"{file}: cannot read (empty or truncated?): {err}") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("scenario"), dict):
        raise NotARunError(f"{file}: not a complete run manifest (no 'scenario' object)")


def _start_report_folder(out: Path) -> None:
    """Make the report folder (if needed) and mark it as a report's before anything is drawn."""
    out.mkdir(parents=True, exist_ok=True)
    (out / REPORT_MARK).touch()


def build_report(
    path: str | Path, out_dir: str | Path | None = None, *, animate: bool = False
) -> Report:
    """Draw every figure of a run or sweep folder and write ``report.html``.

    Args:
        path: A run folder (``run.py simulate``) or a sweep folder (``run.py sweep``).
        out_dir: The report folder (default ``path/report``).
        animate: Also write the agent map over time as a GIF (and MP4 with ffmpeg).

    Returns:
        What was written.

    Raises:
        NotARunError: If ``path`` is neither a run nor a sweep folder, or its manifest or
            ``sweep.json`` cannot be read (nothing is written then).
    """
    path = Path(path)
    out = Path(out_dir) if out_dir is not None else path / "report"
    check_run_or_sweep(path)
    # written into, never swapped: absent, empty or an earlier report (never someone's folder)
    check_reused_folder(out, ("report.html", REPORT_MARK), "a mesaopt report folder")
    report = Report(out_dir=out, html=out / "report.html")
    if is_run_folder(path):
        _check_manifest(path)
        run = read_run(path)
        _start_report_folder(out)
        sections = _run_report(run, out, animate, report)
    else:
        sections = _sweep_report(path, out, report)
    sections.append("<h2>Figures</h2>")
    sections += [_figure_html(p, caption) for p, caption in report.figures]
    gifs = [p for p in report.animations if p.suffix == ".gif"]
    sections += [_figure_html(p, "The agent map over time (one frame per snapshot).") for p in gifs]
    if report.notes:
        sections.append("".join(f"<p class='note'>{html.escape(n)}</p>" for n in report.notes))
    if is_run_folder(path):
        manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
        sections.append(
            "<h2>Resolved scenario</h2><details><summary>manifest.json scenario</summary><pre>"
            + html.escape(json.dumps(manifest.get("scenario"), indent=2))
            + "</pre></details>"
        )
    report.html.write_text(_page(f"mesaopt report: {path}", sections), encoding="utf-8")
    return report
