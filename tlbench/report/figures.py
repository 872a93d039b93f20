"""Which figures the report has, from its frames, saved as PNG next to the report files.

Every figure is drawn in ``tlbench.figures`` (``curves``: learning curves with bands over seeds;
``comparisons``: heatmap, axis bars, accuracy vs time; ``costs``: score vs trainable parameters
and memory; ``transferability``: scores vs results; ``cd_diagram``); this module picks what the
data allows and where each goes.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from tlbench.figures.comparisons import axis_bars, heatmap, pareto_plot
from tlbench.figures.costs import cost_plots
from tlbench.figures.curves import learning_curves, slug
from tlbench.figures.transferability import transfer_plots
from tlbench.report.costs import cost_fronts
from tlbench.report.fmt_transfer import dataset_metrics, figure_points
from tlbench.report.tables import AXES, pareto_front

if TYPE_CHECKING:
    from tlbench.report.pivots import PivotTable
    from tlbench.stats import RankResult


def report_figures(
    df: pd.DataFrame,
    history: pd.DataFrame,
    piv: pd.DataFrame,
    effects: pd.DataFrame,
    out: Path,
    *,
    axis: str = "strategy",
    ranks: RankResult | None = None,
    table: PivotTable | None = None,
    keep: dict[str, Any] | None = None,
    costs: pd.DataFrame | None = None,
    transfer: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, dict[str, str]] | None = None,
    ci: str = "t",
) -> dict[str, Path]:
    """Every figure the data allows, as title -> PNG file in ``out`` (in report order); ``axis``
    splits the learning curves into panels and colours the Pareto plot; ``keep`` collects the
    figures themselves (title -> matplotlib Figure); ``costs`` (``costs.cost_table``'s) adds the
    score vs cost plots, one per dataset; ``transfer`` (the report's transferability score table,
    per-seed results, agreement, and dataset -> strategy checked against) the scores vs results
    scatters, one per dataset, the results' intervals over seeds by ``ci``."""
    files = learning_curves(history, out, axis, keep)
    marks = (table.wide("best"), table.wide("tie")) if table is not None else (None, None)
    files.update(heatmap(piv, out, *marks, keep=keep))
    files.update(axis_bars(effects, out, keep))
    points = _configuration_means(df)
    fronts = {ds: pareto_front(g) for ds, g in points.groupby("dataset", sort=False)} if len(points) else {}
    files.update(pareto_plot(points, fronts, out, axis, keep))
    if costs is not None and len(costs):
        files.update(cost_plots(_cost_points(costs), cost_fronts(costs), out, keep))
    if transfer is not None and len(transfer[0]):
        table, results, agreement, against = transfer
        points = figure_points(table, results, against, dataset_metrics(df), ci)
        files.update(transfer_plots(points, agreement, out, keep))
    if ranks is not None:
        files.update(cd_plot(ranks, axis, out, keep))
    return files


def _cost_points(costs: pd.DataFrame) -> pd.DataFrame:
    """The cost table's scored configurations, each labelled by the axes that vary within its
    dataset (the strategy always): what a point of the cost plots is called."""
    done = costs.dropna(subset=["mean"])
    labels = pd.Series("", index=done.index, dtype=object)
    for _, g in done.groupby("dataset", sort=False):
        axes = [a for a in AXES[1:] if a in g and (a == "strategy" or g[a].nunique() > 1)]
        labels[g.index] = g[axes].astype(str).agg("/".join, axis=1)
    return done.assign(label=labels)


def _configuration_means(df: pd.DataFrame) -> pd.DataFrame:
    """One point per configuration: its mean test accuracy and training time over finished seeds."""
    done = df[df["status"] == "FINISHED"].dropna(subset=["train_time_s", "test_acc"])
    key = "config" if "config" in done.columns else "cell"
    keep = [c for c in (*AXES, "test_is_val") if c in done.columns]
    means = done.groupby(key, sort=False).agg(
        train_time_s=("train_time_s", "mean"),
        test_acc=("test_acc", "mean"),
        **{c: (c, "first") for c in keep},
    )
    means = means.reset_index().rename(columns={key: "cell"}).assign(status="FINISHED")
    return means if "test_is_val" in means.columns else means.assign(test_is_val=False)


def cd_plot(ranks: RankResult, axis: str, out: Path, keep: dict[str, Any] | None = None) -> dict[str, Path]:
    """The critical-difference diagram of ``axis`` (none without a Nemenyi test)."""
    from tlbench.figures.cd_diagram import cd_diagram

    title, drawn = f"critical difference: {axis}", {} if keep is not None else None
    path = cd_diagram(ranks, out / f"cd_{slug(axis)}.png", keep=drawn)
    if keep is not None and drawn:
        keep[title] = next(iter(drawn.values()))
    return {title: path} if path else {}
