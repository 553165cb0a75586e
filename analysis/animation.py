"""The agent map over time: a GIF (and an MP4 when ffmpeg is present) from the agent snapshots.

One frame per snapshot of the ``agents`` table, drawn by :func:`analysis.agent_maps.draw_agent_map`
on a fixed layout with fixed colour and size scales, so that frames are comparable.
"""

from __future__ import annotations

import shutil
from io import BytesIO
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.animation import AbstractMovieWriter, FFMpegWriter, FuncAnimation, PillowWriter
from matplotlib.colors import to_rgb
from PIL import Image

from mesaopt.analysis.agent_maps import (
    CATEGORICAL,
    MapLayout,
    draw_agent_map,
    quantity_label,
    size_scale,
    value_limits,
)
from mesaopt.analysis.figures import OKABE_ITO


def category_palette() -> Image.Image:
    """A GIF palette holding every figure colour exactly, with its antialiasing blends.

    The Okabe–Ito colours (categories and principals), each blended with white and with black
    at a quarter, a half and three quarters, and 96 greys (edges, text). Pillow's adaptive
    palette merges colours that few pixels use: in a frame with no ``sub`` or ``aligned``
    agent, their legend swatches (sky blue, bluish green) came out the same teal.
    """
    colours = []
    for hex_colour in OKABE_ITO:
        rgb = np.array(to_rgb(hex_colour))
        colours.append(rgb)
        for towards in (np.ones(3), np.zeros(3)):
            colours += [rgb + (towards - rgb) * t for t in (0.25, 0.5, 0.75)]
    colours += [np.full(3, g) for g in np.linspace(0.0, 1.0, 96)]
    flat = (np.clip(np.array(colours), 0, 1) * 255).round().astype(np.uint8).ravel().tolist()
    palette = Image.new("P", (1, 1))
    palette.putpalette(flat + flat[:3] * (256 - len(flat) // 3))  # padded to 256 entries
    return palette


class FixedPaletteGifWriter(AbstractMovieWriter):
    """A GIF writer whose frames all map onto one fixed palette (:func:`category_palette`).

    For categorical maps, where every colour must stay the colour its legend says; continuous
    colour scales keep matplotlib's :class:`~matplotlib.animation.PillowWriter`.
    """

    def setup(self, fig: plt.Figure, outfile: str | Path, dpi: float | None = None) -> None:
        """Start a GIF of ``fig``'s frames at ``dpi``."""
        super().setup(fig, outfile, dpi=dpi)
        self._palette = category_palette()
        self._frames: list[Image.Image] = []

    def grab_frame(self, **savefig_kwargs: object) -> None:
        """Draw the figure and keep it as a frame mapped onto the palette (no dithering)."""
        buffer = BytesIO()
        self.fig.savefig(buffer, **{**savefig_kwargs, "format": "rgba", "dpi": self.dpi})
        frame = Image.frombuffer("RGBA", self.frame_size, buffer.getbuffer(), "raw", "RGBA", 0, 1)
        rgb = frame.convert("RGB")
        self._frames.append(rgb.quantize(palette=self._palette, dither=Image.Dither.NONE))

    def finish(self) -> None:
        """Write the frames as a looping GIF."""
        self._frames[0].save(
            self.outfile,
            save_all=True,
            append_images=self._frames[1:],
            duration=int(1000 / self.fps),
            loop=0,
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
    gif = FixedPaletteGifWriter if quantity in CATEGORICAL else PillowWriter
    animation.save(path, writer=gif(fps=fps), dpi=90)
    if mp4 is None:
        mp4 = shutil.which("ffmpeg") is not None
    if mp4:
        target = path.with_suffix(".mp4")
        animation.save(target, writer=FFMpegWriter(fps=fps), dpi=110)
        written.append(target)
    plt.close(fig)
    return written
