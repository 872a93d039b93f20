"""Transferability scores against the results they predict, one figure per dataset: a small
scatter per score, one point per backbone (score mean over seeds, x; the result's mean, y; each
with its 95 % CI as a bar where there is one), its weighted τ and Pearson r in the title.

A table's τ says how well the order held; the scatter shows why: which backbone the score got
wrong and by how much against the seed noise. Drawn with ``matplotlib.figure.Figure`` directly,
never pyplot; matplotlib is imported inside the functions.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from tlbench.figures import save_figure
from tlbench.figures.curves import slug

TRANSFER_TITLE = "transferability"  # every figure here is titled "transferability: DATASET"
COLUMNS = 4  # subplots per row


def transfer_plots(
    points: pd.DataFrame, agreement: pd.DataFrame, out: Path, keep: dict[str, Any] | None = None
) -> dict[str, Path]:
    """One PNG per dataset (title -> file). ``points``: one row per (dataset, score, backbone) with
    ``mean``, ``ci_low``/``ci_high`` (the score), ``result``, ``result_low``/``result_high``,
    ``against`` and ``metric`` (in words); ``agreement``: per (dataset, score), ``weighted_tau``
    and ``pearson`` (``report.transferability.agreement_table``'s)."""
    if not len(points):
        return {}
    files: dict[str, Path] = {}
    for ds, g in points.groupby("dataset", sort=False):
        mine = agreement[agreement["dataset"] == ds] if "dataset" in agreement.columns else agreement
        files.update(_dataset_figure(str(ds), g, mine, out, keep))
    return files


def _stat(v: Any) -> str:
    return "—" if v is None or not math.isfinite(float(v)) else f"{float(v):.2f}"


def _dataset_figure(
    ds: str, g: pd.DataFrame, agreement: pd.DataFrame, out: Path, keep: dict[str, Any] | None
) -> dict[str, Path]:
    """The dataset's grid of subplots, one per score in the ranking's order."""
    from matplotlib.figure import Figure

    scores = list(dict.fromkeys(g["score"]))
    ncols = min(COLUMNS, len(scores))
    nrows = math.ceil(len(scores) / ncols)
    fig = Figure(figsize=(3.4 * ncols, 3.0 * nrows))
    axes = fig.subplots(nrows, ncols, sharey=True, squeeze=False).ravel()
    stats = agreement.set_index("score") if len(agreement) else pd.DataFrame()
    for ax, score in zip(axes, scores, strict=False):
        tau = stats.loc[score, "weighted_tau"] if score in stats.index else None
        r = stats.loc[score, "pearson"] if score in stats.index else None
        _panel(ax, g[g["score"] == score], f"{score}: τ = {_stat(tau)}, r = {_stat(r)}")
    for ax in axes[len(scores) :]:
        ax.set_visible(False)
    against, metric = str(g["against"].iloc[0]), str(g["metric"].iloc[0])
    for ax in axes[::ncols]:
        ax.set_ylabel(f"{against}: test {metric}", fontsize=8)
    fig.suptitle(
        f"{ds}: transferability scores vs {against} test {metric} (mean over seeds, 95 % CI)", fontsize=10
    )
    fig.tight_layout()
    return save_figure(fig, out / f"transferability_{slug(ds)}.png", f"{TRANSFER_TITLE}: {ds}", keep)


def _panel(ax: Any, g: pd.DataFrame, title: str) -> None:
    """One score: a point per backbone with both intervals as bars, labelled; a note without points."""
    pts = g.dropna(subset=["mean", "result"])
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("score (higher = predicted better)", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    ax.margins(x=0.2, y=0.1)  # room for the labels of the outermost points
    if pts.empty:
        ax.text(
            0.5, 0.5, "no scored backbone with results", transform=ax.transAxes, ha="center", color="grey"
        )
        return

    def bars(mean: str, low: str, high: str) -> list[pd.Series]:
        return [
            (pts[mean] - pts[low]).fillna(0).clip(lower=0),
            (pts[high] - pts[mean]).fillna(0).clip(lower=0),
        ]

    ax.errorbar(
        pts["mean"],
        pts["result"],
        xerr=bars("mean", "ci_low", "ci_high"),
        yerr=bars("result", "result_low", "result_high"),
        fmt="o",
        color="C0",
        ecolor="grey",
        capsize=2,
        markersize=5,
    )
    for r in pts.itertuples():
        ax.annotate(
            str(r.backbone), (r.mean, r.result), xytext=(4, 3), textcoords="offset points", fontsize=6
        )
