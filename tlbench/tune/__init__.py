"""Optuna studies that tune a cell's learning rate and batch size.

``storage`` (journal file or PostgreSQL), ``space`` (search ranges, pruners), ``budget``
(exactly N trials across processes), ``study`` (one shared study per cell, stale trials
retried), ``trial`` (one trial through the executors' runner), ``results`` (summaries, the
study's MLflow parent run, best params) and ``grid`` (``tlbench tune`` and ``run --tuned``).
"""

from __future__ import annotations

from tlbench.tune.budget import counted, is_surplus, study_name
from tlbench.tune.driver import run_tuned, start_helpers, stop_helpers, tune_cells, tune_selected, tuned_cells
from tlbench.tune.results import StudySummary, best_params, study_status, summarize
from tlbench.tune.space import BATCH_SIZES, LR_RANGES, PRUNERS, make_pruner, search_space, with_hparams
from tlbench.tune.storage import DEFAULT_STORAGE, TuneError, open_storage, resolve_storage_url
from tlbench.tune.study import fail_stale_trials, open_study, tune_cell

__all__ = [
    "BATCH_SIZES",
    "DEFAULT_STORAGE",
    "LR_RANGES",
    "PRUNERS",
    "StudySummary",
    "TuneError",
    "best_params",
    "counted",
    "fail_stale_trials",
    "is_surplus",
    "make_pruner",
    "open_storage",
    "open_study",
    "resolve_storage_url",
    "run_tuned",
    "search_space",
    "start_helpers",
    "stop_helpers",
    "study_name",
    "study_status",
    "summarize",
    "tune_cell",
    "tune_cells",
    "tune_selected",
    "tuned_cells",
    "with_hparams",
]
