"""Counting a shared study's trials: which count towards its N, and which cell a study is.

Several processes ask for trials of one study at once; a trial replaced by a retry (its process
died) or marked surplus (asked for after the last slot went) does not use up the budget.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tlbench.cells import Cell
from tlbench.tracking import tags

if TYPE_CHECKING:
    import optuna

STUDY_PREFIX = "tlbench-"  # the names studies had before #16: tlbench-<configuration id>


def study_name(cell: Cell) -> str:
    """The study of a cell's configuration (one for all its replicates), readable in
    optuna-dashboard: ``GRID/CONFIGURATION [id]``; the configuration id (the cell id when not
    replicated) keeps it unique when a setting changes and the name does not."""
    return f"{cell.grid}/{cell.config_name or cell.name} [{cell.config_id or cell.id}]"


def legacy_study_name(cell: Cell) -> str:
    """The name the same study had before (``tlbench-<id>``): still found, never renamed."""
    return f"{STUDY_PREFIX}{cell.config_id or cell.id}"


def load_cell_study(cell: Cell, storage: Any, **kwargs: Any) -> optuna.Study | None:
    """The cell's existing study under its name or its legacy one, or None if it has none."""
    import optuna

    for name in (study_name(cell), legacy_study_name(cell)):
        try:
            return optuna.load_study(study_name=name, storage=storage, **kwargs)
        except KeyError:
            continue
    return None


def replaced_trials(trials: list[optuna.trial.FrozenTrial]) -> set[int]:
    return {int(t.user_attrs[tags.RETRY_OF_ATTR]) for t in trials if tags.RETRY_OF_ATTR in t.user_attrs}


def counted(trials: list[optuna.trial.FrozenTrial]) -> list[optuna.trial.FrozenTrial]:
    """Trials that use up the study's budget: all but surplus ones and those replaced by a retry."""
    from optuna.trial import TrialState

    replaced = replaced_trials(trials)
    return [
        t
        for t in trials
        if not (t.state == TrialState.FAIL and (t.number in replaced or t.user_attrs.get(tags.SURPLUS_ATTR)))
    ]


def is_surplus(study: optuna.Study, number: int, trials: int) -> bool:
    """Did other processes claim the last slots while this one asked for a trial?"""
    before = [t for t in counted(study.get_trials(deepcopy=False)) if t.number < number]
    return len(before) >= trials
