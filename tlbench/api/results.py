"""A grid's results from Python, read from the store: DataFrames (``results``), the whole
report with its figures (``report_grid``), the MLflow UI's URL (``ui_url``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tlbench.api.grids import Grid, load_grid

if TYPE_CHECKING:
    import pandas as pd

    from tlbench.report import Report


@dataclass
class Results:
    """A grid's results as DataFrames, read from the store."""

    cells: pd.DataFrame  # one row per cell: state, metrics, its run id
    configurations: pd.DataFrame  # one row per configuration: n, mean, std, 95 % CI over seeds
    comparisons: pd.DataFrame = field(default_factory=lambda: _empty())  # pairwise over ``compare``
    ranks: Any = None  # average ranks over dataset × backbone, Friedman / Nemenyi (or None)
    costs: pd.DataFrame = field(default_factory=lambda: _empty())  # method × cost, ranked by the metric


def _empty() -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame()


def results(
    grid: str | Path | Grid,
    *,
    select: list[str] | tuple[str, ...] | None = None,
    tracking_uri: str | None = None,
    ci: str = "t",
    compare: str | None = "strategy",
) -> Results:
    """Every (selected) cell's outcome in the store, configurations with their intervals, and the
    ``compare`` axis compared pairwise and ranked (None: no comparison)."""
    from tlbench.report import SCORE, cells_frame, compare_table, config_table, cost_table, rank_result
    from tlbench.tracking import Tracker

    g = load_grid(grid)
    tracker = Tracker(tracking_uri)
    df = cells_frame(g.select(select), tracker, tracker.experiment_id(g.name))
    out = Results(df, config_table(df, ci=ci, value=SCORE))
    out.costs = cost_table(df, out.configurations, ci=ci)
    if compare and df[compare].nunique() > 1:
        out.comparisons, _ = compare_table(df, compare, SCORE)
        out.ranks = rank_result(df, compare, SCORE) if not out.comparisons.empty else None
    return out


def report_grid(
    grid: str | Path | Grid,
    *,
    select: list[str] | tuple[str, ...] | None = None,
    tracking_uri: str | None = None,
    rows: list[str] | tuple[str, ...] = ("dataset", "backbone"),
    cols: list[str] | tuple[str, ...] = ("strategy",),
    ci: str = "t",
    agg: str = "mean",
    compare: str | None = "auto",
    out: str | Path | None = None,
    formats: list[str] | tuple[str, ...] = ("md", "html", "csv"),
    to_mlflow: bool = False,
) -> Report:
    """Every table of the grid's report (``Report``: DataFrames, pivots with intervals, the
    comparison and ranks) and, with ``out``, its files and figures written there (and attached
    to the grid's parent run in MLflow with ``to_mlflow``). ``rep.figures`` holds the figures.
    ``compare``: the axis compared and ranked (``auto``: strategy where the grid has several)."""
    from tlbench import report as rp
    from tlbench.tracking import Tracker

    g = load_grid(grid)
    bad = [f for f in formats if f not in rp.FORMATS]
    if bad:
        raise rp.ReportError(f"format {bad[0]!r}: choose from {', '.join(rp.FORMATS)}")
    for a in [*rows, *cols]:
        if a not in rp.AXES:
            raise rp.ReportError(f"--rows/--cols: unknown axis {a!r} (valid: {', '.join(rp.AXES)})")
    chosen = g.select(select)
    if compare == "auto":  # the default: strategies, unless the grid has one
        several = len({c.labels["strategy"] for c in chosen}) > 1
        compare = "strategy" if several else None
    elif compare is not None:
        import pandas as pd

        rp.check_compare_axis(pd.DataFrame([c.axis_values() for c in chosen]), compare)
    tracker = Tracker(tracking_uri)
    exp_id = tracker.experiment_id(g.name)
    folder = Path(out) if out is not None else None
    rep = rp.build(
        chosen,
        tracker,
        exp_id,
        grid=g.name,
        rows=list(rows),
        cols=list(cols),
        out=folder,
        ci=ci,
        agg=agg,
        compare=compare,
    )
    if folder is not None:
        rep.files = rp.write(rep, folder, list(formats))
        if to_mlflow:
            rep.mlflow_run_id = rp.log_to_mlflow(tracker, exp_id, g.name, rep.files)
    return rep


def ui_url(
    grid: str | Path | Grid, *, tracking_uri: str | None = None, base: str = "http://127.0.0.1:5000"
) -> str:
    """The URL of the grid's runs table in the MLflow UI that ``tlbench ui`` serves at ``base``."""
    from tlbench.tracking import Tracker
    from tlbench.tracking.view import runs_url

    g = load_grid(grid)
    tracker = Tracker(tracking_uri)
    exp_id = tracker.experiment_id(g.name)
    tracker.ensure_view(exp_id, g.cells)
    return runs_url(base, exp_id)
