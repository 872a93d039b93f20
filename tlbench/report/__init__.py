"""Comparison tables from cell outcomes and MLflow runs, rendered with rich, Markdown, CSV or HTML.

The seed reports ended in hand-made tables: an epoch-by-epoch comparison (seed 000), parameters
and accuracy per strategy (seed 003), baseline vs transfer (seed 001). Here they are computed from
the store: every cell of the grid appears, FINISHED or not (missing, failed, running), never
silently dropped. The terminal summary after ``tlbench run`` uses the same code.

One job per module: ``collect`` (MLflow -> frames, and attaching the report to the grid's
parent run), ``tables`` (pandas only), ``costs`` (the method × cost table), ``figures`` (which
figures, drawn by ``tlbench.figures``) and ``render`` (files and terminal tables). ``build``
puts them together; the names below are the package's public API.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from tlbench.report.collect import cells_frame, epoch_history, log_to_mlflow, rank_values, tuned_runs
from tlbench.report.comparisons import check_compare_axis, compare_table, rank_result
from tlbench.report.configs import config_table, reported_vs_tlbench
from tlbench.report.costs import cost_fronts, cost_table
from tlbench.report.figures import report_figures
from tlbench.report.pivots import AGGS, PivotTable, pivot_table
from tlbench.report.racing import dropped_table, race_table
from tlbench.report.render import (
    FORMATS,
    render_compare,
    render_costs,
    render_frame,
    render_pivot,
    render_ranks,
    render_summary,
    render_transfer,
    render_transferability,
    to_html,
    to_latex,
    to_markdown,
    write,
)
from tlbench.report.tables import (
    AXES,
    SCORE,
    VAL_SCORE,
    Report,
    ReportError,
    axis_effects,
    cell_summary,
    epoch_table,
    metric_label,
    pareto_front,
    pivot,
    summary_frame,
    tuned_vs_untuned,
)
from tlbench.report.transferability import SCORE_COLUMNS, agreement_table, results_for, score_table

if TYPE_CHECKING:
    from tlbench.cells import Cell
    from tlbench.tracking import Tracker

__all__ = [
    "AGGS",
    "AXES",
    "FORMATS",
    "PivotTable",
    "Report",
    "ReportError",
    "axis_effects",
    "build",
    "cell_summary",
    "check_compare_axis",
    "compare_table",
    "config_table",
    "cost_fronts",
    "cost_table",
    "epoch_table",
    "log_to_mlflow",
    "pareto_front",
    "pivot",
    "pivot_table",
    "rank_result",
    "rank_values",
    "render_compare",
    "render_costs",
    "render_frame",
    "render_pivot",
    "render_ranks",
    "render_summary",
    "render_transfer",
    "render_transferability",
    "reported_vs_tlbench",
    "summary_frame",
    "to_html",
    "to_latex",
    "to_markdown",
    "write",
]


def build(
    cells: list[Cell],
    tracker: Tracker,
    experiment_id: str,
    *,
    grid: str,
    rows: list[str],
    cols: list[str],
    out: Path | None = None,
    plots: bool = True,
    ci: str = "t",
    agg: str = "mean",
    compare: str | None = "strategy",
) -> Report:
    """Every table of the grid's report from the store; with ``out``, the plots are drawn there too.

    ``ci`` (t | bootstrap) is the interval over seeds, ``agg`` (mean | best) how a pivot collapses
    the axes in neither ``rows`` nor ``cols``, ``compare`` the axis compared pairwise and ranked
    (None: no comparison).
    """
    df = cells_frame(cells, tracker, experiment_id)
    history = epoch_history(tracker, df, metrics=["val_acc"])  # all the report draws from
    configs = config_table(df, ci=ci, value=SCORE)
    flagged = (
        frozenset(configs.loc[configs["provenance"].astype(bool), "config"]) if len(configs) else frozenset()
    )
    table = pivot_table(df, rows, cols, SCORE, agg=agg, ci=ci, flagged=flagged)
    table_val = pivot_table(df, rows, cols, VAL_SCORE, agg=agg, ci=ci, flagged=flagged)
    cmp, note = compare_table(df, compare, SCORE) if compare else (pd.DataFrame(), "")
    ranks = rank_result(df, compare, SCORE) if compare and not cmp.empty else None
    effects = axis_effects(df, SCORE)
    rep = Report(
        grid,
        df,
        table.wide("mean"),
        table_val.wide("mean"),
        effects,
        epoch_table(history),
        cell_summary(df),
        reported_vs_tlbench(df, ci),
        tuned_vs_untuned(tuned_runs(cells, tracker, experiment_id, df), df),
        rows,
        cols,
        configs=configs,
        costs=cost_table(df, configs),
        table=table,
        table_val=table_val,
        compare=cmp,
        compare_axis=compare or "",
        compare_note=note,
        ranks=ranks,
        ci=ci,
        agg=agg,
        race=race_table(df),
        raced_out=dropped_table(df),
        metric=metric_label(df),
        **_transferability(tracker, experiment_id, df, ci),
    )
    if plots and out is not None:
        out.mkdir(parents=True, exist_ok=True)
        rep.plots = report_figures(
            df,
            history,
            rep.pivot,
            effects,
            out,
            axis=compare or "strategy",
            ranks=ranks,
            table=table,
            keep=rep.figures,
            costs=rep.costs,
            transfer=_transfer_frames(rep),
            ci=ci,
        )
    return rep


def _transferability(tracker: Tracker, experiment_id: str, df: pd.DataFrame, ci: str) -> dict[str, Any]:
    """The transferability section's ``Report`` fields: each selected dataset's newest rank run,
    its scores over seeds, the ``against`` results they are checked against and how they agree
    (nothing where the grid has no rank run: the section is left out)."""
    order = {d: i for i, d in enumerate(dict.fromkeys(df["dataset"]))}
    values = rank_values(tracker, experiment_id)
    values = values[values["dataset"].isin(order)]
    if values.empty:
        return {}
    values = values.sort_values("dataset", key=lambda d: d.map(order), kind="stable")  # grid order
    against = {str(d): str(a) for d, a in zip(values["dataset"], values["against"], strict=True)}
    parts = [
        results_for(df[df["dataset"].isin([d for d, a in against.items() if a == strategy])], strategy)
        for strategy in dict.fromkeys(against.values())
    ]
    results = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
    values = values[SCORE_COLUMNS]
    return {
        "transfer_scores": score_table(values, ci),
        "transfer_results": results,
        "transfer_agreement": agreement_table(values, results),
        "transfer_against": against,
    }


def _transfer_frames(rep: Report) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, dict[str, str]] | None:
    """What the transferability figures are drawn from, or None without the section."""
    if rep.transfer_scores.empty:
        return None
    return rep.transfer_scores, rep.transfer_results, rep.transfer_agreement, rep.transfer_against
