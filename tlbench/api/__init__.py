"""tlbench's Python API: what the ``tlbench`` command stands on, and what a notebook calls.

    import tlbench
    grid = tlbench.load_grid("smoke")                      # a shipped grid, or a path to a .yaml
    run = tlbench.run_grid(grid, select=["digits-10pct/*"])
    res = tlbench.results(grid)                            # pandas DataFrames
    res.configurations                                     # mean ± CI over seeds per configuration
    rep = tlbench.report_grid(grid, out="reports/smoke")   # every table, and the figures
    ranking = tlbench.rank_grid(grid)                      # transferability scores vs the results
    tlbench.backup_store(artifacts=True)                   # a consistent copy of ./mlruns/mlflow.db

Nothing here exits the interpreter: a grid, a name or a file the user can fix raises a
``TlbenchError`` with one clear message (the command line prints it and exits 2), Ctrl-C raises
``KeyboardInterrupt`` after the current run is marked KILLED. Progress goes to a rich console
(the terminal's, or the notebook's: rich renders there too). Importing this module imports no
torch, timm or MLflow: each function imports what it needs.
"""

from tlbench.api.grids import Grid, SelectionError, expand_grid, load_grid, prefetch_grid, validate_grid
from tlbench.api.rank import order_cells, rank_grid
from tlbench.api.results import Results, report_grid, results, ui_url
from tlbench.api.runs import OptionError, RunResult, progress_console, run_grid, tune_grid  # noqa: F401 (the CLI's console)
from tlbench.api.store import backup_store, check_store, restore_store

__all__ = [
    "Grid",
    "OptionError",
    "Results",
    "RunResult",
    "SelectionError",
    "backup_store",
    "check_store",
    "expand_grid",
    "load_grid",
    "order_cells",
    "prefetch_grid",
    "rank_grid",
    "report_grid",
    "restore_store",
    "results",
    "run_grid",
    "tune_grid",
    "ui_url",
    "validate_grid",
]
