"""Score against cost, one figure per dataset: the test score (the grid's metric) against the
trainable parameters (log scale) and, beside it, against peak memory, each with its Pareto front.

What a parameter-efficient method buys is read off these two panels: how much score a
configuration keeps for the weights it trains and the memory it needs. Drawn with
``matplotlib.figure.Figure`` directly, never pyplot; matplotlib is imported inside the functions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from tlbench.figures import save_figure
from tlbench.figures.curves import slug

COST_TITLE = "score vs cost"  # every figure here is titled "score vs cost: DATASET"
MARKERS = "osD^v<>pPX*h"
MEMORY_AXES = {"GPU": "peak GPU memory (MB)", "CPU": "peak CPU RSS (MB)"}
# the front: a dashed line through rings drawn around its points (a front of one point shows too)
FRONT: dict[str, Any] = {
    "color": "black",
    "linewidth": 1,
    "linestyle": "--",
    "marker": "o",
    "markersize": 11,
    "markerfacecolor": "none",
}
METRIC_WORDS = {"acc": "accuracy", "mean_per_class_acc": "mean per-class accuracy"}


def cost_plots(
    points: pd.DataFrame,
    fronts: dict[str, dict[str, list[str]]],
    out: Path,
    keep: dict[str, Any] | None = None,
) -> dict[str, Path]:
    """One PNG per dataset (title -> file). ``points``: one row per configuration with ``config``,
    ``label`` (what to write beside it), ``dataset``, ``strategy``, ``mean``, ``ci_low``/``ci_high``,
    ``params_trainable``, ``peak_memory_mb``, ``memory`` (GPU | CPU | ""), ``metric``,
    ``test_is_val``; ``fronts``: ``params`` / ``memory`` -> dataset -> the configs on that front.
    A strategy keeps its colour and marker across the figures."""
    if not len(points):
        return {}
    strategies = list(dict.fromkeys(points["strategy"]))
    styles = {s: (f"C{i % 10}", MARKERS[i % len(MARKERS)]) for i, s in enumerate(strategies)}
    files: dict[str, Path] = {}
    for ds, g in points.groupby("dataset", sort=False):
        mine = {name: f.get(str(ds), []) for name, f in fronts.items()}
        files.update(_dataset_figure(str(ds), g, mine, styles, out, keep))
    return files


def _dataset_figure(
    ds: str,
    g: pd.DataFrame,
    fronts: dict[str, list[str]],
    styles: dict[str, tuple[str, str]],
    out: Path,
    keep: dict[str, Any] | None,
) -> dict[str, Path]:
    """The two panels of one dataset, a shared legend of its strategies and the front under them."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    used = str(g["metric"].iloc[0]) if "metric" in g else "acc"
    ylabel = f"test {METRIC_WORDS.get(used, used)}"
    fig = Figure(figsize=(11, 4.4))
    left, right = fig.subplots(1, 2, sharey=True)
    _panel(left, g, "params_trainable", fronts.get("params", []), styles, "trainable parameters", log=True)
    _panel(right, g, "peak_memory_mb", fronts.get("memory", []), styles, _memory_label(g), log=False)
    left.set_ylabel(ylabel)
    mine = [s for s in styles if s in set(g["strategy"])]
    handles = [Line2D([], [], color=c, marker=m, linestyle="none") for c, m in (styles[s] for s in mine)]
    handles.append(Line2D([], [], **FRONT))
    fig.legend(
        handles, [*mine, "Pareto front"], loc="lower center", ncol=len(handles), fontsize=8, frameon=False
    )
    optimistic = "test_is_val" in g and g["test_is_val"].fillna(False).astype(bool).any()
    flag = " (test = val: optimistic)" if optimistic else ""
    fig.suptitle(f"{ds}{flag}: {ylabel} vs cost (configurations: mean over seeds, 95 % CI)", fontsize=10)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return save_figure(fig, out / f"costs_{slug(ds)}.png", f"{COST_TITLE}: {ds}", keep)


def _memory_label(g: pd.DataFrame) -> str:
    """The memory axis's name: where it was measured (GPU where a run logged it, else CPU RSS)."""
    sources = set(g["memory"]) - {""}
    if len(sources) == 1:
        return MEMORY_AXES.get(next(iter(sources)), "peak memory (MB)")
    return "peak memory (MB): GPU where logged, else CPU RSS"


def _panel(
    ax: Any,
    g: pd.DataFrame,
    x: str,
    front: list[str],
    styles: dict[str, tuple[str, str]],
    xlabel: str,
    log: bool,
) -> None:
    """Score against one cost: a point per configuration (its 95 % CI as a bar), labelled, and the
    front as a dashed line; a note instead where no run logged that cost."""
    pts = g.dropna(subset=[x, "mean"])
    pts = pts[pts[x] > 0] if log else pts
    ax.set(xlabel=xlabel)
    ax.grid(alpha=0.3)
    if pts.empty:
        ax.text(0.5, 0.5, "not logged by these runs", transform=ax.transAxes, ha="center", color="grey")
        return
    for strategy, sub in pts.groupby("strategy", sort=False):
        colour, marker = styles[str(strategy)]
        low = (sub["mean"] - sub["ci_low"]).fillna(0).clip(lower=0)
        high = (sub["ci_high"] - sub["mean"]).fillna(0).clip(lower=0)
        ax.errorbar(
            sub[x], sub["mean"], yerr=[low, high], fmt=marker, color=colour, capsize=2, markersize=6, zorder=2
        )
    for r in pts.itertuples():
        ax.annotate(
            str(r.label), (getattr(r, x), r.mean), xytext=(4, 3), textcoords="offset points", fontsize=6
        )
    line = pts.set_index("config").loc[[c for c in front if c in set(pts["config"])]].sort_values(x)
    ax.plot(line[x], line["mean"], zorder=1, **FRONT)
    if log or pts[x].max() > 20 * pts[x].min() > 0:
        ax.set_xscale("log")
    ax.set_title(f"{len(line)} on the front", fontsize=9)
