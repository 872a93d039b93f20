"""The report's figures, drawn from its frames and saved as PNG next to the report files.

Figures are made with ``matplotlib.figure.Figure`` directly (rendered by Agg on save), never
through pyplot: no global state, no display needed. matplotlib is imported inside the functions
so ``import tlbench.report`` stays cheap for the terminal summary of ``tlbench run``.
(Per-cell figures logged as run artifacts are ``tlbench.plots``, not this module.)
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from tlbench.report.tables import label, pareto_front


def figures(
    df: pd.DataFrame, history: pd.DataFrame, piv: pd.DataFrame, effects: pd.DataFrame, out: Path
) -> dict[str, Path]:
    """Every figure the data allows, as title -> PNG file in ``out`` (in report order)."""
    files = learning_curves(history, out)
    files.update(heatmap(piv, out))
    files.update(axis_bars(effects, out))
    files.update(pareto_plot(df, out))
    return files


def learning_curves(history: pd.DataFrame, out: Path) -> dict[str, Path]:
    """Validation accuracy per epoch, one figure per dataset, one line per cell."""
    from matplotlib.figure import Figure

    files: dict[str, Path] = {}
    val = history[history["metric"] == "val_acc"]
    for ds, group in val.groupby("dataset", sort=False):
        fig = Figure(figsize=(9, 4.5))
        ax = fig.subplots()
        for cell, g in group.groupby("cell", sort=False):
            ax.plot(g["epoch"], g["value"], marker=".", linewidth=1, label=cell.split("/", 1)[1])
        ax.set(xlabel="epoch", ylabel="val accuracy", title=f"learning curves: {ds}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, ncol=2, loc="lower right")
        fig.tight_layout()
        path = out / f"curves_{_slug(str(ds))}.png"
        fig.savefig(path, dpi=90)
        files[f"learning curves: {ds}"] = path
    return files


def heatmap(piv: pd.DataFrame, out: Path) -> dict[str, Path]:
    """The test-accuracy pivot as a colour grid with each value written in; none if it is empty."""
    if not (piv.size and piv.notna().any().any()):
        return {}
    from matplotlib.figure import Figure

    fig = Figure(figsize=(max(5, 1.1 * piv.shape[1] + 3), max(3, 0.35 * piv.shape[0] + 1.5)))
    ax = fig.subplots()
    im = ax.imshow(piv.to_numpy(dtype=float), cmap="viridis", aspect="auto", vmin=0, vmax=1)
    ax.set_xticks(range(piv.shape[1]), [label(c) for c in piv.columns], rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(piv.shape[0]), [label(r) for r in piv.index], fontsize=7)
    for i in range(piv.shape[0]):
        for j in range(piv.shape[1]):
            v = piv.iat[i, j]
            if not pd.isna(v):
                ax.text(
                    j,
                    i,
                    f"{v:.3f}",
                    ha="center",
                    va="center",
                    fontsize=6,
                    color="white" if v < 0.6 else "black",
                )
    fig.colorbar(im, ax=ax, label="test accuracy")
    ax.set_title("test accuracy")
    fig.tight_layout()
    path = out / "heatmap.png"
    fig.savefig(path, dpi=90)
    return {"accuracy heatmap": path}


def axis_bars(effects: pd.DataFrame, out: Path) -> dict[str, Path]:
    """Mean test accuracy per value of each axis (error bar: std), one panel per axis."""
    if effects.empty:
        return {}
    import numpy as np
    from matplotlib.figure import Figure

    axes = list(dict.fromkeys(effects["axis"]))
    fig = Figure(figsize=(4 * len(axes), 3.5))
    subplots = np.atleast_1d(fig.subplots(1, len(axes)))
    for ax, axis in zip(subplots, axes, strict=True):
        e = effects[effects["axis"] == axis]
        ax.bar(range(len(e)), e["mean"], yerr=e["std"].fillna(0), capsize=3, color="tab:blue", alpha=0.8)
        ax.set_xticks(range(len(e)), e["value"], rotation=30, ha="right", fontsize=7)
        ax.set(title=axis, ylim=(0, 1.05), ylabel="mean test acc")
    fig.tight_layout()
    path = out / "axes.png"
    fig.savefig(path, dpi=90)
    return {"effect of each axis": path}


def pareto_plot(df: pd.DataFrame, out: Path) -> dict[str, Path]:
    """Test accuracy against training time per finished cell, with the Pareto front drawn."""
    done = df[df["status"] == "FINISHED"].dropna(subset=["train_time_s", "test_acc"])
    if not len(done):
        return {}
    from matplotlib.figure import Figure

    front = pareto_front(df)
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    for ds, g in done.groupby("dataset", sort=False):
        ax.scatter(g["train_time_s"], g["test_acc"], label=str(ds), s=18)
    f = done.set_index("cell").loc[front].sort_values("train_time_s")
    ax.plot(
        f["train_time_s"], f["test_acc"], color="black", linewidth=1, linestyle="--", label="Pareto front"
    )
    ax.set(xlabel="train time (s)", ylabel="test accuracy", title="accuracy vs training time")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = out / "pareto.png"
    fig.savefig(path, dpi=90)
    return {"accuracy vs train time": path}


def _slug(s: str) -> str:
    """A dataset name as a safe file-name part."""
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in s)
