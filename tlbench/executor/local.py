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

from tlbench.executor.cell import OOM_REASON, CellOutcome, run_cell
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
    variant: str | None = None,
    extra_params: dict[str, dict[str, Any]] | None = None,
    checkpoint_dir: str | Path | None = None,
) -> list[CellOutcome]:
    """Run cells in order; artifacts of a finished cell are written while the next one trains.

    ``variant`` (e.g. ``tuned``) runs the cells as that variant: tagged, and skipped only if that
    variant has a FINISHED run; ``extra_params`` (cell id -> params) are logged beside the cell's.
    """
    console = console or Console(stderr=True)
    reaped = tracker.reap_stale(experiment_id)
    if reaped:
        console.print(f"[yellow]marked {len(reaped)} run(s) KILLED whose process is gone (no heartbeat)[/]")
    finished = {} if force else tracker.finished_runs(experiment_id, variant=variant)
    outcomes: list[CellOutcome] = []
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    run_kw = dict(
        data_dir=data_dir,
        device=device,
        grid_file=grid_file,
        fit_options=fit_options,
        variant=variant,
        force=force,
    )
    try:
        with Progress(*columns, console=console, transient=False, refresh_per_second=4) as progress:
            _loop(cells, tracker, experiment_id, progress, outcomes, finished, run_kw, extra_params or {})
    finally:
        _settle(outcomes)  # every run ends FINISHED/FAILED before we return or propagate Ctrl-C
    return outcomes


def _settle(outcomes: list[CellOutcome], name: str | None = None) -> None:
    """Wait for artifacts still being written (all, or one cell's); failed writing -> FAILED."""
    for o in outcomes:
        if o.pending is not None and (name is None or o.cell.name == name):
            try:
                o.pending.result()
            except Exception as err:
                o.status, o.reason = "FAILED", f"writing artifacts failed: {err}"
            o.pending = None


def _retry_oom(
    cell: Cell,
    tracker: Tracker,
    experiment_id: str,
    progress: Progress,
    reporter: Any,
    run_kw: dict[str, Any],
    extra_params: dict[str, dict[str, Any]],
) -> CellOutcome:
    """CUDA ran out of memory: free the cache and try again with half the batch, down to 1."""
    import dataclasses

    import torch

    outcome = CellOutcome(cell, "FAILED", reason=OOM_REASON)
    bs = cell.train.batch_size
    while outcome.reason == OOM_REASON and bs > 1:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        half = bs // 2
        progress.console.print(
            f"[yellow]{cell.name}: out of memory at batch size {bs}; retrying with {half}[/]"
        )
        smaller = dataclasses.replace(cell, train=cell.train.model_copy(update={"batch_size": half}))
        params = {**extra_params.get(cell.id, {}), "oom_batch_size_from": cell.train.batch_size}
        tags = {"tlbench.oom_retry": f"batch size halved from {bs}"}
        outcome = run_cell(
            smaller,
            tracker,
            experiment_id,
            progress=reporter,
            background_finish=True,
            extra_params=params,
            extra_tags=tags,
            **run_kw,
        )
        bs = half
    return outcome


def _wait_elsewhere(tracker: Tracker, experiment_id: str, source: CellOutcome, progress: Progress) -> None:
    """A ``cell:`` source another process is training: wait while it holds it, then use its run."""
    from tlbench.tracking import heartbeat_interval

    progress.console.print(f"  waiting for {source.cell.name} (running in another process)")
    variant = None
    while tracker.is_claimed(experiment_id, source.cell.id, variant):
        time.sleep(min(2.0, heartbeat_interval()))
    done = tracker.finished_runs(experiment_id).get(source.cell.id)
    if done is not None:
        source.status, source.run_id, source.reason = "SKIPPED", done.info.run_id, "finished"
    else:
        source.status, source.reason = "FAILED", "its run elsewhere did not finish"


def _loop(
    cells: list[Cell],
    tracker: Tracker,
    experiment_id: str,
    progress: Progress,
    outcomes: list[CellOutcome],
    finished: dict[str, Any],
    run_kw: dict[str, Any],
    extra_params: dict[str, dict[str, Any]],
) -> None:
    failed: dict[str, str] = {}
    overall = progress.add_task("cells", total=len(cells))
    current = progress.add_task("", total=1, visible=False)
    for i, cell in enumerate(cells):
        if cell.id in finished:
            run = finished[cell.id]
            outcomes.append(CellOutcome(cell, "SKIPPED", run.info.run_id, dict(run.data.metrics)))
            progress.update(overall, completed=i + 1)
            continue
        if cell.depends_on:
            _settle(outcomes, cell.depends_on)  # its checkpoint must be in the store first
            source = next((o for o in outcomes if o.cell.name == cell.depends_on), None)
            if source is not None and source.reason == "running elsewhere":
                _wait_elsewhere(tracker, experiment_id, source, progress)
            if source is not None and source.status == "FAILED":
                failed[cell.depends_on] = source.reason
        if cell.depends_on in failed:
            reason = f"source cell {cell.depends_on!r} failed: {failed[cell.depends_on]}"
            outcomes.append(CellOutcome(cell, "FAILED", None, reason=reason))
            failed[cell.name] = reason
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
            progress=reporter,
            background_finish=True,
            extra_params=extra_params.get(cell.id),
            **run_kw,
        )
        if outcome.reason == OOM_REASON and cell.train.batch_size > 1:
            outcome = _retry_oom(cell, tracker, experiment_id, progress, reporter, run_kw, extra_params)
        outcomes.append(outcome)
        if outcome.status == "FINISHED":
            m = outcome.metrics
            progress.console.print(
                f"[green]✓[/] {cell.name}  test_acc {m['test_acc']:.4f}  "
                f"best_val {m['best_val_acc']:.4f}  {time.perf_counter() - t0:.1f}s"
            )
        elif outcome.status == "SKIPPED":  # another process finished it or is running it
            progress.console.print(f"[yellow]↷[/] {cell.name}  {outcome.reason}")
        else:
            failed[cell.name] = outcome.reason
            progress.console.print(f"[red]✗[/] {cell.name}  {outcome.status}: {outcome.reason}")
        progress.update(overall, completed=i + 1)
    progress.update(current, visible=False)
    progress.update(overall, description="cells")
