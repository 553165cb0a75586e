"""Static figures drawn from recorded tables (never from a live model).

Every function takes the tables of a run (pandas DataFrames as read from its folder) and writes a
PNG (and an SVG next to it when ``svg=True``). Colours come from the Okabe–Ito palette, which stays
distinguishable under the common colour-vision deficiencies.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

#: Okabe & Ito (2008) colour-blind-safe palette.
OKABE_ITO = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")


def _save(fig: plt.Figure, path: Path, svg: bool) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130, bbox_inches="tight")
    if svg:
        fig.savefig(path.with_suffix(".svg"), bbox_inches="tight")
    plt.close(fig)
    return path


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
    regimes = (
        events[events["kind"] == "regime"].drop_duplicates("step")
        if events is not None and len(events)
        else None
    )
    for ax, name in zip(axes[0], principals, strict=True):
        rows = steps[steps["principal"] == name].sort_values("step")
        ax.plot(rows["step"], rows["proxy"], color=OKABE_ITO[0], lw=1.6, label="proxy M")
        ax.plot(rows["step"], rows["value"], color=OKABE_ITO[1], lw=1.6, label="true value V")
        if regimes is not None:
            for _, event in regimes.iterrows():
                ax.axvline(event["step"], color="0.4", ls="--", lw=1)
                ax.annotate(
                    "regime change",
                    (event["step"], 1.0),
                    xycoords=("data", "axes fraction"),
                    xytext=(3, -12),
                    textcoords="offset points",
                    fontsize=8,
                    color="0.3",
                )
        ax.axhline(0, color="0.8", lw=0.8)
        ax.set_title(f"principal: {name}")
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("mean per agent (units of output)")
    axes[0][-1].legend(loc="best", frameon=False)
    fig.suptitle("Proxy vs true value per principal", y=1.02)
    return _save(fig, Path(path), svg)
