"""Comparison tables from cell outcomes and MLflow runs, rendered with rich, Markdown, CSV or HTML.

The seed reports ended in hand-made tables: an epoch-by-epoch comparison (seed 000), parameters
and accuracy per strategy (seed 003), baseline vs transfer (seed 001). Here they are computed from
the store: every cell of the grid appears, FINISHED or not (missing, failed, running), never
silently dropped. The terminal summary after ``tlbench run`` uses the same code.

One job per module: ``collect`` (MLflow -> frames, and attaching the report to the grid's
parent run), ``tables`` (pandas only), ``plots`` (matplotlib figures) and ``render`` (files and
terminal tables). ``build`` puts them together; the names below are the package's public API.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from tlbench.report.collect import cells_frame, epoch_history, log_to_mlflow, tuned_runs
from tlbench.report.plots import figures
from tlbench.report.render import (
    render_frame,
    render_pivot,
    render_summary,
    to_html,
    to_markdown,
    write,
)
from tlbench.report.tables import (
    AXES,
    Report,
    axis_effects,
    cell_summary,
    epoch_table,
    pareto_front,
    pivot,
    reported_vs_tlbench,
    summary_frame,
    tuned_vs_untuned,
)

if TYPE_CHECKING:
    from tlbench.grid import Cell
    from tlbench.tracking import Tracker

__all__ = [
    "AXES",
    "Report",
    "axis_effects",
    "build",
    "cell_summary",
    "epoch_table",
    "log_to_mlflow",
    "pareto_front",
    "pivot",
    "render_frame",
    "render_pivot",
    "render_summary",
    "reported_vs_tlbench",
    "summary_frame",
    "to_html",
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
) -> Report:
    """Every table of the grid's report from the store; with ``out``, the plots are drawn there too."""
    df = cells_frame(cells, tracker, experiment_id)
    history = epoch_history(tracker, df)
    piv = pivot(df, rows, cols, "test_acc")
    effects = axis_effects(df)
    rep = Report(
        grid,
        df,
        piv,
        pivot(df, rows, cols, "best_val_acc"),
        effects,
        epoch_table(history),
        cell_summary(df),
        reported_vs_tlbench(df),
        tuned_vs_untuned(tuned_runs(cells, tracker, experiment_id, df), df),
        rows,
        cols,
    )
    if plots and out is not None:
        out.mkdir(parents=True, exist_ok=True)
        rep.plots = figures(df, history, piv, effects, out)
    return rep
