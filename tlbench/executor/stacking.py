"""Which cells train together as one stack of probe heads, and running a stack.

Cells that train only a head on cached features (an SGD ``linear_probe`` with a deterministic
augmentation) and read the same feature-store entries differ only in what trains the head:
``stack_key`` says which those are, from the cells alone (a pure function, cheap enough for the
schedule to ask of every pending cell). The schedule hands a worker a group of them
(``Schedule.next_stack``) and ``run_stack`` trains it as one stack (``train.stacked``): every cell
keeps its own claim, MLflow run, params, metrics, checkpoint and outcome, and ends exactly as it
would alone (bit for bit on the CPU). A killed stack leaves each of its runs KILLED with its
checkpoint; the next ``tlbench run`` continues them, stacked again or alone, to the same result.

Not stacked: raced cells (``--race`` pauses each cell at its own rungs), tuning trials (Optuna
proposes each trial from the finished ones), an out-of-memory retry, a cell whose head has
dropout (its draws come from the process's RNG, which heads would share), the L-BFGS probe
(one sweep, no epochs) and every strategy that trains more than the head; ``--no-stack`` turns it
off. The Ray backend runs every cell as its own task.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Container
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tlbench.catalog.datasets import AUGMENTATIONS
from tlbench.catalog.strategies import phases_for
from tlbench.cells import Cell
from tlbench.executor.oom import simulate as simulate_oom
from tlbench.executor.options import RunOptions
from tlbench.executor.runner import (
    CellOutcome,
    Task,
    _ended,
    _open_run,
    _train,
    claim_cell,
    load_cell_data,
    resolve_weights,
)
from tlbench.tracking import CellRun, Claim, Tracker

# settings each head of a stack may have of its own: they change how the head trains, never
# which features it reads nor the shape of its epochs
PER_HEAD = frozenset(
    {
        "lr",
        "lr_scale",
        "weight_decay",
        "schedule",
        "warmup_epochs",
        "step_size",
        "gamma",
        "min_lr",
        "label_smoothing",
        "seed",
        "data_seed",
    }
)


def stack_key(cell: Cell) -> str | None:
    """What a cell shares with the cells it may be stacked with, or None if it trains alone.

    A stack's cells read the same features (backbone, weights and their source, dataset, its
    size, image size, transform, eval batch, precision) and step in lockstep (epochs, batch size,
    head); they may differ in optimizer, lr, weight decay, schedule, label smoothing and seed
    (each seed draws its own rows and order: a per-head gather). A random-init backbone is
    another backbone for every seed. Whether the features really are one entry is checked again
    when the stack is built; a cell that differs there trains alone.
    """
    if cell.strategy.name != "linear_probe" or AUGMENTATIONS.get(cell.augmentation.name).random:
        return None
    phases = phases_for(cell.strategy.name, cell.strategy.params, cell.train)
    phase = phases[0]
    if len(phases) != 1 or phase.trainable != "head" or phase.solver != "sgd" or phase.adapt_bn or phase.l2sp:
        return None
    if cell.train.head.dropout > 0:
        return None
    train = cell.train.model_dump(mode="json", exclude=set(PER_HEAD))
    shared = {
        "dataset": [cell.dataset.name, cell.dataset.params],
        "backbone": [cell.backbone.name, cell.backbone.model_kwargs, str(cell.weights), cell.depends_on_id],
        "augmentation": cell.augmentation.name,
        "train": train,
        # each seed builds its own random init: no features to share across seeds
        "seed": cell.train.seed if cell.weights.kind == "none" else None,
    }
    return json.dumps(shared, sort_keys=True, default=str)


def stackable(task: Task, options: RunOptions, raced: Container[str] = ()) -> str | None:
    """The task's stack key, or None: it runs alone (stacking off, features not cached, raced, a
    retry at half the batch, a rung)."""
    if (
        not options.stack
        or not options.cache_features
        or options.race is not None
        and task.cell.name in raced
    ):
        return None
    if task.fresh_process or task.params or task.tags or task.pause_at is not None:
        return None
    return stack_key(task.cell)


def announce(cells: list[Cell]) -> str:
    c = cells[0]
    return f"stacked {len(cells)} probe heads on {c.labels['backbone']}/{c.labels['dataset']}"


class _Share:
    """A stack's ``time.<phase>_s``, as one cell's share of them."""

    def __init__(self, times: Any, n: int):
        self.times, self.n = times, max(n, 1)

    def metrics(self) -> dict[str, float]:
        return {k: v / self.n for k, v in self.times.metrics().items()}


@dataclass
class _Open:
    """A cell of the stack with its claim, run and checkpoint."""

    task: Task
    held: Claim | None
    run: CellRun
    ckpt: Any
    ended: bool = False

    def end(self, err: BaseException, share: _Share | None) -> CellOutcome:
        """The run ended for ``err`` as ``run_cell`` ends it (Ctrl-C: KILLED, and passed on)."""
        self.ended = True
        return _ended(self.task.cell, self.run, err, self.cleanup, self.release, times=share)

    def release(self) -> None:
        if self.held is not None:
            self.held.release()

    def cleanup(self) -> None:
        self.ckpt.remove()
        self.release()


def run_stack(
    tasks: list[Task],
    tracker: Tracker,
    options: RunOptions,
    *,
    reporter: Any = None,
    background_finish: bool = False,
    on_run: Callable[[Cell, str, str | None], None] | None = None,
) -> list[CellOutcome]:
    """Train ``tasks`` as one stack; one outcome per task, in order, each as ``run_cell`` gives
    it: claimed one by one (a cell finished or held elsewhere is skipped as alone), each its own
    run. ``on_run(cell, run_id, claim_id)`` as each run exists. Ctrl-C marks every run of the stack
    KILLED (checkpoints kept) and passes on."""
    from tlbench.train.timings import CellTimes, timing

    times = CellTimes()
    with timing(times):
        return _run_stack(tasks, tracker, options, times, reporter, background_finish, on_run)


def _run_stack(
    tasks: list[Task],
    tracker: Tracker,
    options: RunOptions,
    times: Any,
    reporter: Any,
    background_finish: bool,
    on_run: Callable[[Cell, str, str | None], None] | None,
) -> list[CellOutcome]:
    outcomes: dict[str, CellOutcome] = {}
    opened = _open_all(tasks, tracker, options, outcomes, on_run)
    share = _Share(times, len(opened))
    try:
        if opened:
            with tempfile.TemporaryDirectory(prefix="tlbench-src-") as tmp:
                results = _fit(opened, tracker, options, reporter, Path(tmp), share, outcomes)
            for o, r in results:
                outcomes[o.task.cell.name] = _close(
                    o, r, tracker, options, reporter, background_finish, share
                )
    except BaseException as err:  # Ctrl-C: every run of the stack still open ends KILLED
        _end_all(opened, err, share)
        raise
    return [outcomes[t.cell.name] for t in tasks]


def _open_all(
    tasks: list[Task],
    tracker: Tracker,
    options: RunOptions,
    outcomes: dict[str, CellOutcome],
    on_run: Callable[[Cell, str, str | None], None] | None,
) -> list[_Open]:
    """Claim each cell and open (or reopen) its run, as ``run_cell`` does; a cell finished or
    held elsewhere gets its outcome at once. A run that cannot be opened ends the stack's open
    ones FAILED and passes the error on, as it would alone."""
    from tlbench.train.checkpoint import Checkpointer, checkpoint_root
    from tlbench.train.timings import timed

    opened: list[_Open] = []
    for task in tasks:
        with timed("claim"):
            held, skipped = claim_cell(tracker, options, task.cell)
        if skipped is not None:
            outcomes[task.cell.name] = skipped
            continue
        try:
            with timed("open"):
                run = _open_run(task.cell, tracker, options, None, task.params, task.tags)
        except BaseException as err:
            if held is not None:
                held.release()
            _end_all(opened, err)
            raise
        ckpt = Checkpointer(checkpoint_root(options.checkpoint_dir) / run.run_id, task.cell.id)
        opened.append(_Open(task, held, run, ckpt))
        if on_run is not None:
            on_run(task.cell, run.run_id, held.run_id if held is not None else None)
    return opened


def _fit(
    opened: list[_Open],
    tracker: Tracker,
    options: RunOptions,
    reporter: Any,
    tmp: Path,
    share: _Share,
    outcomes: dict[str, CellOutcome],
) -> list[tuple[_Open, Any]]:
    """Each open cell with its ``Result``, its error, or ``Unstackable``."""
    from tlbench.train.stacked import Member, fit_stack
    from tlbench.train.timings import timed

    members: list[tuple[_Open, Member]] = []
    weights: Path | None = None
    for o in opened:
        cell = o.task.cell
        try:
            with timed("weights"):  # every run names the source its weights came from
                path = resolve_weights(cell, tracker, options.experiment_id, o.run, tmp)
            weights = weights or path
            with timed("data"):
                data = load_cell_data(cell, options.data_dir)
            simulate_oom(cell)
        except Exception as err:  # this cell fails as it would alone; the stack goes on
            outcomes[cell.name] = o.end(err, share)
            continue
        members.append((o, Member(cell, data, o.run, o.ckpt)))
    if not members:
        return []
    try:
        results = fit_stack(
            [m for _, m in members], weights_file=weights, device=options.device, progress=reporter
        )
    except Exception as err:  # a fault of the stack itself: each of its cells fails with it
        results = [err] * len(members)
    return [(o, r) for (o, _), r in zip(members, results, strict=True)]


def _close(
    o: _Open,
    result: Any,
    tracker: Tracker,
    options: RunOptions,
    reporter: Any,
    background_finish: bool,
    share: _Share,
) -> CellOutcome:
    """The cell's run finished with its result, ended with its error, or trained alone."""
    from tlbench.train.stacked import Unstackable
    from tlbench.train.timings import timed

    cell = o.task.cell
    if isinstance(result, Unstackable):
        try:
            result = _train(cell, tracker, options, o.run, reporter, o.ckpt, None)
        except BaseException as err:
            return o.end(err, share)
    if isinstance(result, BaseException):
        return o.end(result, share)
    o.ended = True
    with timed("finish"):
        pending = o.run.finish(result, background=background_finish, then=o.cleanup, times=share)
    return CellOutcome(cell, "FINISHED", o.run.run_id, result.final_metrics(), pending=pending)


def _end_all(opened: list[_Open], err: BaseException, share: _Share | None = None) -> None:
    """End every run of the stack not ended yet for ``err`` (KILLED, checkpoint kept, on Ctrl-C)."""
    for o in opened:
        if o.ended:
            continue
        try:
            o.end(err, share)
        except BaseException:  # Ctrl-C is passed on once the run is KILLED: after all of them
            continue


def stack_in_worker(
    tasks: list[Task], tracker: Tracker, options: RunOptions, events: Any, slot: int, reporter: Any
) -> None:
    """A pool worker's stack: its parent hears of each run as it opens and of each outcome."""
    outcomes = run_stack(
        tasks,
        tracker,
        options,
        reporter=reporter,
        on_run=lambda cell, run_id, claim_id: events.put(("run", slot, run_id, claim_id, cell.name)),
    )
    for outcome in outcomes:
        outcome.pending = None
        events.put(("done", slot, outcome))
