"""Executors: take cells, run each through ``run_cell``, skip what is already finished."""

from tlbench.executor.cell import CellOutcome, run_cell
from tlbench.executor.local import run_cells

__all__ = ["CellOutcome", "run_cell", "run_cells"]
