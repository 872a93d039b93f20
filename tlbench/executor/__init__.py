"""Executors: where cells run. One policy for all (``policy``), one runner for a cell
(``runner``), one options object (``options``); ``local`` runs cells in this process, ``pool``
on worker processes (one per GPU, or N sharing the CPU), ``ray_backend`` as Ray tasks across a
cluster. ``execute`` picks one."""

from __future__ import annotations

from typing import Any

from tlbench.executor.forkserver import start_early
from tlbench.executor.options import RunOptions
from tlbench.executor.runner import CellOutcome, TrialRun, run_cell

__all__ = ["CellOutcome", "RunOptions", "TrialRun", "execute", "run_cell", "start_early"]


def execute(
    cells: list[Any],
    tracker: Any,
    options: RunOptions,
    *,
    backend: str = "local",
    workers: str | int = 1,
    cells_per_gpu: int = 1,
    retries: int = 2,
    address: str | None = None,
    console: Any = None,
) -> list[CellOutcome]:
    """Run ``cells`` with the chosen executor; every backend honours every ``options`` field."""
    if backend == "ray":
        from tlbench.executor.ray_backend import run_ray

        return run_ray(
            cells,
            tracker,
            options,
            address=address,
            cells_per_gpu=cells_per_gpu,
            retries=retries,
            console=console,
        )
    if str(workers) == "1":
        from tlbench.executor.local import run_cells

        return run_cells(cells, tracker, options, console=console)
    from tlbench.executor.pool import run_pool

    return run_pool(
        cells,
        tracker,
        options,
        workers=workers,
        cells_per_gpu=cells_per_gpu,
        retries=retries,
        console=console,
    )
