"""Executors: take cells, run each through ``run_cell``, skip what is already finished.

``local.run_cells`` runs them one after another in this process; ``pool.run_pool`` on worker
processes (one per GPU, or N sharing the CPU); ``ray_backend.run_ray`` as Ray tasks across a
cluster. ``execute`` picks one from the ``run`` command's options.
"""

from __future__ import annotations

from typing import Any

from tlbench.executor.cell import CellOutcome, run_cell
from tlbench.executor.local import run_cells

__all__ = ["CellOutcome", "execute", "run_cell", "run_cells"]


def execute(
    cells: list[Any],
    tracker: Any,
    experiment_id: str,
    *,
    backend: str = "local",
    workers: str | int = 1,
    cells_per_gpu: int = 1,
    retries: int = 2,
    address: str | None = None,
    **options: Any,
) -> list[CellOutcome]:
    """Run ``cells`` with the chosen executor; ``options`` are those every executor takes."""
    if backend == "ray":
        from tlbench.executor.ray_backend import run_ray

        return run_ray(
            cells,
            tracker,
            experiment_id,
            address=address,
            cells_per_gpu=cells_per_gpu,
            retries=retries,
            **options,
        )
    if str(workers) == "1":
        return run_cells(cells, tracker, experiment_id, **options)
    from tlbench.executor.pool import run_pool

    return run_pool(
        cells,
        tracker,
        experiment_id,
        workers=workers,
        cells_per_gpu=cells_per_gpu,
        retries=retries,
        **options,
    )
