"""Run cells one after another in this process, with a live progress display.

Finished cells (a FINISHED run with the same cell id) are skipped unless ``force``; a cell whose
``cell:`` source failed is failed too, with that reason, instead of training from nothing.
"""

from __future__ import annotations

import time
from pathlib import Path
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

from tlbench.executor.cell import CellOutcome, run_cell
from tlbench.grid import Cell
from tlbench.tracking import Tracker


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
            description=f"  epoch {epoch + 1}/{self.epochs} val_acc {metrics['val_acc']:.3f}",
        )
        self.progress.update(self.overall, completed=self.done_before + (epoch + 1) / self.epochs)


def run_cells(
    cells: list[Cell],
    tracker: Tracker,
    experiment_id: str,
    *,
    force: bool = False,
    data_dir: str | Path | None = None,
    device: str | None = None,
    console: Console | None = None,
    grid_file: str | None = None,
    fit_options: dict[str, Any] | None = None,
) -> list[CellOutcome]:
    console = console or Console(stderr=True)
    finished = {} if force else tracker.finished_runs(experiment_id)
    outcomes: list[CellOutcome] = []
    failed_names: dict[str, str] = {}
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False, refresh_per_second=4) as progress:
        overall = progress.add_task("cells", total=len(cells))
        current = progress.add_task("", total=1, visible=False)
        for i, cell in enumerate(cells):
            if cell.id in finished:
                run = finished[cell.id]
                outcomes.append(CellOutcome(cell, "SKIPPED", run.info.run_id, dict(run.data.metrics)))
                progress.update(overall, completed=i + 1)
                continue
            if cell.depends_on in failed_names:
                reason = f"source cell {cell.depends_on!r} failed: {failed_names[cell.depends_on]}"
                outcomes.append(CellOutcome(cell, "FAILED", None, reason=reason))
                failed_names[cell.name] = reason
                progress.update(overall, completed=i + 1)
                continue
            progress.update(overall, description=f"cells  [bold]{cell.name}[/]")
            progress.update(current, visible=True, completed=0, description="  starting")
            t0 = time.perf_counter()
            reporter = ProgressReporter(progress, overall, current, done_before=i)
            outcome = run_cell(
                cell,
                tracker,
                experiment_id,
                data_dir=data_dir,
                device=device,
                progress=reporter,
                grid_file=grid_file,
            )
            outcomes.append(outcome)
            if outcome.status == "FINISHED":
                m = outcome.metrics
                progress.console.print(
                    f"[green]✓[/] {cell.name}  test_acc {m['test_acc']:.4f}  "
                    f"best_val {m['best_val_acc']:.4f}  {time.perf_counter() - t0:.1f}s"
                )
            else:
                failed_names[cell.name] = outcome.reason
                progress.console.print(f"[red]✗[/] {cell.name}  {outcome.status}: {outcome.reason}")
            progress.update(overall, completed=i + 1)
        progress.update(current, visible=False)
        progress.update(overall, description="cells")
    return outcomes
