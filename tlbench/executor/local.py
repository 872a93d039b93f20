"""Run cells one after another in this process, with a live progress display.

The shared policy (``tlbench.executor.policy``) decides what runs next and what each outcome
means; a cell retried after an out-of-memory error runs in a fresh process of its own. The
artifacts of a finished cell are written while the next one trains.
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from tlbench.cells import Cell
from tlbench.executor.options import RunOptions
from tlbench.executor.policy import Schedule, Task
from tlbench.executor.runner import CellOutcome, run_cell
from tlbench.executor.stacking import run_stack
from tlbench.tracking import Tracker, heartbeat_interval


class ProgressReporter:
    """Feeds ``fit``'s epochs into a rich progress display (overall cells + current cell epochs)."""

    def __init__(self, progress: Progress, overall: TaskID, current: TaskID, done_before: float):
        self.progress = progress
        self.overall = overall
        self.current = current
        self.done_before = done_before
        self.epochs = 1

    def on_start(self, info: dict[str, Any]) -> None:
        self.epochs = sum(int(p.split(":")[1]) for p in str(info.get("phases", "x:1")).split(","))
        self.progress.update(self.current, total=self.epochs, completed=0)

    def on_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        self.progress.update(
            self.current,
            completed=epoch + 1,
            description=f"  epoch {epoch + 1}/{self.epochs} val_acc {metrics.get('val_acc', float('nan')):.3f}",
        )
        self.progress.update(self.overall, completed=self.done_before + (epoch + 1) / self.epochs)


def settle(outcomes: list[CellOutcome], name: str | None = None) -> None:
    """Wait for artifacts still being written (all, or one cell's); failed writing -> FAILED."""
    for o in outcomes:
        if o.pending is not None and (name is None or o.cell.name == name):
            try:
                o.pending.result()
            except Exception as err:
                o.status, o.reason = "FAILED", f"writing artifacts failed: {err}"
            o.pending = None


def _run_one(task: Task, tracker: Tracker, options: RunOptions, reporter: ProgressReporter) -> CellOutcome:
    if task.fresh_process:
        from tlbench.executor.pool import run_in_fresh_process

        return run_in_fresh_process(task, tracker, options)
    return run_cell(
        task.cell,
        tracker,
        options,
        reporter=reporter,
        background_finish=True,
        extra_params=task.params,
        extra_tags=task.tags,
        pause_at=task.pause_at,
    )


def _loop(schedule: Schedule, tracker: Tracker, options: RunOptions, progress: Progress) -> None:
    overall = progress.add_task("cells", total=len(schedule.cells), completed=schedule.skipped_before)
    current = progress.add_task("", total=1, visible=False)
    while schedule.active:
        tasks = schedule.next_stack()
        if not tasks:  # only cells held by other processes are left: wait for them here
            time.sleep(min(2.0, heartbeat_interval()))
            schedule.poll_elsewhere()
            continue
        task = tasks[0]
        for t in tasks:
            if t.cell.depends_on:  # its source's checkpoint must be in the store first
                settle(list(schedule.outcomes.values()), t.cell.depends_on)
        more = f" [dim]+ {len(tasks) - 1} stacked[/]" if len(tasks) > 1 else ""
        progress.update(overall, description=f"cells  [bold]{task.cell.name}[/]{more}")
        progress.update(current, visible=True, completed=0, description="  starting")
        t0 = time.perf_counter()
        reporter = ProgressReporter(progress, overall, current, done_before=len(schedule.outcomes))
        if len(tasks) > 1:  # probe heads trained as one stack: each cell its own run and outcome
            outcomes = run_stack(tasks, tracker, options, reporter=reporter, background_finish=True)
        else:
            outcomes = [_run_one(task, tracker, options, reporter)]
        took = (time.perf_counter() - t0) / len(tasks)
        for t, outcome in zip(tasks, outcomes, strict=True):
            schedule.record(t, outcome, took)
        progress.update(overall, completed=len(schedule.outcomes))
    progress.update(current, visible=False)
    progress.update(overall, description="cells")


def run_cells(
    cells: list[Cell], tracker: Tracker, options: RunOptions, *, console: Console | None = None
) -> list[CellOutcome]:
    """Run cells in order in this process; returns one outcome per cell, in cell order."""
    console = console or Console(stderr=True)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    schedule = Schedule(cells, tracker, options, console.print)
    try:
        with Progress(*columns, console=console, transient=False, refresh_per_second=4) as progress:
            schedule.say = progress.console.print
            _loop(schedule, tracker, options, progress)
    finally:
        settle(
            list(schedule.outcomes.values())
        )  # every run ends FINISHED/FAILED before we return or propagate Ctrl-C
    return schedule.results()
