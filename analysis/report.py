"""The report of a run or sweep folder: every figure (PNG + SVG) and one self-contained HTML page.

:func:`build_report` is what ``run.py report DIR`` calls. For a run folder it draws proxy vs true
value, the failure map, the Goodhart breakdown and the agent maps (:mod:`analysis.figures`,
:mod:`analysis.agent_maps`), optionally the animation (:mod:`analysis.animation`); for a sweep
folder the over-optimization curve and every swept parameter vs the run metrics
(:mod:`analysis.sweep_figures`). ``report.html`` embeds every figure as base64 data, so it can be
mailed or archived on its own (no external ``src`` or ``href``).
"""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from mesaopt.analysis import figures
from mesaopt.analysis.agent_maps import map_layout, plot_agent_map
from mesaopt.analysis.run_folder import (
    NotARunError,
    RunTables,
    is_run_folder,
    is_sweep_folder,
    read_run,
)
from mesaopt.analysis.sweep_figures import (
    plot_overoptimization,
    plot_parameter_vs_metrics,
    read_sweep,
    selection_parameters,
)


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


def _uri(path: Path) -> str:
    kind = {".png": "image/png", ".gif": "image/gif"}[path.suffix]
    return f"data:{kind};base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _table_html(frame: pd.DataFrame) -> str:
    return frame.to_html(
        index=False, border=0, classes="numbers", float_format=lambda x: f"{x:.3f}"
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
        One row per principal (``all`` last) with proxy, true value, the two losses, the four
        Goodhart measures and the agent counts by category.
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
        for column in ("goodhart_extremal", "goodhart_causal", "goodhart_adversarial"):
            row[column] = float(group[column].mean())
        row["goodhart_regressional"] = float(
            steps.loc[steps["principal"] == name, "goodhart_regressional"].mean()
        )
        for category in figures.CATEGORY_COLOURS:
            row[f"n_{category}"] = int(final[f"n_{category}"])
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
                f"{p['name']}: capacity {p['capacity']}, trains on {p['train_on']}, "
                f"selection n={p['selection']['n']}, β={p['contract']['beta']}, "
                f"audit rate {p['audit']['rate']}"
                for p in principals
            ),
        ),
        (
            "regime changes",
            ", ".join(f"step {r['at']}: {r['channel']}" for r in scenario.get("regimes", []))
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


def _run_report(run: RunTables, out: Path, animate: bool, report: Report) -> list[str]:
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
            figures.plot_failure_map(run.steps, out / "failure_map.png", svg=True),
            "Principal loss and mesa loss by mesa-optimizer category, averaged over the run.",
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
            layout = map_layout(
                network, seed=int(run.manifest.get("seed") or 0), cache_dir=run.path
            )
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
            if animate:
                from mesaopt.analysis.animation import animate_agent_map

                report.animations = animate_agent_map(run.agents, layout, out / "agent_map.gif")
    numbers = key_numbers(run)
    sections = [
        f"<h1>mesaopt report: {html.escape(str(run.path))}</h1>",
        "<h2>Scenario</h2>",
        _scenario_summary(run.manifest),
        "<h2>Key numbers</h2>",
        "<p>Means per agent; <em>last quarter</em> averages the last 25% of steps; regressional "
        "Goodhart averages the selection steps.</p>",
        _table_html(numbers.set_index("principal").T.reset_index(names="")),
    ]
    return sections


def _sweep_report(path: Path, out: Path, report: Report) -> list[str]:
    sweep = read_sweep(path)
    for key, principal in selection_parameters(sweep).items():
        report.figures.append(
            (
                plot_overoptimization(
                    sweep, key, principal, out / f"overoptimization_{principal}.png", svg=True
                ),
                f"Over-optimization curve of {principal} ({key}), 95% CIs over runs.",
            )
        )
    for parameter in sweep.parameters:
        safe = parameter.replace(".", "_")
        report.figures.append(
            (
                plot_parameter_vs_metrics(sweep, parameter, out / f"sweep_{safe}.png", svg=True),
                f"{parameter} vs the run metrics (time means), 95% CIs over runs.",
            )
        )
    runs = sweep.runs["run_id"].nunique()
    if sweep.missing:
        report.notes.append(
            f"{len(sweep.missing)} of the sweep's {runs + len(sweep.missing)} runs have no "
            "complete run folder (failed or not run) and are left out: " + ", ".join(sweep.missing)
        )
    return [
        f"<h1>mesaopt sweep report: {html.escape(str(path))}</h1>",
        f"<p>{runs} complete runs of the {runs + len(sweep.missing)} listed in sweep.json; "
        f"swept: {html.escape(', '.join(sweep.parameters))}.</p>",
        "<h2>Runs (time means per agent, principal = all)</h2>",
        _table_html(
            sweep.runs[sweep.runs["principal"] == "all"][
                ["run_id", *sweep.parameters, "value", "proxy", "principal_loss", "mesa_loss"]
            ]
        ),
    ]


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
        NotARunError: If ``path`` is neither a run nor a sweep folder.
    """
    path = Path(path)
    out = Path(out_dir) if out_dir is not None else path / "report"
    if not (is_run_folder(path) or is_sweep_folder(path)):
        raise NotARunError(
            f"{path} is not a run folder (manifest.json + steps) "
            "or a sweep folder (sweep.json + runs/)"
        )
    out.mkdir(parents=True, exist_ok=True)
    report = Report(out_dir=out, html=out / "report.html")
    if is_run_folder(path):
        sections = _run_report(read_run(path), out, animate, report)
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
