"""tlbench's Python API: what the ``tlbench`` command stands on, and what a notebook calls.

    import tlbench
    grid = tlbench.load_grid("smoke")                      # a shipped grid, or a path to a .yaml
    run = tlbench.run_grid(grid, select=["digits-10pct/*"])
    res = tlbench.results(grid)                            # pandas DataFrames
    res.configurations                                     # mean ± CI over seeds per configuration
    rep = tlbench.report_grid(grid, out="reports/smoke")   # every table, and the figures

Nothing here exits the interpreter: a grid, a name or a file the user can fix raises a
``TlbenchError`` with one clear message (the command line prints it and exits 2), Ctrl-C raises
``KeyboardInterrupt`` after the current run is marked KILLED. Progress goes to a rich console
(the terminal's, or the notebook's: rich renders there too). Importing this module imports no
torch, timm or MLflow: each function imports what it needs.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tlbench.cells import expand, select, with_dependencies
from tlbench.errors import TlbenchError
from tlbench.interrupts import sigterm_as_interrupt
from tlbench.spec import check_backbone_names, resolve_grid_path
from tlbench.spec import load_grid as load_spec
from tlbench.spec.race import RACE_AXES

if TYPE_CHECKING:
    import pandas as pd
    from rich.console import Console

    from tlbench.cells import Cell
    from tlbench.report import Report
    from tlbench.spec import GridSpec

__all__ = [
    "Grid",
    "OptionError",
    "Results",
    "RunResult",
    "SelectionError",
    "expand_grid",
    "load_grid",
    "report_grid",
    "results",
    "run_grid",
    "tune_grid",
    "ui_url",
]


class SelectionError(TlbenchError, ValueError):
    """A ``select`` that matches none of a grid's cells."""


class OptionError(TlbenchError, ValueError):
    """Options that cannot go together or name nothing (``race_by`` an unknown axis, ...)."""


@dataclass
class Grid:
    """A grid file, validated, with every cell it declares (in run order)."""

    spec: GridSpec
    path: Path
    cells: list[Cell]

    @property
    def name(self) -> str:
        return self.spec.name

    def select(self, patterns: list[str] | tuple[str, ...] | str | None = None) -> list[Cell]:
        """The cells matching any glob (a name, ``CONFIG@s1``, an id prefix); all without patterns."""
        patterns = [patterns] if isinstance(patterns, str) else list(patterns or ())
        chosen = select(self.cells, patterns)
        if patterns and not chosen:
            raise SelectionError(
                f"--select {' '.join(patterns)} matches none of the {len(self.cells)} cells of grid {self.name!r}"
            )
        return chosen


def load_grid(grid: str | Path | Grid, *, check_backbones: bool = False) -> Grid:
    """A grid by name (``benchmarks/grids/NAME.yaml`` here, else the shipped ones) or by path.
    ``check_backbones`` also checks backbone names and tags against timm (imports torch)."""
    if isinstance(grid, Grid):
        if check_backbones:
            check_backbone_names(grid.spec, grid.path)
        return grid
    path = resolve_grid_path(str(grid))
    spec = load_spec(path, check_backbones=check_backbones)
    return Grid(spec, path, expand(spec, path))


def expand_grid(grid: str | Path | Grid, select: list[str] | tuple[str, ...] | None = None) -> list[Cell]:
    """The (selected) cells of a grid."""
    return load_grid(grid).select(select)


@dataclass
class RunResult:
    """How every cell of a ``run_grid`` ended (``outcomes``: one per cell, in run order)."""

    grid: str
    tracking_uri: str
    experiment_id: str
    outcomes: list[Any]

    @property
    def failed(self) -> list[Any]:
        return [o for o in self.outcomes if o.status == "FAILED"]

    @property
    def elsewhere(self) -> list[str]:
        """Cells left to other live processes (the grid is complete once they finish)."""
        from tlbench.executor.runner import ELSEWHERE

        return [o.cell.name for o in self.outcomes if o.status == "SKIPPED" and o.reason == ELSEWHERE]

    def frame(self) -> pd.DataFrame:
        """One row per cell: its state, headline metrics and reason."""
        from tlbench.report import summary_frame

        return summary_frame((o.cell, o.status, o.metrics, o.reason) for o in self.outcomes)


def progress_console(stderr: bool = True) -> Console:
    """A rich console for progress and outcome lines: on a terminal it wraps at the terminal's
    width; written to a file or a pipe (a log, CI) each line stays whole (one cell, one line)."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, soft_wrap=not stream.isatty())


def _console(console: Console | None) -> Console:
    return console if console is not None else progress_console()


def _race_plan(
    spec: Any, cells: list[Any], race: bool | None, race_by: list[str] | None, tuned: bool, path: Path
) -> Any:
    """The race a run applies, or None: ``race`` / ``race_by`` over the grid's ``race:``."""
    from tlbench.executor.options import RacePlan
    from tlbench.executor.racing import check_plan

    by = tuple(race_by) if race_by else None
    for axis in by or ():
        if axis not in RACE_AXES:
            raise OptionError(f"--race-by: unknown axis {axis!r} (valid: {', '.join(RACE_AXES)})")
    on = race if race is not None else bool(by) or (spec.race is not None and spec.race.enabled)
    if not on:
        return None
    if tuned:
        raise OptionError("--race applies to plain runs; tuned runs (--tuned) train every cell to the end")
    plan = RacePlan.from_config(spec.race, by)
    check_plan(cells, plan, str(path))
    return plan


def run_grid(
    grid: str | Path | Grid,
    *,
    select: list[str] | tuple[str, ...] | None = None,
    tracking_uri: str | None = None,
    data_dir: str | None = None,
    device: str = "auto",
    force: bool = False,
    compile: bool = False,
    feature_cache: bool = True,
    workers: str | int = 1,
    cells_per_gpu: int = 1,
    retries: int = 2,
    backend: str = "local",
    address: str | None = None,
    checkpoint_dir: str | None = None,
    tuned: bool = False,
    race: bool | None = None,
    race_by: list[str] | None = None,
    storage: str | None = None,
    system_metrics: bool = True,
    console: Console | None = None,
) -> RunResult:
    """Train every (selected) cell of a grid, with the ``cell:`` sources they need, into MLflow;
    finished cells are skipped (``force`` reruns them). The options are ``tlbench run``'s."""
    from tlbench.executor import RunOptions, execute
    from tlbench.tracking import Tracker
    from tlbench.tracking.access import check_access
    from tlbench.tracking.inputs import SYSTEM_METRICS_ENV
    from tlbench.tracking.summaries import update_summaries

    g = load_grid(grid, check_backbones=True)
    chosen = g.select(select)
    say = _console(console)
    os.environ[SYSTEM_METRICS_ENV] = str(system_metrics).lower()  # MLflow's own switch; workers inherit it
    sigterm_as_interrupt()
    todo = with_dependencies(chosen, g.cells)
    plan = _race_plan(g.spec, todo, race, race_by, tuned, g.path)
    tracker = Tracker(tracking_uri)
    experiment_id = check_access(tracker, g.name)  # a shared server: credentials and EDIT, before any cell
    tracker.ensure_view(experiment_id, g.cells)
    options = RunOptions(
        tracker.uri,
        experiment_id,
        data_dir=data_dir,
        device=device,
        checkpoint_dir=checkpoint_dir,
        grid_file=str(g.path),
        force=force,
        compile=compile,
        cache_features=feature_cache,
        race=plan,
    )
    extra = len(todo) - len(chosen)
    say.print(
        f"grid [bold]{g.name}[/]: {len(todo)} cells"
        + (f" ({extra} added as cell: sources)" if extra else "")
        + f" → MLflow {tracker.uri} (experiment {g.name!r})"
        + (f"; racing by {', '.join(plan.by)}" if plan else ""),
        highlight=False,
    )
    backend_kw = dict(
        backend=backend, workers=str(workers), cells_per_gpu=cells_per_gpu, retries=retries, address=address
    )
    if tuned:
        from tlbench.tune import resolve_storage_url, run_tuned

        url = resolve_storage_url(storage)
        outcomes = run_tuned(chosen, todo, tracker, options, url, str(g.path), say, **backend_kw)
    else:
        outcomes = execute(todo, tracker, options, console=say, **backend_kw)
    touched = {o.cell.config_id for o in outcomes}
    update_summaries(tracker, experiment_id, [c for c in g.cells if c.config_id in touched])
    return RunResult(g.name, tracker.uri, experiment_id, outcomes)


def tune_grid(
    grid: str | Path | Grid,
    *,
    trials: int,
    select: list[str] | tuple[str, ...] | None = None,
    pruner: str = "median",
    seed: int | None = None,
    tracking_uri: str | None = None,
    storage: str | None = None,
    data_dir: str | None = None,
    device: str = "auto",
    workers: str | int = 1,
    console: Console | None = None,
) -> list[Any]:
    """An Optuna study of ``trials`` trials per (selected) configuration, over lr and batch size;
    with ``workers`` N, N-1 helper processes share each study. Returns the studies' summaries."""
    from tlbench.tune.driver import tune_selected

    g = load_grid(grid, check_backbones=True)
    return tune_selected(
        g,
        g.select(select),
        trials=trials,
        select=tuple(select or ()),
        pruner=pruner,
        seed=seed,
        tracking_uri=tracking_uri,
        storage=storage,
        data_dir=data_dir,
        device=device,
        workers=str(workers),
        console=_console(console),
    )


@dataclass
class Results:
    """A grid's results as DataFrames, read from the store."""

    cells: pd.DataFrame  # one row per cell: state, metrics, its run id
    configurations: pd.DataFrame  # one row per configuration: n, mean, std, 95 % CI over seeds
    comparisons: pd.DataFrame = field(default_factory=lambda: _empty())  # pairwise over ``compare``
    ranks: Any = None  # average ranks over dataset × backbone, Friedman / Nemenyi (or None)


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
    from tlbench.report import SCORE, cells_frame, compare_table, config_table, rank_result
    from tlbench.tracking import Tracker

    g = load_grid(grid)
    tracker = Tracker(tracking_uri)
    df = cells_frame(g.select(select), tracker, tracker.experiment_id(g.name))
    out = Results(df, config_table(df, ci=ci, value=SCORE))
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
