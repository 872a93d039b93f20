"""Learning curves that stay readable at a full grid's scale: per dataset, small multiples by one
axis; in each panel the top configurations drawn as their mean over seeds with a shaded 95 % CI
band (``stats.curve_band``) and named in a legend under the panel, the rest as faint lines.

A hundred coloured lines under a legend that covers them tell nothing; a few named curves over a
grey context of the others tell which configurations lead and how far the seeds let them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from tlbench.figures import save_figure
from tlbench.spec import AXIS_SINGULAR

AXES = list(AXIS_SINGULAR.values())

TOP = 3  # configurations highlighted per panel
COLOURS = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple"]


def slug(s: str) -> str:
    """A name as a safe file-name part."""
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in s)


def _short(config: str, drop: set[int]) -> str:
    """A configuration's name without the parts every curve of its panel shares."""
    parts = config.split("/")
    return "/".join(p for i, p in enumerate(parts) if i not in drop) or config


def _bands(val: pd.DataFrame) -> pd.DataFrame:
    """Per (configuration, epoch): n, mean and CI of val accuracy across seeds."""
    from tlbench.stats import curve_band

    frame = val.rename(columns={"value": "val_acc"})
    return curve_band(frame[["config", "seed", "epoch", "val_acc"]], by=("config",))


def _panel(ax: Any, band: pd.DataFrame, title: str, drop: set[int]) -> None:
    """One panel: every configuration faint, the top ``TOP`` by final mean coloured with bands."""
    final = band.sort_values("epoch").groupby("config", sort=False)["mean"].last()
    top = list(final.sort_values(ascending=False, kind="stable").index[:TOP])
    for config, g in band.groupby("config", sort=False):
        if config not in top:
            ax.plot(g["epoch"], g["mean"], color="0.75", linewidth=0.7, alpha=0.6, zorder=1)
    for colour, config in zip(COLOURS, top, strict=False):
        g = band[band["config"] == config]
        ax.fill_between(g["epoch"], g["ci_low"], g["ci_high"], color=colour, alpha=0.2, linewidth=0, zorder=2)
        ax.plot(
            g["epoch"],
            g["mean"],
            color=colour,
            linewidth=1.6,
            marker=".",
            label=_short(config, drop),
            zorder=3,
        )
    ax.set_title(f"{title} ({final.size} configurations)", fontsize=9)
    ax.set_xlabel("epoch", fontsize=8)
    ax.set_ylabel("val accuracy", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    ax.legend(
        fontsize=7,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.2),
        frameon=False,
        title="top by final val acc",
        title_fontsize=7,
    )


def learning_curves(
    history: pd.DataFrame, out: Path, axis: str = "strategy", keep: dict[str, Any] | None = None
) -> dict[str, Path]:
    """Validation accuracy per epoch: one figure per dataset, one panel per value of ``axis``."""
    import numpy as np
    from matplotlib.figure import Figure

    val = history[history["metric"] == "val_acc"]
    if "config" not in val.columns:
        val = val.assign(config=val["cell"], seed=0)
    files: dict[str, Path] = {}
    for ds, group in val.groupby("dataset", sort=False):
        by = axis if axis in group.columns and axis != "dataset" else None
        panels = list(dict.fromkeys(group[by])) if by else [str(ds)]
        ncols = 2 if len(panels) in (2, 4) else min(len(panels), 3)
        nrows = -(-len(panels) // ncols)
        fig = Figure(figsize=(5.2 * ncols, 3.9 * nrows))
        axes = np.atleast_1d(fig.subplots(nrows, ncols)).ravel()
        drop = {0} | ({AXES.index(by)} if by else set())
        for ax, value in zip(axes, panels, strict=False):
            g = group[group[by] == value] if by else group
            _panel(ax, _bands(g), f"{by} = {value}" if by else str(value), drop)
        for ax in axes[len(panels) :]:
            ax.set_visible(False)
        title = f"learning curves: {ds} (mean over seeds with a 95 % CI band; each panel its own y scale)"
        fig.suptitle(title, fontsize=11)
        fig.tight_layout()
        files.update(save_figure(fig, out / f"curves_{slug(str(ds))}.png", f"learning curves: {ds}", keep))
    return files
