"""``tlbench report``: comparison tables and plots of a grid's cells, from the MLflow store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from tlbench.cli.common import (
    clean_errors,
    console,
    err_console,
    grid_option,
    select_option,
    tracking_option,
)


@click.command()
@grid_option
@select_option
@tracking_option
@click.option(
    "--format", "formats", default="md,html,csv", show_default=True, help="comma list of md, csv, html, tex"
)
@click.option("--out", "out_dir", default=None, help="output folder (default reports/GRID)")
@click.option("--rows", default="dataset,backbone", show_default=True, help="axes down the pivot table")
@click.option("--cols", default="strategy", show_default=True, help="axes across the pivot table")
@click.option(
    "--ci",
    type=click.Choice(["t", "bootstrap"]),
    default="t",
    show_default=True,
    help="95 % interval over seeds: Student t, or percentile bootstrap (under-covers at small n: "
    "about 83-85 % at n = 5)",
)
@click.option(
    "--agg",
    type=click.Choice(["mean", "best"]),
    default="mean",
    show_default=True,
    help="how a pivot collapses the axes in neither --rows nor --cols: their mean, or the "
    "configuration best on validation accuracy (named)",
)
@click.option(
    "--compare",
    default="strategy",
    show_default=True,
    help="axis compared pairwise (mean difference, CI, Holm p, wins/ties/losses) and ranked across "
    "datasets and backbones",
)
@click.option(
    "--mlflow/--no-mlflow", "to_mlflow", default=True, help="attach the report to the grid's parent run"
)
@clean_errors
def report(
    grid: str,
    select: tuple[str, ...],
    tracking_uri: str | None,
    formats: str,
    out_dir: str | None,
    rows: str,
    cols: str,
    ci: str,
    agg: str,
    compare: str,
    to_mlflow: bool,
) -> None:
    """Comparison tables and plots of a grid's cells, from the MLflow store: means with 95 % CIs
    over seeds, the best per row and its statistical ties, one axis compared and ranked."""
    from tlbench import api

    explicit = click.get_current_context().get_parameter_source("compare") != ParameterSource.DEFAULT
    g = api.load_grid(grid)
    rep = api.report_grid(
        g,
        select=select,
        tracking_uri=tracking_uri,
        rows=[a.strip() for a in rows.split(",")],
        cols=[a.strip() for a in cols.split(",")],
        ci=ci,
        agg=agg,
        compare=compare if explicit else "auto",
        out=Path(out_dir) if out_dir else Path("reports") / g.name,
        formats=[f.strip() for f in formats.split(",") if f.strip()],
        to_mlflow=to_mlflow,
    )
    _show(rep, g.name)
    if rep.mlflow_run_id:
        err_console.print(
            f"report attached to MLflow run {rep.mlflow_run_id} (grid:{g.name})", highlight=False
        )
    err_console.print(f"wrote {', '.join(str(f) for f in rep.files if f.suffix != '.png')}", highlight=False)


def _show(rep: Any, grid: str) -> None:
    """The report's conclusions in the terminal; the per-configuration table only when it fits."""
    from tlbench import report as rp

    rp.render_pivot(rep, console)
    rp.render_compare(rep, console)
    rp.render_ranks(rep, console)
    rp.render_costs(rep, console)
    rp.render_transfer(rep, console)
    if not rep.race.empty:
        rp.render_frame(rep.race, console, "racing: compute spent and saved (winner: best mean val acc)")
    if not rep.reported.empty:
        rp.render_frame(rep.reported, console, "reported elsewhere vs tlbench")
    if not rep.tuned.empty:
        rp.render_frame(rep.tuned, console, "tuned vs untuned")
    n_configs = rep.cells["config"].nunique() if "config" in rep.cells else len(rep.cells)
    if n_configs <= 100:
        rp.render_summary(rep.cells, console, title=f"grid {grid}: {len(rep.cells)} cells", ci=rep.ci)
    else:
        console.print(f"{n_configs} configurations, {len(rep.cells)} cells: every one in the report files")
