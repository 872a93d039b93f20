"""Running a grid from Python: every cell trained into MLflow (``run_grid``) or tuned
(``tune_grid``), with progress on a rich console."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tlbench.api.grids import Grid, load_grid
from tlbench.cells import with_dependencies
from tlbench.errors import TlbenchError
from tlbench.interrupts import sigterm_as_interrupt
from tlbench.spec.race import RACE_AXES

if TYPE_CHECKING:
    import pandas as pd
    from rich.console import Console


class OptionError(TlbenchError, ValueError):
    """Options that cannot go together or name nothing (``race_by`` an unknown axis, ...)."""


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
    order_by: str | None = None,
    stack: bool = True,
    console: Console | None = None,
) -> RunResult:
    """Train every (selected) cell of a grid, with the ``cell:`` sources they need, into MLflow;
    finished cells are skipped (``force`` reruns them). ``order_by`` a transferability score:
    the cells run best-predicted backbone first (``api.rank.order_cells``); the rest: ``tlbench run``'s."""
    from tlbench.executor import RunOptions, execute, start_early
    from tlbench.tracking import Tracker
    from tlbench.tracking.access import check_access
    from tlbench.tracking.inputs import SYSTEM_METRICS_ENV
    from tlbench.tracking.summaries import update_summaries

    start_early(workers, backend)  # a pool's workers: their imports run while the grid is read
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
    _check_score(order_by)
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
        stack=stack,
    )
    _announce(say, g.name, todo, chosen, tracker.uri, plan, order_by)
    backend_kw = dict(
        backend=backend, workers=str(workers), cells_per_gpu=cells_per_gpu, retries=retries, address=address
    )
    first: list[Any] = []
    if order_by:
        todo, first = _in_predicted_order(todo, order_by, g, tracker, options, say, backend_kw)
    if tuned:
        from tlbench.tune import resolve_storage_url, run_tuned

        url = resolve_storage_url(storage)
        outcomes = run_tuned(chosen, todo, tracker, options, url, str(g.path), say, **backend_kw)
    else:
        outcomes = execute(todo, tracker, options, console=say, **backend_kw)
    done_first = {o.cell.name for o in first}
    outcomes = first + [o for o in outcomes if o.cell.name not in done_first]
    touched = {o.cell.config_id for o in outcomes}
    update_summaries(tracker, experiment_id, [c for c in g.cells if c.config_id in touched])
    return RunResult(g.name, tracker.uri, experiment_id, outcomes)


def _check_score(order_by: str | None) -> None:
    """An unknown ``--order-by`` score: exit 2 before any cell."""
    if order_by:
        from tlbench.rank.scores import parse_scores

        parse_scores([order_by])


def _announce(
    say: Console, name: str, todo: list[Any], chosen: list[Any], uri: str, plan: Any, order_by: str | None
) -> None:
    extra = len(todo) - len(chosen)
    say.print(
        f"grid [bold]{name}[/]: {len(todo)} cells"
        + (f" ({extra} added as cell: sources)" if extra else "")
        + f" → MLflow {uri} (experiment {name!r})"
        + (f"; racing by {', '.join(plan.by)}" if plan else "")
        + (f"; in the order {order_by} predicts" if order_by else ""),
        highlight=False,
    )


def _in_predicted_order(
    todo: list[Any], score: str, g: Grid, tracker: Any, options: Any, say: Console, backend_kw: dict
) -> tuple[list[Any], list[Any]]:
    """(the cells in the order ``score`` predicts, the outcomes of the ``cell:`` sources trained
    first because their backbones are what the score reads)."""
    from tlbench.executor import execute
    from tlbench.rank.order import order_cells
    from tlbench.rank.targets import targets, unfinished_sources

    def line(text: str) -> None:
        say.print(text, highlight=False)

    first: list[Any] = []
    names = set(unfinished_sources(targets(todo), set(tracker.finished_runs(options.experiment_id))))
    if names:
        line(f"--order-by {score}: training the {len(names)} cell: source(s) it scores first")
        first = execute(
            with_dependencies([c for c in todo if c.name in names], g.cells),
            tracker,
            options,
            console=say,
            **backend_kw,
        )
        if any(not o.done for o in first):
            line(f"[yellow]--order-by {score}: a source did not finish; the cells keep the grid's order[/]")
            return todo, first
    device = None if options.device == "auto" else options.device
    ordered = order_cells(
        todo,
        score,
        tracker,
        options.experiment_id,
        grid=g.name,
        data_dir=options.data_dir,
        device=device,
        say=line,
    )
    return ordered, first


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
