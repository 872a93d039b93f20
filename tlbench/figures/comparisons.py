"""Figures that compare cells: the pivot as a heatmap, each axis's effect as bars, accuracy vs
training time with the Pareto front per dataset.

Drawn with ``matplotlib.figure.Figure`` directly (rendered by Agg on save), never through pyplot:
no global state, no display needed; matplotlib is imported inside the functions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from tlbench.figures import save_figure


def _text(key: Any) -> str:
    return "/".join(map(str, key)) if isinstance(key, tuple) else str(key)


def heatmap(
    piv: pd.DataFrame,
    out: Path,
    best: pd.DataFrame | None = None,
    tie: pd.DataFrame | None = None,
    keep: dict[str, Any] | None = None,
) -> dict[str, Path]:
    """The test-accuracy pivot as a colour grid with each value written in (the row's best bold,
    its statistical ties †, when given); none if it is empty."""
    if not (piv.size and piv.notna().any().any()):
        return {}
    from matplotlib.figure import Figure

    best = best if best is not None else piv.eq(piv.max(axis=1), axis=0) & piv.notna()
    fig = Figure(figsize=(max(5, 1.1 * piv.shape[1] + 3), max(3, 0.35 * piv.shape[0] + 1.5)))
    ax = fig.subplots()
    im = ax.imshow(piv.to_numpy(dtype=float), cmap="viridis", aspect="auto", vmin=0, vmax=1)
    ax.set_xticks(range(piv.shape[1]), [_text(c) for c in piv.columns], rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(piv.shape[0]), [_text(r) for r in piv.index], fontsize=7)
    for i in range(piv.shape[0]):
        for j in range(piv.shape[1]):
            v = piv.iat[i, j]
            if pd.isna(v):
                continue
            text = f"{v:.3f}" + (" †" if tie is not None and bool(tie.iat[i, j]) else "")
            weight = "bold" if bool(best.iat[i, j]) else "normal"
            colour = "white" if v < 0.6 else "black"
            ax.text(j, i, text, ha="center", va="center", fontsize=7, color=colour, fontweight=weight)
    fig.colorbar(im, ax=ax, label="test accuracy")
    ax.set_title("test accuracy (bold: row's best; †: not significantly different)", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, out / "heatmap.png", "accuracy heatmap", keep)


def axis_bars(effects: pd.DataFrame, out: Path, keep: dict[str, Any] | None = None) -> dict[str, Path]:
    """Mean test accuracy per value of each axis (error bar: std), one panel per axis, three a row."""
    if effects.empty:
        return {}
    import numpy as np
    from matplotlib.figure import Figure

    axes = list(dict.fromkeys(effects["axis"]))
    ncols = min(len(axes), 3)
    nrows = -(-len(axes) // ncols)
    fig = Figure(figsize=(4.2 * ncols, 3.4 * nrows))
    subplots = np.atleast_1d(fig.subplots(nrows, ncols)).ravel()
    for ax, axis in zip(subplots, axes, strict=False):
        e = effects[effects["axis"] == axis]
        ax.bar(range(len(e)), e["mean"], yerr=e["std"].fillna(0), capsize=3, color="tab:blue", alpha=0.8)
        ax.set_xticks(range(len(e)), e["value"], rotation=30, ha="right", fontsize=8)
        ax.set(title=axis, ylim=(0, 1.05), ylabel="mean test acc")
    for ax in subplots[len(axes) :]:
        ax.set_visible(False)
    fig.tight_layout()
    return save_figure(fig, out / "axes.png", "effect of each axis", keep)


def pareto_plot(
    points: pd.DataFrame,
    fronts: dict[str, list[str]],
    out: Path,
    axis: str = "strategy",
    keep: dict[str, Any] | None = None,
) -> dict[str, Path]:
    """Test accuracy against training time, one panel per dataset (accuracies of different datasets
    are not comparable), each with its own Pareto front (``fronts``: dataset -> the points' names
    on it); ``points`` are configurations (``cell``, ``train_time_s``, ``test_acc``, their axes),
    coloured by ``axis``."""
    if not len(points):
        return {}
    import numpy as np
    from matplotlib.figure import Figure

    datasets = list(dict.fromkeys(points["dataset"]))
    colour_by = axis if axis in points.columns and axis != "dataset" else None
    values = list(dict.fromkeys(points[colour_by])) if colour_by else []
    ncols = min(len(datasets), 2)
    nrows = -(-len(datasets) // ncols)
    fig = Figure(figsize=(5.5 * ncols, 3.8 * nrows + 0.6))
    axes = np.atleast_1d(fig.subplots(nrows, ncols)).ravel()
    for ax, ds in zip(axes, datasets, strict=False):
        g = points[points["dataset"] == ds]
        for i, v in enumerate(values or [None]):
            sub = g[g[colour_by] == v] if colour_by else g
            name = str(v) if colour_by else "configurations"
            ax.scatter(sub["train_time_s"], sub["test_acc"], s=12, alpha=0.7, color=f"C{i}", label=name)
        front = g.set_index("cell").loc[fronts[ds]].sort_values("train_time_s")
        ax.plot(
            front["train_time_s"],
            front["test_acc"],
            color="black",
            linewidth=1,
            linestyle="--",
            marker="o",
            markersize=3,
            markerfacecolor="none",
        )
        if g["train_time_s"].max() > 20 * g["train_time_s"].min() > 0:
            ax.set_xscale("log")
        flag = " (test = val: optimistic)" if g["test_is_val"].any() else ""
        ax.set_title(f"{ds}{flag}: {len(front)} on the front", fontsize=9)
        ax.set(xlabel="train time (s)", ylabel="test accuracy")
        ax.grid(alpha=0.3)
    for ax in axes[len(datasets) :]:
        ax.set_visible(False)
    from matplotlib.lines import Line2D

    handles, names = axes[0].get_legend_handles_labels()
    front_line = Line2D(
        [], [], color="black", linestyle="--", marker="o", markersize=3, markerfacecolor="none"
    )
    fig.legend(
        [*handles, front_line],
        [*names, "Pareto front"],
        loc="lower center",
        ncol=len(handles) + 1,
        fontsize=8,
        frameon=False,
    )
    fig.suptitle("accuracy vs training time (configurations: mean over seeds)", fontsize=11)
    fig.tight_layout(rect=(0, 0.08 / nrows, 1, 1))
    return save_figure(fig, out / "pareto.png", "accuracy vs train time", keep)
