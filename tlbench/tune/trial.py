"""One trial: the cell with the trial's lr and batch size, run by the executors' own runner in
trial mode (a nested MLflow run, no claim, no checkpoint, light artifacts), every epoch
reported to the pruner, and the study told how it ended."""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING, Any

from tlbench.cells import Cell
from tlbench.executor import RunOptions, TrialRun, run_cell
from tlbench.interrupts import uninterrupted
from tlbench.tracking import Heartbeat, Tracker, tags
from tlbench.train import MultiReporter, StopTraining
from tlbench.tune.space import search_space, with_hparams

if TYPE_CHECKING:
    import optuna


class PruningReporter:
    """Reports each epoch's validation metric (the cell's ``val_metric``) to the trial; stops the
    cell when told to prune."""

    def __init__(self, trial: optuna.Trial, metric: str = "val_acc"):
        self.trial, self.metric = trial, metric

    def on_start(self, info: dict[str, Any]) -> None:
        pass

    def on_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        if self.metric not in metrics:  # not validated this epoch (``eval_every``)
            return
        value = float(metrics[self.metric])
        with uninterrupted():  # a Ctrl-C mid-write could leave the study's storage locked
            self.trial.report(value, step=epoch)
            prune = self.trial.should_prune()
        if prune:
            raise StopTraining(f"pruned at epoch {epoch + 1} ({self.metric} {value:.4f})")


def _trial_cell(trial: optuna.Trial, cell: Cell) -> Cell:
    space = search_space(cell)
    lo, hi = space["lr"]
    lr = trial.suggest_float("lr", lo, hi, log=True)
    batch_size = trial.suggest_categorical("batch_size", list(space["batch_size"]))
    return with_hparams(cell, lr, int(batch_size))  # type: ignore[arg-type]


def run_trial(
    study: optuna.Study,
    trial: optuna.Trial,
    cell: Cell,
    tracker: Tracker,
    options: RunOptions,
    parent_run_id: str,
    progress: Any = None,
) -> optuna.trial.FrozenTrial:
    """Train one trial as a nested MLflow run and tell the study how it ended."""
    from optuna.trial import TrialState

    beat = Heartbeat(lambda: trial.set_user_attr(tags.TRIAL_HEARTBEAT_ATTR, time.time()), "tlbench-trial")
    run_tags = {tags.STUDY_NAME: study.study_name, tags.TRIAL_NUMBER: str(trial.number)}
    if tags.RETRY_OF_ATTR in trial.user_attrs:
        run_tags[tags.TRIAL_RETRY_OF] = str(trial.user_attrs[tags.RETRY_OF_ATTR])
    mode = TrialRun(parent_run_id, f"trial {trial.number}: {cell.name}", run_tags)
    run_id: list[str] = []

    def on_run(rid: str, _claim: str | None) -> None:
        run_id.append(rid)
        trial.set_user_attr(tags.RUN_ID_ATTR, rid)

    try:
        outcome = run_cell(
            _trial_cell(trial, cell),
            tracker,
            options,
            reporter=MultiReporter(PruningReporter(trial, cell.val_metric), progress),
            trial=mode,
            on_run=on_run,
        )
    except (KeyboardInterrupt, SystemExit):  # its run ended KILLED; the next process retries it
        if run_id:
            tracker.set_tags(run_id[0], {tags.TRIAL_STATE: "FAIL"})
        with contextlib.suppress(Exception):
            study.tell(trial, state=TrialState.FAIL)
            study.enqueue_trial(dict(trial.params), user_attrs={tags.RETRY_OF_ATTR: trial.number})
        raise
    finally:
        beat.stop(wait=True)
    state = {"FINISHED": "COMPLETE", "STOPPED": "PRUNED"}.get(outcome.status, "FAIL")
    if outcome.run_id:
        tracker.set_tags(outcome.run_id, {tags.TRIAL_STATE: state})
    if state == "COMPLETE":
        with uninterrupted():
            return study.tell(trial, outcome.metrics[f"best_{cell.val_metric}"], skip_if_finished=True)
    if state == "FAIL":  # a diverging lr, an OOM at this batch size, a broken cell: this trial only
        trial.set_user_attr(tags.TRIAL_REASON_ATTR, outcome.reason[:500])
    return study.tell(trial, state=getattr(TrialState, state), skip_if_finished=True)
