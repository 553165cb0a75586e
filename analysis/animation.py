"""The agent map over time: a GIF (and an MP4 when ffmpeg is present) from the agent snapshots.

One frame per snapshot of the ``agents`` table, drawn by :func:`analysis.agent_maps.draw_agent_map`
on a fixed layout with fixed colour and size scales, so that frames are comparable.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.animation import FFMpegWriter, FuncAnimation, PillowWriter

from mesaopt.analysis.agent_maps import (
    CATEGORICAL,
    MapLayout,
    draw_agent_map,
    quantity_label,
    size_scale,
    value_limits,
)


def animate_agent_map(
    agents: pd.DataFrame,
    layout: MapLayout,
    path: str | Path,
    *,
    quantity: str = "category",
    fps: int = 4,
    max_frames: int = 60,
    mp4: bool | None = None,
) -> list[Path]:
    """Write the agent map over time as a GIF (and an MP4 next to it).

    Args:
        agents: The run's ``agents`` table (one frame per snapshot step).
        layout: Where agents sit (:func:`analysis.agent_maps.map_layout`).
        path: The GIF's path.
        quantity: Column to colour by (see :func:`analysis.agent_maps.draw_agent_map`).
        fps: Frames per second.
        max_frames: At most this many snapshots, evenly spaced, first and last included.
        mp4: Also write an MP4; None writes one exactly when ``ffmpeg`` is on the PATH.

    Returns:
        The paths written (the GIF first).

    Raises:
        ValueError: If the table has no snapshots.
    """
    if agents.empty:
        raise ValueError("the run has no agent snapshots (run.agent_every = 0 or snapshots off)")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    steps = np.sort(agents["step"].unique())
    if len(steps) > max_frames:
        steps = steps[np.unique(np.linspace(0, len(steps) - 1, max_frames).round().astype(int))]
    principals = list(dict.fromkeys(agents["principal"]))
    drawn = agents[agents["node"].isin(layout.nodes)]
    limits = None if quantity in CATEGORICAL else value_limits(drawn[quantity])
    size_by = "principal_loss" if quantity in CATEGORICAL else None
    size_limit = size_scale(drawn[size_by].to_numpy(dtype=float)) if size_by else None
    by_step = {int(s): frame for s, frame in drawn.groupby("step")}
    fig, ax = plt.subplots(figsize=(7.2, 5.0))

    def draw(index: int) -> list:
        step = int(steps[index])
        fig.clear()
        axis = fig.add_subplot(1, 1, 1)
        draw_agent_map(
            axis,
            layout,
            by_step[step],
            quantity,
            size_by=size_by,
            limits=limits,
            size_limit=size_limit,
            principals=principals,
        )
        axis.set_title(f"{quantity_label(quantity)} — step {step}", fontsize=10)
        fig.text(0.01, 0.01, layout.caption(), fontsize=7, color="0.35")
        fig.tight_layout()
        return []

    del ax
    animation = FuncAnimation(fig, draw, frames=len(steps), blit=False)
    written = [path]
    animation.save(path, writer=PillowWriter(fps=fps), dpi=90)
    if mp4 is None:
        mp4 = shutil.which("ffmpeg") is not None
    if mp4:
        target = path.with_suffix(".mp4")
        animation.save(target, writer=FFMpegWriter(fps=fps), dpi=110)
        written.append(target)
    plt.close(fig)
    return written
