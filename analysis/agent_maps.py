"""Maps of the agents themselves: a lattice heatmap on grids, a network drawing elsewhere.

A :class:`MapLayout` says where each drawn agent sits: on a ``grid`` topology every agent is a cell
of the lattice (a heatmap shows all of them, whatever N); on other topologies agents are nodes
placed by a seeded force-directed layout (:func:`force_layout`, cached on disk by
:func:`map_layout`), and networks above ``max_nodes`` agents are drawn as a seeded random sample,
whose size the figure states. Networks too large or dense for a node-link drawing to show
anything but a hairball (above :data:`NODE_LINK_MAX_AGENTS` agents or a mean degree of
:data:`NODE_LINK_MAX_MEAN_DEGREE`, :func:`prefers_group_view`) are shown aggregated by principal
and category instead (:func:`plot_group_view`: a block matrix of the edges between groups, each
group's losses with intervals and its mean efforts). :func:`draw_agent_map` draws one snapshot on
a Matplotlib axis (used by the static figures, the animation in :mod:`analysis.animation` and the
app in :mod:`analysis.app`); :func:`plot_agent_map` writes a figure from a run's ``agents``
table.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import scipy.sparse as sp
from matplotlib.collections import LineCollection
from matplotlib.colors import BoundaryNorm, ListedColormap, Normalize
from matplotlib.lines import Line2D

from mesaopt.analysis.figures import CATEGORY_COLOURS, OKABE_ITO, save_figure
from mesaopt.analysis.stats import t_quantile
from mesaopt.model.measures import CATEGORIES
from mesaopt.model.network import Network
from mesaopt.model.recording import atomic_path

#: Networks with more agents than this are drawn as a random sample of this many.
MAX_DRAWN_NODES = 1500

#: Version of the layout algorithm, part of the cache key.
_LAYOUT_VERSION = 1

#: Readable names of the quantities an agent map can be coloured by.
QUANTITY_LABELS = {
    "category": "mesa-optimizer category",
    "principal": "principal",
    "principal_loss": "principal loss (value units)",
    "mesa_loss": "mesa loss (utility units)",
    "proxy": "proxy M",
    "value": "true value V",
    "utility": "agent utility U",
    "goodhart_adversarial": "adversarial Goodhart (value units)",
    "goodhart_causal": "causal Goodhart (value units)",
}

#: Categorical quantities (coloured by a fixed palette with a legend, not a colour bar).
CATEGORICAL = ("category", "principal")


def quantity_label(quantity: str) -> str:
    """Axis/colour-bar label of an agent quantity (``effort_<channel>`` included)."""
    if quantity.startswith("effort_"):
        return f"effort on {quantity.removeprefix('effort_')} (units of effort)"
    return QUANTITY_LABELS.get(quantity, quantity.replace("_", " "))


@dataclass(frozen=True)
class MapLayout:
    """Where the drawn agents sit.

    Attributes:
        kind: ``"grid"`` (lattice heatmap) or ``"network"`` (node-link drawing).
        nodes: Node ids drawn (all nodes on a grid; a sample on large networks), sorted.
        positions: ``(len(nodes), 2)`` coordinates, lattice ``(col, row)`` on a grid.
        edges: ``(E, 2)`` pairs of indices into ``nodes`` (edges among drawn nodes; empty on grids).
        n_total: Number of agents in the run.
        grid_shape: ``(width, height)`` on a grid, else None.
    """

    kind: str
    nodes: np.ndarray
    positions: np.ndarray
    edges: np.ndarray
    n_total: int
    grid_shape: tuple[int, int] | None = None

    @property
    def sampled(self) -> bool:
        """Whether only a sample of the agents is drawn."""
        return len(self.nodes) < self.n_total

    def caption(self) -> str:
        """One line saying what is drawn (states the sample size when sampled)."""
        if self.kind == "grid":
            width, height = self.grid_shape or (0, 0)
            return f"all {self.n_total:,} agents on a {width}×{height} lattice"
        if self.sampled:
            return (
                f"random sample of {len(self.nodes):,} of {self.n_total:,} agents "
                f"(edges among them: {len(self.edges):,})"
            )
        return f"all {self.n_total:,} agents, {len(self.edges):,} edges"


def force_layout(
    adjacency: sp.csr_matrix, rng: np.random.Generator, iterations: int = 60
) -> np.ndarray:
    """Fruchterman–Reingold force-directed layout, vectorised with NumPy (O(n²) per iteration).

    Nodes repel each other with force k²/d and edges pull with d²/k (k = 1/√n); the step size
    cools linearly. Fruchterman, T. M. J. & Reingold, E. M. (1991). Graph drawing by
    force-directed placement. Software: Practice and Experience 21, 1129–1164.

    Args:
        adjacency: Symmetric adjacency of the drawn nodes (weights ignored).
        rng: Generator of the initial positions.
        iterations: Number of iterations.

    Returns:
        ``(n, 2)`` positions in the unit square.
    """
    n = adjacency.shape[0]
    pos = rng.random((n, 2)).astype(np.float32)
    if n <= 1:
        return pos.astype(float)
    coo = sp.triu(adjacency, k=1, format="coo")
    rows, cols = coo.row, coo.col
    k = np.float32(1.0 / np.sqrt(n))
    temperature = 0.1
    cooling = temperature / (iterations + 1)
    for _ in range(iterations):
        delta = pos[:, None, :] - pos[None, :, :]
        dist2 = np.einsum("ijk,ijk->ij", delta, delta)
        np.maximum(dist2, 1e-4, out=dist2)
        shift = np.einsum("ij,ijk->ik", (k * k) / dist2, delta)
        if len(rows):
            d = pos[rows] - pos[cols]
            dist = np.sqrt((d * d).sum(axis=1, keepdims=True)) + 1e-6
            pull = d * dist / k
            np.subtract.at(shift, rows, pull)
            np.add.at(shift, cols, pull)
        length = np.sqrt((shift * shift).sum(axis=1, keepdims=True)) + 1e-9
        pos += shift / length * np.minimum(length, temperature)
        temperature -= cooling
    pos -= pos.min(axis=0)
    pos /= max(float(pos.max()), 1e-9)
    return pos.astype(float)


def map_layout(
    network: Network,
    *,
    max_nodes: int = MAX_DRAWN_NODES,
    seed: int = 0,
    cache_dir: str | Path | None = None,
) -> MapLayout:
    """Layout of the agent map of a network: lattice cells, or a seeded, cached node layout.

    Args:
        network: The run's network (as read back by :attr:`analysis.run_folder.RunTables.network`).
        max_nodes: Non-grid networks with more nodes are drawn as a random sample of this many.
        seed: Seed of the sample and of the layout's initial positions.
        cache_dir: Folder for ``.layout-<hash>.npy`` files (positions are reused when the same
            graph, sample and seed come back); None disables the cache.

    Returns:
        The layout.
    """
    n = network.n_nodes
    if network.positions is not None and network.grid_shape is not None:
        return MapLayout(
            kind="grid",
            nodes=np.arange(n),
            positions=np.asarray(network.positions, dtype=float),
            edges=np.empty((0, 2), dtype=np.int64),
            n_total=n,
            grid_shape=network.grid_shape,
        )
    rng = np.random.default_rng(seed)
    nodes = np.arange(n) if n <= max_nodes else np.sort(rng.choice(n, max_nodes, replace=False))
    sub = network.adjacency[nodes][:, nodes].tocsr()
    sub.sum_duplicates()
    coo = sp.triu(sub, k=1, format="coo")
    edges = np.column_stack([coo.row, coo.col]).astype(np.int64)
    positions = None
    cache = None
    if cache_dir is not None:
        digest = hashlib.sha1(usedforsecurity=False)
        for part in (nodes, sub.indptr, sub.indices):
            digest.update(np.ascontiguousarray(part, dtype=np.int64).tobytes())
        digest.update(f"{seed}-{_LAYOUT_VERSION}".encode())
        cache = Path(cache_dir) / f".layout-{digest.hexdigest()[:16]}.npy"
        if cache.is_file():
            loaded = np.load(cache)
            if loaded.shape == (len(nodes), 2):
                positions = loaded
    if positions is None:
        positions = force_layout(sub, np.random.default_rng(seed))
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(cache) as tmp:  # a torn cache file would break every later report
                np.save(tmp, positions)
    return MapLayout("network", nodes, positions, edges, n)


def value_limits(values: np.ndarray | pd.Series) -> tuple[float, float]:
    """Robust colour limits of a continuous quantity (2nd and 98th percentiles)."""
    finite = np.asarray(values, dtype=float)
    finite = finite[np.isfinite(finite)]
    if len(finite) == 0:
        return 0.0, 1.0
    low, high = np.percentile(finite, [2, 98])
    if high <= low:
        high = low + 1.0
    return float(low), float(high)


def size_scale(values: np.ndarray) -> float:
    """Value drawn at full node size: the 98th percentile of the positive part (1 if none)."""
    finite = np.clip(values[np.isfinite(values)], 0, None)
    top = float(np.percentile(finite, 98)) if len(finite) else 0.0
    return top if top > 1e-9 else 1.0


def _categories(quantity: str, principals: Sequence[str]) -> tuple[list[str], list[str]]:
    if quantity == "category":
        return list(CATEGORIES), [CATEGORY_COLOURS[c] for c in CATEGORIES]
    colours = [OKABE_ITO[i % len(OKABE_ITO)] for i in range(len(principals))]
    return list(principals), colours


def draw_agent_map(
    ax: plt.Axes,
    layout: MapLayout,
    snapshot: pd.DataFrame,
    quantity: str = "category",
    *,
    size_by: str | None = "principal_loss",
    limits: tuple[float, float] | None = None,
    size_limit: float | None = None,
    principals: Sequence[str] = (),
    colorbar: bool = True,
    legend: bool = True,
) -> None:
    """Draw one snapshot of the agents on ``ax``.

    Args:
        ax: The axis.
        layout: Where agents sit (:func:`map_layout`).
        snapshot: One step of the ``agents`` table (any column order; rows matched by ``node``).
        quantity: Column to colour by: ``category``, ``principal``, or a numeric column such as
            ``principal_loss``, ``mesa_loss`` or ``effort_<channel>``.
        size_by: Numeric column that sets node size on network drawings (None: equal sizes).
        limits: Colour limits of a numeric quantity (default: robust limits of this snapshot).
        size_limit: Value of ``size_by`` drawn at full size (default: its 98th percentile).
        principals: Principal names in order (colours of ``quantity="principal"``).
        colorbar: Add a colour bar for numeric quantities.
        legend: Add a legend for categorical quantities and node sizes.
    """
    frame = snapshot.set_index("node").reindex(layout.nodes)
    categorical = quantity in CATEGORICAL
    if categorical:
        names, colours = _categories(quantity, principals or sorted(frame["principal"].unique()))
        codes = pd.Categorical(frame[quantity], categories=names).codes.astype(float)
        codes[codes < 0] = np.nan
        cmap = ListedColormap(colours)
        norm = BoundaryNorm(np.arange(len(names) + 1) - 0.5, len(names))
        values = codes
    else:
        values = frame[quantity].to_numpy(dtype=float)
        low, high = limits or value_limits(values)
        cmap = plt.get_cmap("viridis")
        norm = Normalize(low, high)
    mappable = None
    if layout.kind == "grid":
        width, height = layout.grid_shape or (1, 1)
        image = np.full((height, width), np.nan)
        cols = layout.positions[:, 0].astype(int)
        rows = layout.positions[:, 1].astype(int)
        image[rows, cols] = values
        mappable = ax.imshow(
            image, cmap=cmap, norm=norm, interpolation="nearest", origin="lower", aspect="equal"
        )
        ax.set_xlabel("lattice column")
        ax.set_ylabel("lattice row")
    else:
        if len(layout.edges):
            segments = layout.positions[layout.edges]
            ax.add_collection(LineCollection(segments, colors="0.75", linewidths=0.3, zorder=1))
        sizes = np.full(len(layout.nodes), 14.0)
        if size_by is not None and size_by in frame:
            raw = np.nan_to_num(np.clip(frame[size_by].to_numpy(dtype=float), 0, None))
            top = size_limit or size_scale(raw)
            sizes = 4.0 + 56.0 * np.clip(raw / top, 0, 1)
        mappable = ax.scatter(
            layout.positions[:, 0],
            layout.positions[:, 1],
            c=values,
            cmap=cmap,
            norm=norm,
            s=sizes,
            linewidths=0.2,
            edgecolors="0.2",
            zorder=2,
        )
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_aspect("equal")
        ax.margins(0.03)
        for side in ("top", "right", "bottom", "left"):
            ax.spines[side].set_visible(False)
        if legend and size_by is not None and size_by in frame:
            top = size_limit or size_scale(frame[size_by].to_numpy(dtype=float))
            handles = [
                Line2D([], [], ls="", marker="o", color="0.5", markersize=np.sqrt(4 + 56 * f))
                for f in (0.0, 0.5, 1.0)
            ]
            labels = [f"{f * top:.2g}" for f in (0.0, 0.5, 1.0)]
            size_legend = ax.legend(
                handles,
                labels,
                # the units on a line of their own: outside the axes, a long title is clipped
                title="size: " + quantity_label(size_by).replace(" (", "\n(", 1),
                loc="upper left",
                bbox_to_anchor=(1.0, 0.35),
                frameon=False,
                fontsize=7,
                title_fontsize=7,
            )
            ax.add_artist(size_legend)
    if categorical and legend:
        handles = [
            Line2D([], [], ls="", marker="s", markersize=8, color=c)
            for c in colours  # type: ignore[possibly-undefined]
        ]
        counts = pd.Series(frame[quantity]).value_counts()
        labels = [f"{name} ({int(counts.get(name, 0)):,})" for name in names]  # type: ignore[possibly-undefined]
        ax.legend(
            handles,
            labels,
            title=quantity_label(quantity),
            loc="upper left",
            bbox_to_anchor=(1.0, 1.0),
            frameon=False,
            fontsize=8,
            title_fontsize=8,
        )
    elif not categorical and colorbar and mappable is not None:
        bar = ax.figure.colorbar(mappable, ax=ax, fraction=0.046, pad=0.03)
        bar.set_label(quantity_label(quantity), fontsize=8)
        bar.ax.tick_params(labelsize=7)


def plot_agent_map(
    agents: pd.DataFrame,
    layout: MapLayout,
    path: str | Path,
    *,
    quantities: Sequence[str] = ("category", "principal_loss"),
    step: int | None = None,
    svg: bool = False,
) -> Path:
    """Agent map of one snapshot, one panel per quantity.

    Args:
        agents: The run's ``agents`` table (snapshots).
        layout: Where agents sit (:func:`map_layout`).
        path: Where to write the PNG.
        quantities: Columns to colour by, one panel each (see :func:`draw_agent_map`).
        step: Snapshot step (default: the last).
        svg: Also write an SVG next to it.

    Returns:
        The PNG's path.

    Raises:
        ValueError: If the table has no snapshots.
    """
    if agents.empty:
        raise ValueError("the run has no agent snapshots (run.agent_every = 0 or snapshots off)")
    step = int(agents["step"].max()) if step is None else step
    snapshot = agents[agents["step"] == step]
    principals = list(dict.fromkeys(agents["principal"]))
    panel_width = 5.0 if layout.kind == "network" else 4.6
    fig, axes = plt.subplots(
        1, len(quantities), figsize=(panel_width * len(quantities) + 1.2, 4.4), squeeze=False
    )
    for ax, quantity in zip(axes[0], quantities, strict=True):
        draw_agent_map(
            ax,
            layout,
            snapshot,
            quantity,
            size_by="principal_loss" if quantity in CATEGORICAL else None,
            principals=principals,
        )
        ax.set_title(quantity_label(quantity), fontsize=10)
    fig.suptitle(f"Agents at step {step} — {layout.caption()}", fontsize=11)
    fig.tight_layout()
    return save_figure(fig, Path(path), svg)


#: Non-grid networks are drawn node by node only up to this many agents and this mean degree;
#: larger or denser ones (a Watts–Strogatz graph of 1,000 agents with k = 8, say) are hairballs
#: whose edges hide the nodes, and are drawn by :func:`plot_group_view` instead.
NODE_LINK_MAX_AGENTS = 150
NODE_LINK_MAX_MEAN_DEGREE = 4.0


def prefers_group_view(network: Network) -> bool:
    """Whether a network is too large or dense for a node-link map (grids never are).

    Args:
        network: The run's network.

    Returns:
        True above :data:`NODE_LINK_MAX_AGENTS` agents or :data:`NODE_LINK_MAX_MEAN_DEGREE`.
    """
    if network.grid_shape is not None:
        return False
    n = max(network.n_nodes, 1)
    return n > NODE_LINK_MAX_AGENTS or 2 * network.n_edges / n > NODE_LINK_MAX_MEAN_DEGREE


def agent_groups(snapshot: pd.DataFrame, principals: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """The groups of one snapshot (principal × category, in principal and category order).

    Args:
        snapshot: One step of the ``agents`` table.
        principals: Principal names in scenario order.

    Returns:
        The group labels (``"lab · trans"``) of the groups present, and each row's group index.
    """
    order = {(p, c): i for i, (p, c) in enumerate((p, c) for p in principals for c in CATEGORIES)}
    keys = list(zip(snapshot["principal"], snapshot["category"], strict=True))
    present = sorted({order.get(k, len(order)) for k in keys})
    names = {v: k for k, v in order.items()}
    index = {code: i for i, code in enumerate(present)}
    labels = [" · ".join(names.get(code, ("?", "?"))) for code in present]
    return labels, np.array([index[order.get(k, len(order))] for k in keys], dtype=np.int64)


def group_edge_counts(network: Network, nodes: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Undirected edges between (and, on the diagonal, within) groups of agents.

    Args:
        network: The run's network.
        nodes: Node id of every agent in the snapshot.
        groups: Group index of every agent (same order as ``nodes``).

    Returns:
        A symmetric ``(G, G)`` int64 matrix: entry (g, h) counts the edges with one end in g and
        the other in h; each edge is counted once (within a group: on the diagonal).
    """
    size = int(groups.max()) + 1 if len(groups) else 0
    group_of = np.full(network.n_nodes, -1, dtype=np.int64)
    group_of[np.asarray(nodes, dtype=np.int64)] = groups
    upper = sp.triu(network.adjacency, k=1, format="coo")
    a, b = group_of[upper.row], group_of[upper.col]
    keep = (a >= 0) & (b >= 0)
    counts = np.zeros((size, size), dtype=np.int64)
    np.add.at(counts, (a[keep], b[keep]), 1)
    return counts + counts.T - np.diag(np.diag(counts))


def plot_group_view(
    agents: pd.DataFrame,
    network: Network,
    path: str | Path,
    *,
    step: int | None = None,
    svg: bool = False,
) -> Path:
    """The agents aggregated by principal and category: who is linked to whom, who fails how.

    For networks too large or dense to draw node by node (:func:`prefers_group_view`). Left: a
    block matrix of the edges between groups (principal × mesa-optimizer category at the
    snapshot), counts written in the cells; middle: each group's mean principal and mesa loss
    with 95% t intervals over its agents and its n; right: each group's mean effort per channel.

    Args:
        agents: The run's ``agents`` table (snapshots).
        network: The run's network.
        path: Where to write the PNG.
        step: Snapshot step (default: the last).
        svg: Also write an SVG next to it.

    Returns:
        The PNG's path.

    Raises:
        ValueError: If the table has no snapshots.
    """
    if agents.empty:
        raise ValueError("the run has no agent snapshots (run.agent_every = 0 or snapshots off)")
    step = int(agents["step"].max()) if step is None else step
    snapshot = agents[agents["step"] == step].reset_index(drop=True)
    principals = list(dict.fromkeys(agents["principal"]))
    labels, groups = agent_groups(snapshot, principals)
    counts = group_edge_counts(network, snapshot["node"].to_numpy(), groups)
    sizes = np.bincount(groups, minlength=len(labels))
    ticks = [f"{label} (n={n:,})" for label, n in zip(labels, sizes, strict=True)]
    channels = [c for c in snapshot.columns if c.startswith("effort_")]
    height = max(3.8, 0.42 * len(labels) + 1.6)
    fig, axes = plt.subplots(
        1,
        3,
        figsize=(15.5, height),
        gridspec_kw={"width_ratios": [1.25, 1.0, 0.2 + 0.45 * len(channels)]},
    )
    edges_ax, loss_ax, effort_ax = axes
    shown = np.where(counts > 0, counts, np.nan)
    image = edges_ax.imshow(
        shown, cmap="Blues", norm=matplotlib.colors.LogNorm(vmin=1, vmax=max(counts.max(), 2))
    )
    if len(labels) <= 16:
        for (g, h), value in np.ndenumerate(counts):
            edges_ax.text(
                h,
                g,
                f"{value:,}",
                ha="center",
                va="center",
                fontsize=7,
                color="white" if value > counts.max() ** 0.7 else "0.15",
            )
    edges_ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=7)
    edges_ax.set_yticks(range(len(labels)), ticks, fontsize=7)
    edges_ax.set_title(f"Edges between groups ({network.n_edges:,} in all)", fontsize=10)
    fig.colorbar(image, ax=edges_ax, fraction=0.046, pad=0.02, label="edges (log scale)")

    y = np.arange(len(labels))
    for offset, loss, colour in (
        (-0.18, "principal_loss", OKABE_ITO[0]),
        (0.18, "mesa_loss", OKABE_ITO[1]),
    ):
        means, halves = [], []
        for g in range(len(labels)):
            values = snapshot.loc[groups == g, loss].to_numpy(dtype=float)
            values = values[np.isfinite(values)]
            means.append(values.mean() if len(values) else np.nan)
            if len(values) >= 2:
                t = t_quantile(0.975, len(values) - 1)
                halves.append(t * values.std(ddof=1) / np.sqrt(len(values)))
            else:
                halves.append(np.nan)
        loss_ax.barh(
            y + offset,
            np.nan_to_num(means),
            0.34,
            xerr=np.nan_to_num(halves),
            color=colour,
            ecolor="0.2",
            capsize=2,
            label=quantity_label(loss),
        )
    loss_ax.set_yticks(y, ticks, fontsize=7)
    loss_ax.invert_yaxis()
    loss_ax.axvline(0, color="0.5", lw=0.8)
    loss_ax.grid(axis="x", alpha=0.3)
    loss_ax.set_title("Mean loss per group (95% t interval; none for n = 1)", fontsize=10)
    loss_ax.set_xlabel("mean loss per agent", fontsize=8)
    # Below the axes: inside, no corner is free of the bars whatever the groups' losses.
    loss_ax.legend(
        frameon=False, fontsize=7, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.16)
    )

    if channels:
        effort = np.array(
            [[snapshot.loc[groups == g, c].mean() for c in channels] for g in range(len(labels))]
        )
        shade = effort_ax.imshow(effort, cmap="viridis", aspect="auto")
        bright = np.nanmin(effort) + 0.6 * (np.nanmax(effort) - np.nanmin(effort))
        for (g, k), value in np.ndenumerate(effort):
            colour = "0.1" if value > bright else "white"  # dark text on viridis' yellow end
            effort_ax.text(k, g, f"{value:.2f}", ha="center", va="center", fontsize=7, color=colour)
        effort_ax.set_xticks(
            range(len(channels)),
            [c.removeprefix("effort_") for c in channels],
            rotation=45,
            ha="right",
            fontsize=7,
        )
        effort_ax.set_yticks(range(len(labels)), [])
        effort_ax.set_title("Mean effort", fontsize=10)
        fig.colorbar(shade, ax=effort_ax, fraction=0.08, pad=0.04, label="units of effort")
    else:
        effort_ax.axis("off")
    fig.suptitle(
        f"Agents at step {step} by principal and category — {network.n_nodes:,} agents, "
        f"{network.n_edges:,} edges (too many to draw one by one)",
        fontsize=11,
    )
    fig.tight_layout()
    return save_figure(fig, Path(path), svg)
