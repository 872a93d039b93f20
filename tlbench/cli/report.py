"""``tlbench report``: comparison tables and plots of a grid's cells, from the MLflow store."""

from __future__ import annotations

from pathlib import Path

import click

from tlbench.cli.common import (
    clean_errors,
    console,
    err_console,
    fail,
    grid_option,
    load,
    select_option,
    tracking_option,
)


@click.command()
@grid_option
@select_option
@tracking_option
@click.option(
    "--format", "formats", default="md,html,csv", show_default=True, help="comma list of md, csv, html"
)
@click.option("--out", "out_dir", default=None, help="output folder (default reports/GRID)")
@click.option("--rows", default="dataset,backbone", show_default=True, help="axes down the pivot table")
@click.option("--cols", default="strategy", show_default=True, help="axes across the pivot table")
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
    to_mlflow: bool,
) -> None:
    """Comparison tables and plots of a grid's cells, from the MLflow store."""
    from tlbench import report as rp
    from tlbench.tracking import Tracker

    fmts = [f.strip() for f in formats.split(",") if f.strip()]
    bad = [f for f in fmts if f not in ("md", "csv", "html")]
    if bad:
        fail(f"--format {bad[0]!r}: choose from md, csv, html")
    row_axes, col_axes = [a.strip() for a in rows.split(",")], [a.strip() for a in cols.split(",")]
    for a in row_axes + col_axes:
        if a not in rp.AXES:
            fail(f"--rows/--cols: unknown axis {a!r} (valid: {', '.join(rp.AXES)})")
    spec, _, chosen = load(grid, select, check_backbones=False)
    tracker = Tracker(tracking_uri)
    exp_id = tracker.experiment_id(spec.name)
    out = Path(out_dir) if out_dir else Path("reports") / spec.name
    rep = rp.build(chosen, tracker, exp_id, grid=spec.name, rows=row_axes, cols=col_axes, out=out)
    files = rp.write(rep, out, fmts)
    rp.render_pivot(rep, console)
    if not rep.reported.empty:
        rp.render_frame(rep.reported, console, "reported elsewhere vs tlbench")
    if not rep.tuned.empty:
        rp.render_frame(rep.tuned, console, "tuned vs untuned")
    rp.render_summary(rep.cells, console, title=f"grid {spec.name}: {len(rep.cells)} cells")
    if to_mlflow:
        run_id = rp.log_to_mlflow(tracker, exp_id, spec.name, files)
        err_console.print(f"report attached to MLflow run {run_id} (grid:{spec.name})", highlight=False)
    err_console.print(f"wrote {', '.join(str(f) for f in files if f.suffix != '.png')}", highlight=False)
