"""One study per cell, shared by every process that tunes it, with exactly N trials.

The study of a cell is named ``GRID/CONFIGURATION [id]`` (``tlbench-<id>`` before #16: still
found), with the axis values as user attributes, in a storage that several processes
and machines can share. Trials carry a heartbeat, so a trial whose process died (SIGKILL, a lost
node) is failed by the next process that opens the study and retried with the same parameters.

Exactly N trials: a process claims a trial only while fewer than N count (finished or running,
not counting trials that were replaced by a retry); if two processes race for the last one, the
later one marks its trial ``surplus`` (FAIL, never run) instead of training it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tlbench.cells import Cell
from tlbench.dburl import redact
from tlbench.interrupts import uninterrupted
from tlbench.tracking import CellRun, Tracker, is_stale, tags
from tlbench.tune.budget import counted, is_surplus, load_cell_study, replaced_trials, study_name
from tlbench.tune.results import StudySummary, summarize
from tlbench.tune.space import make_pruner, search_space
from tlbench.tune.storage import TuneError, open_storage, resolve_storage_url
from tlbench.tune.trial import run_trial

if TYPE_CHECKING:
    import optuna


def fail_stale_trials(study: optuna.Study, limit: float | None = None) -> list[int]:
    """Fail RUNNING trials whose heartbeat stopped (their process is gone) and queue a retry of
    each with the same parameters; returns the numbers failed."""
    from optuna.trial import TrialState

    now = time.time()
    failed = []
    trials = study.get_trials(deepcopy=False)
    replaced = replaced_trials(trials)
    for t in trials:
        if t.state != TrialState.RUNNING:
            continue
        start = t.datetime_start.timestamp() if t.datetime_start else now
        if not is_stale(float(t.user_attrs.get(tags.TRIAL_HEARTBEAT_ATTR, start)), now, limit):
            continue
        try:
            study.tell(t.number, state=TrialState.FAIL)
        except (ValueError, RuntimeError):  # another process got there first
            continue
        failed.append(t.number)
        if t.number not in replaced:
            study.enqueue_trial(
                dict(t.params), user_attrs={tags.RETRY_OF_ATTR: t.number}, skip_if_exists=False
            )
    return failed


def open_study(
    cell: Cell,
    storage: optuna.storages.BaseStorage,
    *,
    pruner: optuna.pruners.BasePruner | None = None,
    seed: int | None = None,
    create: bool = True,
) -> tuple[optuna.Study, bool]:
    """The cell's study (maximizing validation accuracy) and whether this call created it."""
    import optuna

    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=5)
    found = load_cell_study(cell, storage, sampler=sampler, pruner=pruner)  # a legacy name too
    if found is not None:
        return found, False
    name = study_name(cell)
    if create:
        try:
            study = optuna.create_study(
                study_name=name, storage=storage, direction="maximize", sampler=sampler, pruner=pruner
            )
            _describe(study, cell)
            return study, True
        except optuna.exceptions.DuplicatedStudyError:  # another process created it just now
            return optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner), False
    raise TuneError(f"cell {cell.name} has no study {name!r} (run: tlbench tune --select '{cell.name}')")


def _describe(study: optuna.Study, cell: Cell) -> None:
    """User attributes optuna-dashboard shows: the cell, its configuration and axis values."""
    study.set_user_attr(tags.STUDY_CELL_ATTR, cell.config_name or cell.name)
    study.set_user_attr(tags.STUDY_CELL_ID_ATTR, cell.id)
    study.set_user_attr(tags.STUDY_GRID_ATTR, cell.grid)
    study.set_user_attr(tags.STUDY_CONFIG_ID_ATTR, cell.config_id or cell.id)
    for axis, value in cell.axis_values().items():
        study.set_user_attr(axis, value)


def _parent_run(
    study: optuna.Study, created: bool, cell: Cell, tracker: Tracker, exp_id: str, url: str
) -> CellRun:
    """The study's one MLflow parent run: made by the process that created the study, found by
    the others through the study's attribute; reopened (RUNNING) while this process tunes."""
    run_id = study.user_attrs.get(tags.PARENT_RUN_ATTR)
    fresh = not created and not study.get_trials(deepcopy=False)  # another process just created it
    deadline = time.time() + (20 if fresh else 0)
    while run_id is None and time.time() < deadline:  # the creator is making it right now
        time.sleep(0.5)
        run_id = study.user_attrs.get(tags.PARENT_RUN_ATTR)
    if run_id is not None:
        with contextlib.suppress(Exception):
            if tracker.reopen(run_id):
                return CellRun(tracker, run_id, cell)
    space = search_space(cell)
    params = {
        "tune.lr_range": f"{space['lr'][0]:.3g}..{space['lr'][1]:.3g} (log-uniform)",
        "tune.batch_sizes": ",".join(map(str, space["batch_size"])),
        "tune.objective": f"best_{cell.val_metric} (maximize)",
    }
    run = tracker.start_cell(
        exp_id,
        cell,
        variant="study",
        run_name=f"tune: {cell.name}",
        tags={tags.STUDY_NAME: study.study_name, tags.STUDY_STORAGE: redact(url)},
        params=params,
    )
    study.set_user_attr(tags.PARENT_RUN_ATTR, run.run_id)
    return run


def _next_trial(study: optuna.Study, trials: int) -> optuna.Trial | None:
    """A trial to run, or None when the study holds ``trials`` counted trials (this process's
    last ask may have been surplus: recorded as such, never run)."""
    import optuna

    fail_stale_trials(study)
    now = study.get_trials(deepcopy=False)
    waiting = any(t.state == optuna.trial.TrialState.WAITING for t in now)
    if not waiting and len(counted(now)) >= trials:
        return None
    with uninterrupted():
        trial = study.ask()
        if tags.RETRY_OF_ATTR not in trial.user_attrs and is_surplus(study, trial.number, trials):
            trial.set_user_attr(tags.SURPLUS_ATTR, True)
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            return None
    return trial


def _done(study: optuna.Study) -> int:
    return sum(t.state.is_finished() for t in counted(study.get_trials(deepcopy=False)))


def tune_cell(
    cell: Cell,
    *,
    trials: int,
    tracker: Tracker,
    experiment_id: str,
    storage_url: str | None = None,
    pruner: str = "median",
    seed: int | None = None,
    data_dir: str | Path | None = None,
    device: str | None = None,
    fit_options: dict[str, Any] | None = None,
    on_trial: Callable[[optuna.trial.FrozenTrial, int], None] | None = None,
    progress: Any = None,
) -> StudySummary:
    """Run trials of the cell's study until it holds ``trials`` counted trials (shared with any
    other process on the same storage), then log the summary to the study's parent run."""
    import optuna

    from tlbench.executor import RunOptions

    if trials < 1:
        raise TuneError(f"--trials must be at least 1, got {trials}")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = resolve_storage_url(storage_url)
    study, created = open_study(
        cell, open_storage(url), pruner=make_pruner(pruner, cell.train.epochs), seed=seed
    )
    parent = _parent_run(study, created, cell, tracker, experiment_id, url)
    parent.set_tag(tags.TRIALS_TARGET, str(trials))
    parent.set_tag(tags.PRUNER, pruner)
    options = RunOptions(
        tracker.uri,
        experiment_id,
        data_dir=str(data_dir) if data_dir else None,
        device=device,
        **(fit_options or {}),
    )
    interrupted = False
    try:
        while (trial := _next_trial(study, trials)) is not None:
            frozen = run_trial(study, trial, cell, tracker, options, parent.run_id, progress)
            if on_trial is not None:  # with how many of the study's trials are done
                on_trial(frozen, _done(study))
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        summary = summarize(study, cell, parent, interrupted=interrupted, target=trials)
    return summary
