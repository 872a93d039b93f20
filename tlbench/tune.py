"""Optuna studies that tune a cell's learning rate and batch size.

One study per cell, named from the cell id (``tlbench-<id>``), in a storage that several
processes and machines can share: by default a journal file under ``./mlruns`` (Optuna's docs:
SQLite is not safe for parallel workers, the journal file backend is), or an RDB URL such as
``postgresql://...`` for many machines. Each trial trains the cell with the trial's lr and batch
size, reports validation accuracy every epoch to the pruner, and is an MLflow run nested under the
study's parent run. Trials carry a heartbeat, so a trial whose process died (SIGKILL, a lost node)
is failed by the next process that opens the study and retried with the same parameters.

Exactly N trials: a process claims a trial only while fewer than N count (finished or running,
not counting trials that were replaced by a retry); if two processes race for the last one, the
later one marks its trial ``surplus`` (FAIL, never run) instead of training it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tlbench.dburl import redact, with_driver
from tlbench.grid import Cell
from tlbench.interrupts import uninterrupted
from tlbench.tracking import DEFAULT_STORE_DIR, CellRun, Tracker, heartbeat_interval, stale_after

if TYPE_CHECKING:
    import optuna

STUDY_PREFIX = "tlbench-"
DEFAULT_STORAGE = DEFAULT_STORE_DIR / "optuna.journal"
STORAGE_ENV = "TLBENCH_OPTUNA_STORAGE"
PRUNERS = ("median", "halving", "hyperband", "none")
RDB_SCHEMES = ("postgresql", "mysql", "sqlite", "oracle", "mssql")

# Default lr ranges for SGD, by what trains: a frozen backbone's head tolerates a much higher lr
# than fine-tuning pretrained features. An optimizer's ``tune_lr_factor`` scales them (Adam: 0.01).
LR_RANGES: dict[str, tuple[float, float]] = {
    "head": (1e-3, 1.0),
    "partial": (1e-4, 0.1),
    "all": (1e-4, 0.1),
    "scratch": (1e-3, 0.5),
}
BATCH_SIZES: tuple[int, ...] = (32, 64, 128)

# user attributes tlbench keeps on trials
HEARTBEAT_ATTR = "tlbench.heartbeat"
RETRY_OF_ATTR = "tlbench.retry_of"
SURPLUS_ATTR = "tlbench.surplus"
RUN_ID_ATTR = "mlflow_run_id"
PARENT_RUN_ATTR = "mlflow_parent_run_id"  # a study user attribute


class TuneError(ValueError):
    """Bad tuning input (storage URL, trial count, pruner): one clear message for the CLI."""


# ---------------------------------------------------------------------------------------------
# storage, study names, search spaces


def resolve_storage_url(url: str | None) -> str:
    """``--storage`` > ``TLBENCH_OPTUNA_STORAGE`` > the journal file ``./mlruns/optuna.journal``."""
    return url or os.environ.get(STORAGE_ENV) or str(DEFAULT_STORAGE.resolve())


def open_storage(url: str | None = None) -> optuna.storages.BaseStorage:
    """An Optuna storage: an RDB URL (``postgresql://``, ``mysql://``, ``sqlite:///``) or a path
    to a journal file (created with its folder), safe for several local processes."""
    import optuna
    from optuna.storages.journal import JournalFileBackend

    url = resolve_storage_url(url)
    if "://" in url:
        scheme = url.split("://", 1)[0].split("+", 1)[0].lower()
        if scheme not in RDB_SCHEMES:
            raise TuneError(
                f"unknown storage {url!r}: use a journal file path (default {DEFAULT_STORAGE}), "
                "sqlite:///FILE.db, or postgresql://USER:PASS@HOST/DB for many machines"
            )
        return _open_rdb(url)
    path = Path(url).expanduser()
    if path.is_dir():
        raise TuneError(
            f"storage {url!r} is a folder; give a journal file path such as {path / 'optuna.journal'}"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(JournalFileBackend(str(path)))


def _open_rdb(url: str, attempts: int = 6) -> optuna.storages.RDBStorage:
    """Optuna's RDB storage; processes that meet an empty database at once race to create its
    tables (a unique violation for all but one), so that is retried, not reported."""
    import random

    import optuna
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    for attempt in range(attempts):
        try:
            return optuna.storages.RDBStorage(with_driver(url))
        except (IntegrityError, ProgrammingError):
            if attempt == attempts - 1:
                raise
            time.sleep(0.5 + random.random())
        except ImportError as err:
            raise TuneError(
                f"storage {redact(url)}: its database driver is missing ({err}); "
                "pip install 'tlbench[postgres]' for PostgreSQL"
            ) from None
        except Exception as err:  # connection refused, bad credentials, unknown database
            raise TuneError(f"cannot open storage {redact(url)}: {type(err).__name__}: {err}") from None
    raise AssertionError("unreachable")


def study_name(cell: Cell) -> str:
    """The study of a cell: from its id, so editing labels or the search space keeps the study."""
    return f"{STUDY_PREFIX}{cell.id}"


def search_space(cell: Cell) -> dict[str, Any]:
    """The cell's ``tune:`` ranges, defaults filled in by strategy and optimizer."""
    from tlbench.optim import OPTIMIZERS
    from tlbench.strategies import STRATEGIES

    info = STRATEGIES.get(cell.strategy.name)
    if not info.pretrained:
        kind = "scratch"
    else:
        params = info.params.model_validate(cell.strategy.params) if info.params else None
        kind = info.phases(params, cell.train)[0].trainable
    factor = OPTIMIZERS.get(cell.optimizer.name).tune_lr_factor
    low, high = LR_RANGES[kind]
    space = {"lr": (low * factor, high * factor), "batch_size": BATCH_SIZES}
    space.update({k: tuple(v) for k, v in cell.tune.items()})
    return space


def with_hparams(cell: Cell, lr: float, batch_size: int) -> Cell:
    """The same cell (same id) trained with this lr (``lr_scale`` reset) and batch size."""
    train = cell.train.model_copy(update={"lr": float(lr), "lr_scale": 1.0, "batch_size": int(batch_size)})
    return dataclasses.replace(cell, train=train)


def make_pruner(name: str, epochs: int, n_startup_trials: int = 3) -> optuna.pruners.BasePruner:
    """``median`` (default), ``halving`` (successive halving), ``hyperband`` or ``none``."""
    import optuna

    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=n_startup_trials, n_warmup_steps=1)
    if name == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(epochs, 2))
    if name == "none":
        return optuna.pruners.NopPruner()
    raise TuneError(f"unknown pruner {name!r} (valid: {', '.join(PRUNERS)})")


# ---------------------------------------------------------------------------------------------
# counting trials across processes


def _replaced(trials: list[optuna.trial.FrozenTrial]) -> set[int]:
    return {int(t.user_attrs[RETRY_OF_ATTR]) for t in trials if RETRY_OF_ATTR in t.user_attrs}


def counted(trials: list[optuna.trial.FrozenTrial]) -> list[optuna.trial.FrozenTrial]:
    """Trials that use up the study's budget: all but surplus ones and those replaced by a retry."""
    from optuna.trial import TrialState

    replaced = _replaced(trials)
    return [
        t
        for t in trials
        if not (t.state == TrialState.FAIL and (t.number in replaced or t.user_attrs.get(SURPLUS_ATTR)))
    ]


def fail_stale_trials(study: optuna.Study, limit: float | None = None) -> list[int]:
    """Fail RUNNING trials whose heartbeat stopped (their process is gone) and queue a retry of
    each with the same parameters; returns the numbers failed."""
    from optuna.trial import TrialState

    limit = stale_after() if limit is None else limit
    now = time.time()
    failed = []
    trials = study.get_trials(deepcopy=False)
    replaced = _replaced(trials)
    for t in trials:
        if t.state != TrialState.RUNNING:
            continue
        start = t.datetime_start.timestamp() if t.datetime_start else now
        beat = float(t.user_attrs.get(HEARTBEAT_ATTR, start))
        if now - beat <= limit:
            continue
        try:
            study.tell(t.number, state=TrialState.FAIL)
        except (ValueError, RuntimeError):  # another process got there first
            continue
        failed.append(t.number)
        if t.number not in replaced:
            study.enqueue_trial(dict(t.params), user_attrs={RETRY_OF_ATTR: t.number}, skip_if_exists=False)
    return failed


class _TrialHeartbeat:
    """Refreshes a trial's heartbeat attribute while this process works on it."""

    def __init__(self, trial: optuna.Trial):
        self.trial = trial
        self._stop = threading.Event()
        trial.set_user_attr(HEARTBEAT_ATTR, time.time())
        self._thread = threading.Thread(target=self._run, name="tlbench-trial-heartbeat", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(heartbeat_interval()):
            with contextlib.suppress(Exception):  # a storage hiccup must not kill the trial
                self.trial.set_user_attr(HEARTBEAT_ATTR, time.time())

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


# ---------------------------------------------------------------------------------------------
# one study


@dataclass
class StudySummary:
    cell: Cell = dataclasses.field(repr=False)
    study: str
    complete: int
    pruned: int
    failed: int
    best_value: float | None
    best_params: dict[str, Any]
    best_trial: int | None
    parent_run_id: str | None
    interrupted: bool = False


class _PruningReporter:
    """Reports each epoch's validation accuracy to the trial; raises ``TrialPruned`` when told."""

    def __init__(self, trial: optuna.Trial):
        self.trial = trial

    def on_start(self, info: dict[str, Any]) -> None:
        pass

    def on_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        import optuna

        with uninterrupted():  # a Ctrl-C mid-write could leave the study's storage locked
            self.trial.report(float(metrics["val_acc"]), step=epoch)
            prune = self.trial.should_prune()
        if prune:
            raise optuna.TrialPruned(f"pruned at epoch {epoch + 1} (val_acc {metrics['val_acc']:.4f})")


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
    name = study_name(cell)
    if create:
        try:
            study = optuna.create_study(
                study_name=name, storage=storage, direction="maximize", sampler=sampler, pruner=pruner
            )
            study.set_user_attr("tlbench.cell", cell.name)
            study.set_user_attr("tlbench.cell_id", cell.id)
            study.set_user_attr("tlbench.grid", cell.grid)
            return study, True
        except optuna.exceptions.DuplicatedStudyError:
            pass
    try:
        return optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner), False
    except KeyError:
        raise TuneError(
            f"cell {cell.name} has no study {name!r} (run: tlbench tune --select '{cell.name}')"
        ) from None


def _parent_run(
    study: optuna.Study, created: bool, cell: Cell, tracker: Tracker, exp_id: str, url: str
) -> CellRun:
    """The study's one MLflow parent run: made by the process that created the study, found by
    the others through the study's attribute; reopened (RUNNING) while this process tunes."""
    run_id = study.user_attrs.get(PARENT_RUN_ATTR)
    fresh = not created and not study.get_trials(deepcopy=False)  # another process just created it
    deadline = time.time() + (20 if fresh else 0)
    while run_id is None and time.time() < deadline:  # the creator is making it right now
        time.sleep(0.5)
        run_id = study.user_attrs.get(PARENT_RUN_ATTR)
    if run_id is not None:
        with contextlib.suppress(Exception):
            if tracker.client.get_run(run_id).info.lifecycle_stage == "active":
                tracker.client.update_run(run_id, status="RUNNING")
                return CellRun(tracker, run_id, cell)
    tags = {"optuna.study_name": study.study_name, "optuna.storage": redact(url)}
    space = search_space(cell)
    params = {
        "tune.lr_range": f"{space['lr'][0]:.3g}..{space['lr'][1]:.3g} (log-uniform)",
        "tune.batch_sizes": ",".join(map(str, space["batch_size"])),
        "tune.objective": "best_val_acc (maximize)",
    }
    run = tracker.start_cell(
        exp_id, cell, variant="study", run_name=f"tune: {cell.name}", tags=tags, params=params
    )
    study.set_user_attr(PARENT_RUN_ATTR, run.run_id)
    return run


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

    if trials < 1:
        raise TuneError(f"--trials must be at least 1, got {trials}")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = resolve_storage_url(storage_url)
    storage = open_storage(url)
    study, created = open_study(cell, storage, pruner=make_pruner(pruner, cell.train.epochs), seed=seed)
    parent = _parent_run(study, created, cell, tracker, experiment_id, url)
    parent.client.set_tag(parent.run_id, "optuna.trials_target", str(trials))
    parent.client.set_tag(parent.run_id, "optuna.pruner", pruner)
    space = search_space(cell)
    interrupted = False
    try:
        while True:
            fail_stale_trials(study)
            trials_now = study.get_trials(deepcopy=False)
            waiting = any(t.state == optuna.trial.TrialState.WAITING for t in trials_now)
            if not waiting and len(counted(trials_now)) >= trials:
                break
            with uninterrupted():
                trial = study.ask()
                surplus = RETRY_OF_ATTR not in trial.user_attrs and _is_surplus(study, trial.number, trials)
                if surplus:
                    trial.set_user_attr(SURPLUS_ATTR, True)
                    study.tell(trial, state=optuna.trial.TrialState.FAIL)
            if surplus:
                break
            frozen = _run_trial(
                study,
                trial,
                cell,
                space,
                tracker,
                experiment_id,
                parent.run_id,
                data_dir,
                device,
                fit_options,
                progress,
            )
            if on_trial is not None:  # with how many of the study's trials are done
                on_trial(frozen, _done(study))
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        summary = summarize(study, cell, parent, interrupted=interrupted, target=trials)
    return summary


def _done(study: optuna.Study) -> int:
    return sum(t.state.is_finished() for t in counted(study.get_trials(deepcopy=False)))


def _is_surplus(study: optuna.Study, number: int, trials: int) -> bool:
    """Did other processes claim the last slots while this one asked for a trial?"""
    before = [t for t in counted(study.get_trials(deepcopy=False)) if t.number < number]
    return len(before) >= trials


def _run_trial(
    study: optuna.Study,
    trial: optuna.Trial,
    cell: Cell,
    space: dict[str, Any],
    tracker: Tracker,
    experiment_id: str,
    parent_run_id: str,
    data_dir: str | Path | None,
    device: str | None,
    fit_options: dict[str, Any] | None,
    progress: Any,
) -> optuna.trial.FrozenTrial:
    """Train one trial as a nested MLflow run and tell the study how it ended."""
    import optuna
    from optuna.trial import TrialState

    from tlbench.executor.cell import load_cell_data, resolve_weights
    from tlbench.train import MultiReporter, NonFiniteLossError, fit

    beat = _TrialHeartbeat(trial)
    run = None
    try:
        lo, hi = space["lr"]
        lr = trial.suggest_float("lr", lo, hi, log=True)
        batch_size = trial.suggest_categorical("batch_size", list(space["batch_size"]))
        tcell = with_hparams(cell, lr, int(batch_size))  # type: ignore[arg-type]
        tags = {"optuna.study_name": study.study_name, "optuna.trial_number": str(trial.number)}
        if RETRY_OF_ATTR in trial.user_attrs:
            tags["optuna.retry_of"] = str(trial.user_attrs[RETRY_OF_ATTR])
        run = tracker.start_cell(
            experiment_id,
            tcell,
            variant="trial",
            parent_run_id=parent_run_id,
            run_name=f"trial {trial.number}: {cell.name}",
            tags=tags,
        )
        trial.set_user_attr(RUN_ID_ATTR, run.run_id)
        with tempfile.TemporaryDirectory(prefix="tlbench-trial-") as tmp:
            weights_file = resolve_weights(tcell, tracker, experiment_id, run, Path(tmp))
            data = load_cell_data(tcell, data_dir)
            result = fit(
                tcell,
                data,
                weights_file=weights_file,
                reporter=MultiReporter(run, _PruningReporter(trial), progress),
                device=device,
                **(fit_options or {}),
            )
        run.client.set_tag(run.run_id, "optuna.trial_state", "COMPLETE")
        run.finish(result, light=True)
        with uninterrupted():
            return study.tell(trial, result.best_val_acc, skip_if_finished=True)
    except optuna.TrialPruned as err:
        if run is not None:
            run.client.set_tag(run.run_id, "optuna.trial_state", "PRUNED")
            run.end("FINISHED", str(err))
        return study.tell(trial, state=TrialState.PRUNED, skip_if_finished=True)
    except (KeyboardInterrupt, SystemExit):
        # retried with the same params by the next process; this run ends KILLED, not RUNNING
        if run is not None:
            run.client.set_tag(run.run_id, "optuna.trial_state", "FAIL")
            run.fail("KILLED", "interrupted")
        with contextlib.suppress(Exception):
            study.tell(trial, state=TrialState.FAIL)
            study.enqueue_trial(dict(trial.params), user_attrs={RETRY_OF_ATTR: trial.number})
        raise
    except Exception as err:  # a diverging lr or a broken cell fails this trial, not the study
        if isinstance(err, NonFiniteLossError):
            reason = err.reason
        elif _is_oom(err):  # the batch size is what is being tuned: an OOM is this trial's result
            reason = "oom"
        else:
            reason = f"{type(err).__name__}: {err}"
        trial.set_user_attr("tlbench.failure_reason", str(reason)[:500])
        if run is not None:
            run.client.set_tag(run.run_id, "optuna.trial_state", "FAIL")
            run.fail("FAILED", f"{reason}: {err}" if isinstance(err, NonFiniteLossError) else reason)
        return study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
    finally:
        beat.stop()


def _is_oom(err: BaseException) -> bool:
    import torch

    return isinstance(err, torch.cuda.OutOfMemoryError)


# ---------------------------------------------------------------------------------------------
# results


def summarize(
    study: optuna.Study, cell: Cell, parent: CellRun, *, interrupted: bool = False, target: int | None = None
) -> StudySummary:
    """Counts, best params and Optuna's plots on the parent run; FINISHED once the study is full."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    mine = counted(trials)
    complete = [t for t in mine if t.state == TrialState.COMPLETE]
    pruned = sum(t.state == TrialState.PRUNED for t in mine)
    failed = sum(t.state == TrialState.FAIL for t in mine)
    best = max(complete, key=lambda t: t.value or -math.inf) if complete else None
    summary = StudySummary(
        cell=cell,
        study=study.study_name,
        complete=len(complete),
        pruned=pruned,
        failed=failed,
        best_value=best.value if best else None,
        best_params=dict(best.params) if best else {},
        best_trial=best.number if best else None,
        parent_run_id=parent.run_id,
        interrupted=interrupted,
    )
    try:
        metrics = {"trials_complete": len(complete), "trials_pruned": pruned, "trials_failed": failed}
        if best is not None:
            metrics.update(best_val_acc=float(best.value), best_lr=best.params["lr"])
            metrics["best_batch_size"] = float(best.params["batch_size"])
            parent.client.set_tag(parent.run_id, "optuna.best_trial", str(best.number))
            parent.client.set_tag(parent.run_id, "optuna.best_params", json.dumps(best.params))
        parent.log_metrics(metrics, step=len(trials))
        _log_study_artifacts(study, parent, summary)
    finally:
        done = (
            target is not None
            and len(mine) >= target
            and not any(t.state == TrialState.RUNNING for t in mine)
        )
        if interrupted:
            parent.end("KILLED", "interrupted; run tlbench tune again to continue the study")
        else:
            parent.end("FINISHED" if done or target is None else "KILLED", "")
    return summary


def _log_study_artifacts(study: optuna.Study, parent: CellRun, summary: StudySummary) -> None:
    """best_params.json, trials.csv and Optuna's matplotlib plots (those the trials allow)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna.visualization.matplotlib as ovm

    with tempfile.TemporaryDirectory(prefix="tlbench-study-") as tmp:
        d = Path(tmp)
        best = {
            "study": summary.study,
            "cell": summary.cell.name,
            "best_trial": summary.best_trial,
            "best_val_acc": summary.best_value,
            "params": summary.best_params,
        }
        (d / "best_params.json").write_text(json.dumps(best, indent=2))
        df = study.trials_dataframe(attrs=("number", "value", "params", "state", "duration", "user_attrs"))
        df.to_csv(d / "trials.csv", index=False)
        plots: dict[str, Callable[[], Any]] = {
            "optimization_history": lambda: ovm.plot_optimization_history(study),
            "intermediate_values": lambda: ovm.plot_intermediate_values(study),
            "param_importances": lambda: ovm.plot_param_importances(study),
            "slice": lambda: ovm.plot_slice(study, params=["lr", "batch_size"]),
            "contour_lr_batch_size": lambda: ovm.plot_contour(study, params=["lr", "batch_size"]),
        }
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "experimental" and too-few-trials warnings
            for name, make in plots.items():
                try:
                    ax = make()
                except Exception:  # e.g. importances need two complete trials with varied params
                    continue
                fig = _figure_of(ax)
                if fig is not None:
                    fig.savefig(d / f"{name}.png", dpi=90, bbox_inches="tight")
                    plt.close(fig)
        parent.client.log_artifacts(parent.run_id, str(d))


def _figure_of(ax: Any) -> Any:
    import numpy as np

    first = np.ravel(ax)[0] if isinstance(ax, np.ndarray) else ax
    return getattr(first, "figure", None)


def study_status(cell: Cell, storage_url: str | None = None) -> StudySummary | None:
    """Counts and best trial of the cell's study as stored now (None if it has no study)."""
    import optuna
    from optuna.trial import TrialState

    try:
        study = optuna.load_study(study_name=study_name(cell), storage=open_storage(storage_url))
    except KeyError:
        return None
    mine = counted(study.get_trials(deepcopy=False))
    complete = [t for t in mine if t.state == TrialState.COMPLETE]
    best = max(complete, key=lambda t: t.value or -math.inf) if complete else None
    return StudySummary(
        cell=cell,
        study=study.study_name,
        complete=len(complete),
        pruned=sum(t.state == TrialState.PRUNED for t in mine),
        failed=sum(t.state == TrialState.FAIL for t in mine),
        best_value=best.value if best else None,
        best_params=dict(best.params) if best else {},
        best_trial=best.number if best else None,
        parent_run_id=study.user_attrs.get(PARENT_RUN_ATTR),
    )


def best_params(cell: Cell, storage_url: str | None = None) -> dict[str, Any] | None:
    """The best COMPLETE trial of the cell's study: lr, batch_size, trial, value; None if no study
    or no complete trial yet."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(storage_url)
    try:
        study = optuna.load_study(study_name=study_name(cell), storage=storage)
    except KeyError:
        return None
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        return None
    best = max(complete, key=lambda t: t.value or -math.inf)
    return {
        "lr": float(best.params["lr"]),
        "batch_size": int(best.params["batch_size"]),
        "trial": best.number,
        "value": float(best.value or 0.0),
        "study": study.study_name,
    }
