"""Run one cell end to end: resolve its inputs, open its MLflow run, ``fit``, close the run.

Every executor (sequential, pool workers, Ray tasks) and every tuning trial runs cells through
``run_cell``, so a cell behaves the same wherever it runs. Whatever happens, the run ends
FINISHED, FAILED or KILLED: never RUNNING. A tracking server that stayed away through all of
MLflow's retries ends it KILLED with that reason as soon as it answers again, from this process
if it lives, else from the next one (``CellRun.end_after_outage``); pending ends left by an
earlier process are delivered before each cell. What to do *about* an outcome (retry after an
out-of-memory error, wait for a cell held elsewhere) is the executors' shared policy
(``tlbench.executor.policy``), not this module's.
"""

from __future__ import annotations

import contextlib
import tempfile
import traceback
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from tlbench.cells import Cell
from tlbench.diskspace import DiskFullError
from tlbench.executor.oom import OOM_REASON as OOM_REASON  # re-exported: decided in executor/oom.py
from tlbench.executor.oom import simulate as simulate_oom
from tlbench.executor.options import RunOptions
from tlbench.tracking import CellRun, Claim, Tracker, tags
from tlbench.tracking.access import unreachable
from tlbench.tracking.cellrun import RunTakenOver
from tlbench.tracking.claims import holder_session
from tlbench.tracking.reaping import pending_folder, settle_pending

DISK_FULL_REASON = tags.DISK_FULL_REASON  # a FAILED run that resumes once space is freed
ELSEWHERE = "running elsewhere"  # another live process holds the cell's claim
OWN_ATTEMPT = "held by an earlier attempt of this run"  # e.g. a Ray task whose node died


@dataclass
class CellOutcome:
    cell: Cell
    status: str  # FINISHED | FAILED | KILLED | SKIPPED | STOPPED (ended early on purpose) | PAUSED (a rung)
    run_id: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    reason: str = ""
    pending: Future[None] | None = None  # artifacts still being written (background finish)

    @property
    def done(self) -> bool:
        """Does the cell have a FINISHED run (trained here, or found finished)?"""
        return self.status == "FINISHED" or (self.status == "SKIPPED" and self.reason.startswith("finished"))


@dataclass
class Task:
    """One cell to run, with what the policy added on the way (retries, a halved batch, a rung)."""

    cell: Cell
    attempts: int = 0  # worker deaths so far
    params: dict[str, Any] = field(default_factory=dict)  # logged beside the cell's params
    tags: dict[str, str] = field(default_factory=dict)
    fresh_process: bool = False  # after an out-of-memory error
    pause_at: int | None = None  # racing: pause after this many epochs (None: train to the end)


@dataclass(frozen=True)
class TrialRun:
    """Trial mode (a tuning trial): no claim, no checkpoint or resume, light artifacts, a nested
    run under the study's parent; an out-of-memory error is the trial's result, not retried."""

    parent_run_id: str
    run_name: str
    tags: dict[str, str] = field(default_factory=dict)


@lru_cache(maxsize=8)
def _load_cached(
    name: str, params_items: tuple, data_dir: str | None, seed: int, sizes: tuple, val: float
) -> Any:
    from tlbench.data import load_dataset

    return load_dataset(
        name, params=dict(params_items), data_dir=data_dir, seed=seed, val_fraction=val, **dict(sizes)
    )


def load_cell_data(cell: Cell, data_dir: str | Path | None) -> Any:
    """The cell's dataset splits; cached in-process so a grid loads each dataset once."""
    params = tuple(
        sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in cell.dataset.params.items())
    )
    t = cell.train
    seed = t.seed if t.data_seed is None else t.data_seed  # replicates resample the split unless held
    sizes = (("subset", t.subset), ("shots", t.shots), ("train_examples", t.train_examples))
    return _load_cached(
        cell.dataset.name, params, str(data_dir) if data_dir else None, seed, sizes, t.val_fraction
    )


def resolve_weights(cell: Cell, tracker: Tracker, experiment_id: str, run: CellRun, tmp: Path) -> Path | None:
    """The file a ``cell:`` or ``run:`` backbone starts from (downloaded from MLflow into
    ``tmp``); ``None`` for hub / file / random weights, which ``fit`` resolves itself."""
    from tlbench.catalog.strategies import STRATEGIES

    if not STRATEGIES.get(cell.strategy.name).pretrained:
        return None
    if cell.weights.kind == "cell":
        source = tracker.finished_run(experiment_id, cell.depends_on_id or "")
        if source is None:
            raise RuntimeError(
                f"source cell {cell.depends_on!r} has no FINISHED run; run it first "
                f"(tlbench run --select '{cell.depends_on}')"
            )
        run.set_tag(tags.SOURCE_RUN_ID, source.info.run_id)
        return tracker.download_checkpoint(source.info.run_id, tmp)
    if cell.weights.kind == "run":
        run.set_tag(tags.SOURCE_RUN_ID, cell.weights.value)
        return tracker.run_checkpoint(cell.weights.value, tmp)
    return None


def claim_cell(tracker: Tracker, options: RunOptions, cell: Cell) -> tuple[Claim | None, CellOutcome | None]:
    """This process's claim on the cell, or the outcome to report instead: finished, or held by
    a live process elsewhere (the driver decides whether to wait for it)."""
    held = tracker.claim(
        options.experiment_id, cell, options.variant, force=options.force, session=options.session
    )
    if held is not None:
        return held, None
    done = None if options.force else tracker.finished_run(options.experiment_id, cell.id, options.variant)
    if done is not None:
        return None, CellOutcome(cell, "SKIPPED", done.info.run_id, dict(done.data.metrics), "finished")
    holder = holder_session(tracker, options.experiment_id, cell.id, options.variant)
    own = bool(options.session) and holder == options.session
    return None, CellOutcome(cell, "SKIPPED", reason=OWN_ATTEMPT if own else ELSEWHERE)


def _open_run(
    cell: Cell,
    tracker: Tracker,
    options: RunOptions,
    trial: TrialRun | None,
    extra_params: dict[str, Any] | None,
    extra_tags: dict[str, str] | None,
) -> CellRun:
    """A trial's new nested run; a cell's KILLED run reopened when its checkpoint is there, else new."""
    from tlbench.train.checkpoint import Checkpointer, checkpoint_root

    params = {**options.params_for(cell.id), **(extra_params or {})}
    if trial is not None:
        return tracker.start_cell(
            options.experiment_id,
            cell,
            variant="trial",
            parent_run_id=trial.parent_run_id,
            run_name=trial.run_name,
            tags=trial.tags,
            params=params,
        )
    old = None if options.force else tracker.resumable_run(options.experiment_id, cell, options.variant)
    if (
        old is not None
        and Checkpointer(checkpoint_root(options.checkpoint_dir) / old.info.run_id, cell.id).exists()
    ):
        return tracker.reopen_cell(old, cell)
    return tracker.start_cell(
        options.experiment_id,
        cell,
        grid_file=options.grid_file,
        variant=options.variant,
        params=params,
        tags=extra_tags,
    )


def _train(
    cell: Cell,
    tracker: Tracker,
    options: RunOptions,
    run: CellRun,
    reporter: Any,
    ckpt: Any,
    pause_at: int | None,
) -> Any:

    from tlbench.train import MultiReporter, fit
    from tlbench.train.timings import timed

    with tempfile.TemporaryDirectory(prefix="tlbench-src-") as tmp:
        with timed("weights"):
            weights_file = resolve_weights(cell, tracker, options.experiment_id, run, Path(tmp))
        with timed("data"):
            data = load_cell_data(cell, options.data_dir)
        simulate_oom(cell)
        return fit(
            cell,
            data,
            weights_file=weights_file,
            reporter=MultiReporter(run, reporter),
            device=options.device,
            checkpoint=ckpt,
            pause_at=pause_at,
            **options.fit_options(),
        )


def run_cell(
    cell: Cell,
    tracker: Tracker,
    options: RunOptions,
    *,
    reporter: Any = None,
    trial: TrialRun | None = None,
    background_finish: bool = False,
    extra_params: dict[str, Any] | None = None,
    extra_tags: dict[str, str] | None = None,
    on_run: Callable[[str, str | None], None] | None = None,
    pause_at: int | None = None,
) -> CellOutcome:
    """Train one cell into its MLflow run and say how it ended.

    A cell is claimed first (exactly one process works on it); a KILLED run of it with a
    checkpoint is continued (same run, metrics go on) instead of starting a new one; the training
    state is checkpointed every epoch and dropped once the run is FINISHED. ``on_run(run_id,
    claim_id)`` is told as soon as the run exists (a pool's parent cleans up after dead workers).
    ``pause_at`` (a racing rung): stop after that many epochs, the run SCHEDULED and its
    checkpoint kept (outcome PAUSED, with the best validation accuracy so far).
    """
    from tlbench.train.timings import CellTimes, timing

    times = CellTimes()
    with timing(times):
        return _run_cell(
            cell,
            tracker,
            options,
            times,
            reporter,
            trial,
            background_finish,
            extra_params,
            extra_tags,
            on_run,
            pause_at,
        )


def _run_cell(
    cell: Cell,
    tracker: Tracker,
    options: RunOptions,
    times: Any,
    reporter: Any,
    trial: TrialRun | None,
    background_finish: bool,
    extra_params: dict[str, Any] | None,
    extra_tags: dict[str, str] | None,
    on_run: Callable[[str, str | None], None] | None,
    pause_at: int | None,
) -> CellOutcome:
    from tlbench.train.checkpoint import Checkpointer, checkpoint_root
    from tlbench.train.timings import timed

    pending = pending_folder(options.checkpoint_dir)
    if trial is None and pending.is_dir():  # ends an earlier process owed the server
        settle_pending(tracker, pending)
    with timed("claim"):
        held, skipped = claim_cell(tracker, options, cell) if trial is None else (None, None)
    if skipped is not None:
        return skipped

    def release() -> None:
        if held is not None:
            held.release()

    try:
        with timed("open"):
            run = _open_run(cell, tracker, options, trial, extra_params, extra_tags)
    except BaseException:
        release()
        raise
    run.pending_dir = pending
    ckpt = None if trial else Checkpointer(checkpoint_root(options.checkpoint_dir) / run.run_id, cell.id)
    if on_run is not None:
        on_run(run.run_id, held.run_id if held is not None else None)

    def cleanup() -> None:
        if ckpt is not None and not run.keeps_checkpoint:  # a full disk: resumed once space is freed
            ckpt.remove()
        release()

    claim_id = held.run_id if held is not None else None
    try:
        result = _train(cell, tracker, options, run, reporter, ckpt, pause_at)
    except BaseException as err:
        return _ended(cell, run, err, cleanup, release, times, claim_id)
    try:
        with timed("finish"):
            writing = run.finish(
                result, background=background_finish, light=trial is not None, then=cleanup, times=times
            )
    except Exception as err:
        if unreachable(err) is None and not isinstance(err, RunTakenOver):
            raise
        return _ended(cell, run, err, cleanup, release, times, claim_id)  # its checkpoint stays
    return CellOutcome(cell, "FINISHED", run.run_id, result.final_metrics(), pending=writing)


def _ended(
    cell: Cell,
    run: CellRun,
    err: BaseException,
    cleanup: Callable[[], None],
    release: Callable[[], None],
    times: Any = None,
    claim_run_id: str | None = None,
) -> CellOutcome:
    """The run of a cell that did not finish, ended with its reason; Ctrl-C passes on. After an
    outage: KILLED (resumed from its checkpoint next time), never FAILED, and a run another
    process took over meanwhile is left to it."""
    import torch

    from tlbench.train import NonFiniteLossError, RungReached, StopTraining

    if isinstance(err, RunTakenOver):
        run.fail("KILLED", str(err))  # writes nothing: stops this process's watchers only
        release()
        return CellOutcome(cell, "KILLED", run.run_id, reason=str(err))
    if isinstance(err, Exception) and unreachable(err) is not None:
        reason = run.end_after_outage(err, claim_run_id) or ""  # raises err if the server stays away
        release()
        return CellOutcome(cell, "KILLED", run.run_id, reason=reason)

    if isinstance(err, RungReached):  # a racing rung: the checkpoint stays for the next one
        with contextlib.suppress(Exception):  # where the rung's time went; the pause must happen
            run.log_times(times)
        run.pause(err.metrics(), f"epoch {err.epoch} of {cell.train.epochs}")
        release()
        return CellOutcome(cell, "PAUSED", run.run_id, err.metrics(), f"paused after epoch {err.epoch}")

    if isinstance(err, (KeyboardInterrupt, SystemExit)):
        run.fail("KILLED", "interrupted")  # its checkpoint stays: the next run continues it
        release()
        raise err
    if isinstance(err, DiskFullError):  # FAILED with the sentence; the checkpoint stays for a rerun
        reason = f"{DISK_FULL_REASON}: {err}"
        with contextlib.suppress(Exception):
            run.log_times(times)
        run.fail("FAILED", reason)
        release()
        return CellOutcome(cell, "FAILED", run.run_id, reason=reason)
    if isinstance(err, StopTraining):  # ended early on purpose (a pruned trial): not a failure
        run.end("FINISHED", str(err))
        cleanup()
        return CellOutcome(cell, "STOPPED", run.run_id, reason=str(err))
    if isinstance(err, NonFiniteLossError):
        status, reason, note = "FAILED", err.reason, f"{err.reason}: {err}"
    elif isinstance(err, torch.cuda.OutOfMemoryError):
        status, reason, note = "FAILED", OOM_REASON, f"{OOM_REASON}: {err}"
    elif isinstance(err, Exception):  # one bad cell must not stop the grid; the reason goes to the run
        reason = f"{type(err).__name__}: {err}"
        status, note = "FAILED", reason + "\n" + traceback.format_exc(limit=8)
    else:
        raise err
    with contextlib.suppress(Exception):  # where the failed attempt's time went, if it can be said
        run.log_times(times)
    run.fail(status, note)
    cleanup()
    return CellOutcome(cell, status, run.run_id, reason=reason)
