"""The interactive app: a Mesa SolaraViz page that drives a live :class:`MesaOptModel`.

Serve it with ``run.py viz [SCENARIO]`` (which runs ``solara run analysis/app.py``); the scenario
file comes in through the ``MESAOPT_VIZ_SCENARIO`` environment variable (the embedded default when
unset). The app bar names the loaded scenario and the page's first line repeats it with the
file's own one-line description (:func:`scenario_title`). The page has sliders for the main
parameters (:data:`MODEL_PARAMS`), Mesa's play/step/reset controls and two named tabs
(:data:`PAGES`): "Agents, proxy and true value" (the agents drawn on their lattice or network
coloured by a chosen quantity, live plots of proxy vs true value and of the losses by category)
and "Losses, misalignment and welfare" (principal vs mesa loss, the principal loss split into its
Shapley parts, the four Goodhart measures, and welfare against the planner's first best).

Mesa 3.5's SolaraViz labels its tabs "Page 0", "Page 1", ...; :func:`MesaOptViz` therefore asks
SolaraViz for the app bar and the sidebar only (no components) and draws the tabs itself, with
their names, in the same draggable, resizable grid cells as Mesa's.

This is the one place in :mod:`analysis` that uses a live model instead of recorded tables.
:class:`VizModel` maps the sliders to scenario overrides and keeps the ``steps`` rows of the
run so far. Large populations stay responsive: the agent map draws a seeded random sample of at
most :data:`~analysis.agent_maps.MAX_DRAWN_NODES` agents (lattices are drawn whole, as an image),
and the page says so under the map.

Mesa's SolaraViz lays the components out in fixed-height grid cells (resizable by the user) and
draws its sliders without their values; :class:`ValueSlider` puts the current value in the
slider's label, and the agent map scales its image to the height its cell leaves, so that the
note under it always shows.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import numpy as np
import pandas as pd
import reacton.ipywidgets as rw
import solara
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from mesa.visualization import Slider, SolaraViz
from mesa.visualization.solara_viz import make_initial_grid_layout
from mesa.visualization.utils import update_counter

from mesaopt.analysis.agent_maps import MapLayout, draw_agent_map, map_layout, quantity_label
from mesaopt.analysis.figures import CATEGORY_COLOURS, LOSS_PARTS, OKABE_ITO
from mesaopt.model.measures import CATEGORIES
from mesaopt.model.model import MesaOptModel
from mesaopt.model.scenario import Scenario
from mesaopt.model.scenario_files import load_scenario

#: Topologies offered by the app (edge lists need a file, so they are not).
APP_TOPOLOGIES = ["watts_strogatz", "grid", "barabasi_albert", "erdos_renyi", "sbm", "ring", "star"]

#: Population sizes offered by the app.
APP_SIZES = [100, 400, 1000, 2500, 10000, 40000, 100000]

#: Quantities the agent map can be coloured by (efforts are added per channel).
APP_QUANTITIES = ["category", "principal", "principal_loss", "mesa_loss", "proxy", "value"]


def base_scenario() -> Scenario:
    """The scenario the app starts from: ``$MESAOPT_VIZ_SCENARIO`` or the embedded default."""
    path = os.environ.get("MESAOPT_VIZ_SCENARIO") or None
    return load_scenario(path)


def scenario_title(path: str | None = None) -> tuple[str, str]:
    """The loaded scenario's name and one-line description, for the app bar and the page.

    Args:
        path: The scenario file (default ``$MESAOPT_VIZ_SCENARIO``; unset: the embedded default).

    Returns:
        ``(name, description)``: the file's stem (``heavy_tails``), or ``"default scenario"``,
        and the first sentence of the file's leading comment (empty when it has none).
    """
    path = path if path is not None else os.environ.get("MESAOPT_VIZ_SCENARIO") or None
    if path is None:
        return "default scenario", "the embedded baseline (scenarios/baseline.toml)"
    comment: list[str] = []
    try:
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            text = line.lstrip("#").strip()
            if not line.startswith("#") or not text:
                break
            comment.append(text)
    except OSError:  # the app was started on a file that has gone since: name it, no description
        pass
    paragraph = " ".join(comment)
    first, stop, _rest = paragraph.partition(". ")
    description = first + "." if stop else paragraph
    return Path(path).stem, description


def scenario_overrides(
    base: Scenario,
    *,
    selection_n: int,
    capacity_gap: int,
    beta: float,
    set_beta: bool,
    audit_rate: float,
    regime_at: int,
    topology: str,
    n_agents: int,
    seed: int,
) -> dict[str, Any]:
    """Scenario overrides (dotted keys) for the app's parameters.

    Args:
        base: The scenario the app started from.
        selection_n: Candidates per selection, for every principal.
        capacity_gap: Added to every agent capacity of the base scenario (floored at 0):
            positive gaps make agents more capable than their principals (mesa-superoptimizers).
        beta: Contract slope β given to every principal when ``set_beta``.
        set_beta: Replace the scenario's contracts (a number or ``"optimal"`` per principal)
            by ``beta``; otherwise keep them.
        audit_rate: Audit probability per agent and step, for every principal.
        regime_at: Step of the first regime change; later ones move with it (ignored when the
            scenario has none).
        topology: Network topology (grids use the largest square of at most ``n_agents``).
        n_agents: Number of agents.
        seed: The run's seed.

    Returns:
        ``{dotted.key: value}`` for :meth:`MesaOptModel.__init__` (``__`` not yet substituted).
    """
    out: dict[str, Any] = {"run.seed": seed, "network.topology": topology}
    if topology == "grid":
        side = max(2, math.isqrt(n_agents))
        out.update({"network.n_agents": side * side, "network.width": side, "network.height": side})
    else:
        out["network.n_agents"] = n_agents
    for j in range(len(base.principals)):
        out[f"principals.{j}.selection.n"] = selection_n
        out[f"principals.{j}.audit.rate"] = audit_rate
        if set_beta:
            out[f"principals.{j}.contract.beta"] = beta
    capacity = base.agents.capacity
    if isinstance(capacity, int):
        out["agents.capacity"] = max(0, capacity + capacity_gap)
    else:
        out["agents.capacity.values"] = [max(0, v + capacity_gap) for v in capacity.values]
    if base.regimes:
        # Move every regime change by the same offset, keeping simultaneous changes together.
        shift = regime_at - base.regimes[0].at
        for i, regime in enumerate(base.regimes):
            out[f"regimes.{i}.at"] = max(1, regime.at + shift)
    return out


class VizModel(MesaOptModel):
    """A :class:`MesaOptModel` built from the app's slider values, keeping its ``steps`` rows.

    Args:
        selection_n: See :func:`scenario_overrides` for every parameter.
        capacity_gap: Shift of the agents' capacities.
        beta: Contract slope of every principal when ``set_beta``.
        set_beta: Replace the scenario's contracts by ``beta``.
        audit_rate: Audit probability per agent and step.
        regime_at: Step of the first regime change.
        topology: Network topology.
        n_agents: Number of agents.
        seed: The run's seed.
        rng: Ignored (Mesa's seed control); the seed comes from ``seed``.

    Attributes:
        history: The ``steps`` rows so far (one per principal and ``all`` per step).
        layout: Where the agent map draws each agent (computed once).
    """

    def __init__(
        self,
        selection_n: int = 16,
        capacity_gap: int = 0,
        beta: float = 0.3,
        set_beta: bool = False,
        audit_rate: float = 0.02,
        regime_at: int = 100,
        topology: str = "watts_strogatz",
        n_agents: int = 1000,
        seed: int = 42,
        rng: Any = None,
    ) -> None:
        base = base_scenario()
        overrides = scenario_overrides(
            base,
            selection_n=int(selection_n),
            capacity_gap=int(capacity_gap),
            beta=float(beta),
            set_beta=bool(set_beta),
            audit_rate=float(audit_rate),
            regime_at=int(regime_at),
            topology=str(topology),
            n_agents=int(n_agents),
            seed=int(seed),
        )
        self.history: list[dict[str, Any]] = []
        super().__init__(
            base,
            recorder=self._keep,
            **{key.replace(".", "__"): value for key, value in overrides.items()},
        )
        self.layout: MapLayout = map_layout(self.network, seed=int(seed))

    def _keep(self, table: str, rows: Any) -> None:
        if table == "steps":
            self.history.extend(rows)

    def snapshot(self, nodes: np.ndarray) -> pd.DataFrame:
        """The drawn agents' current state as ``agents``-table columns (node, category, ...)."""
        pop = self.population
        names = np.array([p.name for p in self.principals], dtype=object)
        frame = pd.DataFrame(
            {
                "node": nodes,
                "principal": names[pop.principal[nodes]],
                "category": np.asarray(self._primary, dtype=object)[nodes],
            }
        )
        for key, values in self.last_agent_metrics.items():
            frame[key] = values[nodes]
        for k, name in enumerate(self.world.names):
            frame[f"effort_{name}"] = pop.action[nodes, k]
        if not self.last_agent_metrics:
            for key in ("principal_loss", "mesa_loss", "proxy", "value"):
                frame[key] = np.nan
        return frame


class ValueSlider(Slider):
    """A Mesa :class:`~mesa.visualization.Slider` whose label shows its current value.

    Mesa's ``UserInputs`` draws a slider as ``SliderInt/SliderFloat(slider.label,
    value=slider.value, on_value=...)`` and takes the model's initial parameter from
    ``slider.get("value")``. Here ``value`` is a (per-session) :func:`solara.reactive` that the
    slider is bound to, ``get("value")`` its plain value, and ``label`` reads it, so the inputs
    are redrawn with ``"label: value"`` whenever the slider moves.

    Args:
        label: The label (the value is appended).
        value: The initial value.
        min: The smallest value.
        max: The largest value.
        step: The increment; a float step makes a float slider.
    """

    def __init__(self, label: str, value: float, min: float, max: float, step: float = 1) -> None:
        self._current = solara.reactive(value)
        super().__init__(label, value, min, max, step)
        self._decimals = len(f"{float(step):g}".partition(".")[2])  # 0.05 → 2

    @property
    def label(self) -> str:
        """The label with the current value."""
        value = self._current.value
        text = f"{value:.{self._decimals}f}" if self.is_float_slider else f"{int(value):,}"
        return f"{self._text}: {text}"

    @label.setter
    def label(self, text: str) -> None:
        self._text = text

    @property
    def value(self) -> solara.Reactive:
        """The reactive value the slider is bound to."""
        return self._current

    @value.setter
    def value(self, value: float) -> None:
        self._current.set(value)

    def get(self, attr: str) -> Any:
        """Mesa's accessor; ``"value"`` gives the current plain value."""
        return self._current.value if attr == "value" else getattr(self, attr)


#: The app's parameters (Mesa SolaraViz ``model_params``).
MODEL_PARAMS: dict[str, Any] = {
    "selection_n": ValueSlider("selection n (candidates per slot)", 16, 1, 256, 1),
    "capacity_gap": ValueSlider("capacity gap (agent − base capacity)", 0, -2, 2, 1),
    "beta": ValueSlider("contract β (all principals)", 0.3, 0.0, 1.0, 0.05),
    "set_beta": {"type": "Checkbox", "value": False, "label": "use this β (else scenario's)"},
    "audit_rate": ValueSlider("audit rate", 0.02, 0.0, 0.2, 0.01),
    "regime_at": ValueSlider("regime change step", 100, 1, 300, 1),
    "topology": {
        "type": "Select",
        "value": "watts_strogatz",
        "values": APP_TOPOLOGIES,
        "label": "topology",
    },
    "n_agents": {"type": "Select", "value": 1000, "values": APP_SIZES, "label": "agents"},
    "seed": {"type": "InputText", "value": 42, "label": "seed"},
}

#: The quantity the agent map is coloured by (shared by the page's components).
colour_by = solara.reactive("category")


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


@solara.component
def AgentMap(model: VizModel) -> None:
    """The agents on their lattice or network, coloured by the chosen quantity.

    The component fills its grid cell: the selector and the note under the map keep their
    height, the map's image scales (aspect kept) into what is left.
    """
    update_counter.get()
    channels = [f"effort_{name}" for name in model.world.names]
    layout = model.layout
    fig = Figure(figsize=(5.8, 3.6))
    ax = fig.subplots()
    quantity = colour_by.value
    draw_agent_map(
        ax,
        layout,
        model.snapshot(layout.nodes),
        quantity,
        size_by="principal_loss" if quantity in ("category", "principal") else None,
        principals=[p.name for p in model.principals],
    )
    title = f"{quantity_label(quantity)} — step {int(model.time)}"
    if not model.last_agent_metrics:
        title += " (measured from step 1)"
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    note = (
        f"Drawing a random sample of {len(layout.nodes):,} of {layout.n_total:,} agents "
        "(to stay responsive); statistics in the plots use every agent."
        if layout.sampled
        else f"Drawing {layout.caption()}."
    )
    with solara.Column(gap="4px", style={"height": "100%", "overflow": "hidden"}):
        solara.Select(
            "colour agents by",
            values=APP_QUANTITIES + channels,
            value=colour_by,
            style={"flex": "none"},  # a v-input grows by default
        )
        with solara.Div(style={"flex": "1 1 0", "min-height": "0", "overflow": "hidden"}):
            rw.Image(
                value=_png(fig),
                format="png",
                layout={"width": "100%", "height": "100%", "object_fit": "contain"},
            )
        solara.Text(
            note,
            classes=["mesaopt-map-note"],
            style={"flex": "none", "font-size": "0.8rem", "font-style": "italic"},
        )


def _history(model: VizModel) -> pd.DataFrame:
    return pd.DataFrame(model.history)


def _step_axis(ax: Any, model: VizModel) -> None:
    """Whole steps from 0 to the current step on the x axis."""
    ax.set_xlim(0, max(int(model.time), 1))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("step")


def _marker(rows: pd.DataFrame) -> str | None:
    """Markers while there are too few steps for a line to show."""
    return "o" if len(rows) < 3 else None


@solara.component
def ProxyValuePlot(model: VizModel) -> None:
    """Proxy M and true value V per principal over the steps so far."""
    update_counter.get()
    fig = Figure(figsize=(6.0, 3.4))
    ax = fig.subplots()
    history = _history(model)
    names = [p.name for p in model.principals]
    for i, name in enumerate(names):
        rows = history[history["principal"] == name] if len(history) else history
        if len(rows):
            colour = OKABE_ITO[i % len(OKABE_ITO)]
            style = {"color": colour, "lw": 1.5, "marker": _marker(rows), "ms": 3}
            ax.plot(rows["step"], rows["proxy"], **style, label=f"{name}: proxy M")
            ax.plot(rows["step"], rows["value"], **style, ls="--", label=f"{name}: true V")
    for regime in model.config.regimes:
        if regime.at <= model.time:
            ax.axvline(regime.at, color="0.5", ls=":", lw=1)
    if not len(history):
        ax.text(0.5, 0.5, "press STEP or ▶ to run", ha="center", transform=ax.transAxes)
    _step_axis(ax, model)
    ax.set_ylabel("mean per agent")
    ax.set_title("Proxy (solid) vs true value (dashed)", fontsize=10)
    ax.grid(alpha=0.3)
    if len(history):
        ax.legend(frameon=False, fontsize=7)
    fig.tight_layout()
    solara.FigureMatplotlib(fig, format="png")


@solara.component
def FailurePlot(model: VizModel) -> None:
    """Principal loss by category over time (all principals), with current counts."""
    update_counter.get()
    fig = Figure(figsize=(6.0, 3.4))
    ax = fig.subplots()
    history = _history(model)
    rows = history[history["principal"] == "all"] if len(history) else history
    for category in CATEGORIES:
        if len(rows):
            count = int(rows[f"n_{category}"].iloc[-1])
            ax.plot(
                rows["step"],
                rows[f"principal_loss_{category}"],
                color=CATEGORY_COLOURS[category],
                lw=1.5,
                marker=_marker(rows),
                ms=3,
                label=f"{category} (now {count:,})",
            )
    _step_axis(ax, model)
    ax.set_ylabel("principal loss per agent")
    ax.set_title("Failures by category", fontsize=10)
    ax.grid(alpha=0.3)
    if len(rows):
        ax.legend(frameon=False, fontsize=7, title="category", title_fontsize=7)
    fig.tight_layout()
    solara.FigureMatplotlib(fig, format="png")


def loss_figure(model: VizModel) -> Figure:
    """Principal loss and mesa loss per principal: who fails, at which level."""
    fig = Figure(figsize=(6.0, 3.4))
    ax = fig.subplots()
    history = _history(model)
    for i, name in enumerate(p.name for p in model.principals):
        rows = history[history["principal"] == name] if len(history) else history
        if len(rows):
            style = {"color": OKABE_ITO[i % len(OKABE_ITO)], "lw": 1.5}
            style.update(marker=_marker(rows), ms=3)
            ax.plot(rows["step"], rows["principal_loss"], **style, label=f"{name}: principal")
            ax.plot(rows["step"], rows["mesa_loss"], **style, ls="--", label=f"{name}: mesa")
    if not len(history):
        ax.text(0.5, 0.5, "press STEP or ▶ to run", ha="center", transform=ax.transAxes)
    _step_axis(ax, model)
    ax.axhline(0, color="0.8", lw=0.8)
    ax.set_ylabel("loss per agent")
    ax.set_title("Misalignment: principal loss (solid) vs mesa loss (dashed)", fontsize=10)
    ax.grid(alpha=0.3)
    if len(history):
        ax.legend(frameon=False, fontsize=7)
    fig.tight_layout()
    return fig


@solara.component
def LossPlot(model: VizModel) -> None:
    """Principal loss and mesa loss per principal: who fails, at which level."""
    update_counter.get()
    solara.FigureMatplotlib(loss_figure(model), format="png")


def loss_parts_figure(model: VizModel) -> Figure:
    """The principal loss of all agents split into its Shapley parts, and its total (dotted)."""
    fig = Figure(figsize=(6.0, 3.4))
    ax = fig.subplots()
    history = _history(model)
    rows = history[history["principal"] == "all"] if len(history) else history
    if len(rows):
        for part, (label, colour) in LOSS_PARTS.items():
            ax.plot(rows["step"], rows[f"loss_{part}"], color=colour, lw=1.4, label=label)
        ax.plot(rows["step"], rows["principal_loss"], color="black", ls=":", lw=1.0, label="total")
        ax.legend(frameon=False, fontsize=7)
    _step_axis(ax, model)
    ax.axhline(0, color="0.8", lw=0.8)
    ax.set_ylabel("value units per agent")
    ax.set_title("Where the principal loss comes from (all agents)", fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


@solara.component
def LossPartsPlot(model: VizModel) -> None:
    """The principal loss of all agents split into its Shapley parts, and its total."""
    update_counter.get()
    solara.FigureMatplotlib(loss_parts_figure(model), format="png")


#: Goodhart measures of the ``steps`` table drawn by :func:`GoodhartPlot`, with their labels.
GOODHART_COLUMNS = {
    "goodhart_regressional": "regressional (winner's curse)",
    "goodhart_extremal": "extremal (share outside selection range)",
    "goodhart_causal": "causal (stale world models)",
    "goodhart_adversarial": "adversarial (gamed channels)",
}


def goodhart_figure(model: VizModel) -> Figure:
    """The four Goodhart measures over all agents (regressional at selection steps only)."""
    fig = Figure(figsize=(6.0, 3.4))
    ax = fig.subplots()
    history = _history(model)
    rows = history[history["principal"] == "all"] if len(history) else history
    for i, (column, label) in enumerate(GOODHART_COLUMNS.items()):
        if len(rows) and column in rows:
            points = rows.dropna(subset=[column])
            style = "o-" if column == "goodhart_regressional" else "-"
            colour = OKABE_ITO[(i + 2) % len(OKABE_ITO)]
            ax.plot(points["step"], points[column], style, color=colour, lw=1.4, ms=3, label=label)
    _step_axis(ax, model)
    ax.axhline(0, color="0.8", lw=0.8)
    ax.set_ylabel("per agent (value units; extremal: share)")
    ax.set_title("Goodhart measures (all agents)", fontsize=10)
    ax.grid(alpha=0.3)
    if len(rows):
        ax.legend(frameon=False, fontsize=7)
    fig.tight_layout()
    return fig


@solara.component
def GoodhartPlot(model: VizModel) -> None:
    """The four Goodhart measures over all agents (regressional at selection steps only)."""
    update_counter.get()
    solara.FigureMatplotlib(goodhart_figure(model), format="png")


def welfare_figure(model: VizModel) -> Figure:
    """Welfare of all agents against the planner's first best (its gap is what is lost)."""
    fig = Figure(figsize=(6.0, 3.4))
    ax = fig.subplots()
    history = _history(model)
    rows = history[history["principal"] == "all"] if len(history) else history
    if len(rows):
        style = {"lw": 1.5, "marker": _marker(rows), "ms": 3}
        ax.plot(rows["step"], rows["welfare"], color=OKABE_ITO[2], **style, label="welfare")
        if rows["welfare_planner"].notna().any():
            ax.plot(
                rows["step"],
                rows["welfare_planner"],
                color="0.3",
                ls="--",
                **style,
                label="planner's first best",
            )
        ax.legend(frameon=False, fontsize=7)
    _step_axis(ax, model)
    ax.set_ylabel("welfare per agent")
    ax.set_title("Welfare vs the planner's first best (all agents)", fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


@solara.component
def WelfarePlot(model: VizModel) -> None:
    """Welfare of all agents against the planner's first best (its gap is what is lost)."""
    update_counter.get()
    solara.FigureMatplotlib(welfare_figure(model), format="png")


#: The app's tabs: a label and the components drawn on it, in grid order.
PAGES: list[tuple[str, list[Callable[[VizModel], Any]]]] = [
    ("Agents, proxy and true value", [AgentMap, ProxyValuePlot, FailurePlot]),
    ("Losses, misalignment and welfare", [LossPlot, LossPartsPlot, GoodhartPlot, WelfarePlot]),
]


@solara.component
def NamedPages(model: VizModel, pages: list[tuple[str, list[Any]]]) -> None:
    """Tabs labelled with their names, each a draggable, resizable grid of its components.

    Mesa's ComponentsView does the same with tabs labelled "Page <i>"; only the open tab's
    components are drawn (they redraw on every step).
    """
    current, set_current = solara.use_state(0)
    layouts, set_layouts = solara.use_state({})
    with solara.v.Tabs(v_model=current, on_v_model=set_current):
        for label, _components in pages:
            solara.v.Tab(children=[label])
    with solara.v.Window(v_model=current):
        for i, (_label, components) in enumerate(pages):
            with solara.v.WindowItem():
                if i == current:
                    layout = layouts.get(i) or make_initial_grid_layout(len(components))

                    def on_layout(new: list[dict[str, Any]], page: int = i) -> None:
                        set_layouts(lambda old: {**old, page: new})

                    solara.GridDraggable(
                        items=[component(model) for component in components],
                        grid_layout=layout,
                        resizable=True,
                        draggable=True,
                        on_grid_layout=on_layout,
                    )


@solara.component
def MesaOptViz(model: VizModel, model_params: dict[str, Any]) -> None:
    """The page: Mesa's app bar and sidebar (controls, parameters), a heading, the named tabs."""
    reactive = solara.use_reactive(model)
    name, description = scenario_title()
    SolaraViz(
        reactive,
        components=[],
        model_params=model_params,
        name=f"mesaopt — {name}",
        play_interval=150,
    )
    with solara.Row(style={"align-items": "baseline", "flex-wrap": "wrap"}):
        solara.Text(f"Scenario: {name}", classes=["mesaopt-scenario"], style={"font-weight": "600"})
        if description:
            solara.Text(f"— {description}", style={"color": "#555", "font-size": "0.9rem"})
    NamedPages(reactive.value, PAGES)


def make_page(model: VizModel | None = None) -> Any:
    """The SolaraViz page for ``model`` (by default a :class:`VizModel` of the base scenario)."""
    base = base_scenario()
    params = dict(MODEL_PARAMS)
    start = _initial_agents()
    sizes = sorted({*APP_SIZES, start})
    params["n_agents"] = {"type": "Select", "value": start, "values": sizes, "label": "agents"}
    topology = (
        base.network.topology if base.network.topology in APP_TOPOLOGIES else "watts_strogatz"
    )
    params["topology"] = {**MODEL_PARAMS["topology"], "value": topology}
    params["seed"] = {**MODEL_PARAMS["seed"], "value": base.run.seed}
    if base.regimes:
        params["regime_at"] = ValueSlider("regime change step", base.regimes[0].at, 1, 300, 1)
    if model is None:
        model = VizModel(
            n_agents=start,
            topology=topology,
            seed=base.run.seed,
            regime_at=base.regimes[0].at if base.regimes else 100,
        )
    return MesaOptViz(model, params)


def _initial_agents() -> int:
    size = os.environ.get("MESAOPT_VIZ_AGENTS")
    if size:
        return int(size)
    return base_scenario().network.n_agents


page = make_page()
