"""The one policy every executor follows (sequential, worker pool, Ray): decided once, here.

- **Finished cells are skipped** (a FINISHED run with the same cell id and variant), unless
  ``force``; stale RUNNING runs (their process is gone) are marked KILLED first.
- **A ``cell:`` source runs first**; a cell whose source failed fails with that reason instead of
  training from nothing.
- **A cell another live process holds** (another ``tlbench run``, another machine) is left to it
  (↷ ``running elsewhere``; the run still exits 0), unless a cell of this run needs it as its
  ``cell:`` source, or the holder is an earlier attempt of this same run (a Ray task retried
  after its node died): then it is waited for *in the driver*, never inside a worker slot or a
  Ray task. Once its claim ends, its FINISHED run counts as done, a FAILED one as failed, and one
  left KILLED or stale is taken over and resumed from its checkpoint.
- **CUDA out of memory** (``oom``): the same cell again, at half the batch size (down to 1), in a fresh
  process (no fragmented CUDA memory), as a new run with param ``oom_batch_size_from`` (what the
  grid asked) and tag ``tlbench.oom_retry``.
- **A worker that died** (segfault, SIGKILL, the kernel's OOM killer): its run is marked KILLED,
  its claim freed, and the cell retried up to ``retries`` times, resuming from its checkpoint;
  then FAILED with the reason.
- **Racing** (``options.race``): raced cells train rung by rung and configurations beaten with
  confidence are dropped (``tlbench.executor.racing``); a rung is a barrier per group only.
- **Cells with one id run once**: differently named cells whose settings are identical (an
  L-BFGS probe under each optimizer of the axis: it ignores them) share an id; the first is
  trained, the others take its outcome ("same cell as ...").
- **Probe cells that share features train as one stack** (``tlbench.executor.stacking``): a
  worker is handed the pending cells its next cell can be stacked with (``next_stack``), split
  evenly between the workers free to take them; each keeps its own claim, run and outcome.
- **One line per outcome**: ✓ finished, ↷ skipped, ✗ failed, ⏸ paused at a rung, ✂ raced out.
"""

from __future__ import annotations

import contextlib
import math
from collections import deque
from collections.abc import Callable
from typing import Any

from tlbench.cells import Cell
from tlbench.executor.oom import OOM_PARAM as OOM_PARAM  # re-exported: decided in executor/oom.py
from tlbench.executor.oom import halved, retries_at_half_batch
from tlbench.executor.options import RunOptions
from tlbench.executor.racing import DROPPED, Race
from tlbench.executor.runner import OWN_ATTEMPT, CellOutcome, Task
from tlbench.executor.stacking import announce, stackable
from tlbench.tracking import Tracker, tags


def outcome_line(outcome: CellOutcome, seconds: float | None = None) -> str:
    """The line a user sees for a cell, the same from every executor."""
    c, m = outcome.cell, outcome.metrics
    if outcome.status == "FINISHED":
        took = f"  {seconds:.1f}s" if seconds is not None else ""
        return f"[green]✓[/] {c.name}  test_acc {m['test_acc']:.4f}  best_val {m['best_val_acc']:.4f}{took}"
    if outcome.status == "SKIPPED":
        return f"[yellow]↷[/] {c.name}  {outcome.reason}"
    if outcome.status == "PAUSED":
        return f"[cyan]⏸[/] {c.name}  {outcome.reason} (best val {m['race_val_acc']:.4f})"
    if outcome.status == DROPPED:
        return f"[magenta]✂[/] {c.name}  {outcome.reason}"
    return f"[red]✗[/] {c.name}  {outcome.status}: {outcome.reason}"


def twin_outcome(cell: Cell, of: CellOutcome) -> CellOutcome:
    """A cell with the same id as ``of``'s (identical settings): its outcome is that one."""
    same = f"same cell as {of.cell.name} (identical settings, one run)"
    if of.done:
        return CellOutcome(cell, "SKIPPED", of.run_id, dict(of.metrics), f"finished: {same}")
    return CellOutcome(cell, of.status, of.run_id, dict(of.metrics), f"{same}: {of.reason}")


def reap_stale_runs(tracker: Tracker, experiment_id: str, say: Callable[[str], None]) -> None:
    """Before anything runs: RUNNING runs whose process is gone (its PID on this host, or no
    heartbeat: ``Tracker.reap_stale``) are marked KILLED."""
    reaped = tracker.reap_stale(experiment_id)
    if reaped:
        say(f"[yellow]marked {len(reaped)} run(s) KILLED whose process is gone (its pid or its heartbeat)[/]")


class Schedule:
    """Which cell runs next, and what each outcome means; backends only say where cells run.

    ``say`` prints a line (the backend's console). Backends loop: ``next_task`` → run it (in a
    fresh process when ``task.fresh_process``) → ``record``; ``poll_elsewhere`` while idle.
    """

    def __init__(self, cells: list[Cell], tracker: Tracker, options: RunOptions, say: Callable[[str], None]):
        self.cells, self.tracker, self.options, self.say = cells, tracker, options, say
        reap_stale_runs(tracker, options.experiment_id, say)
        finished = {} if options.force else tracker.finished_runs(options.experiment_id, options.variant)
        self.outcomes: dict[str, CellOutcome] = {}
        self.pending: deque[Task] = deque()
        self.running: set[str] = set()
        self.elsewhere: dict[str, Task] = {}
        self.twins: dict[str, list[Cell]] = {}  # a cell's name -> later cells with its id
        first: dict[str, str] = {}
        for cell in cells:
            run = finished.get(cell.id)
            if run is not None:
                self.outcomes[cell.name] = CellOutcome(
                    cell, "SKIPPED", run.info.run_id, dict(run.data.metrics), "finished"
                )
            elif cell.id in first:
                self.twins.setdefault(first[cell.id], []).append(cell)
            else:
                first[cell.id] = cell.name
                self.pending.append(Task(cell))
        self.race: Race | None = None
        if options.race is not None:
            twins = {c.name for group in self.twins.values() for c in group}
            self.race = Race(
                [c for c in cells if c.name not in twins],
                options.race,
                tracker,
                options.experiment_id,
                options.variant,
                options.force,
            )
            self.pending = deque(t for t in self.pending if t.cell.name not in self.race)
            self.pending.extend(self.race.start())
            self._take_dropped()
        self.skipped_before = len(self.outcomes)

    # ------------------------------------------------------------------------------------------
    @property
    def active(self) -> bool:
        return bool(self.pending or self.running or self.elsewhere)

    def counts(self) -> dict[str, int]:
        states = [o.status for o in self.outcomes.values()]
        return {
            "running": len(self.running),
            "done": states.count("FINISHED"),
            "failed": states.count("FAILED"),
            "dropped": states.count(DROPPED),
            "waiting": len(self.elsewhere),
        }

    def results(self) -> list[CellOutcome]:
        return [self.outcomes[c.name] for c in self.cells if c.name in self.outcomes]

    # ------------------------------------------------------------------------------------------
    def _source_state(self, task: Task) -> str | None:
        """'' when the task can run now, None when it must wait, or why it cannot run."""
        dep = task.cell.depends_on
        if not dep:
            return ""
        source = self.outcomes.get(dep)
        if source is None:
            waiting = (
                dep in self.running or dep in self.elsewhere or any(t.cell.name == dep for t in self.pending)
            )
            return None if waiting else ""  # a source outside this batch: the run finds its checkpoint
        if source.done:
            return ""
        return f"source cell {dep!r} {source.status.lower()}: {source.reason}"

    def next_task(self) -> Task | None:
        """The first pending task whose source is done; dependents of a failed source fail here."""
        for task in list(self.pending):
            verdict = self._source_state(task)
            if verdict is None:
                continue
            self.pending.remove(task)
            if verdict:
                self._record(CellOutcome(task.cell, "FAILED", reason=verdict))
                continue
            self.running.add(task.cell.name)
            return task
        return None

    def next_stack(self, share: int = 1) -> list[Task]:
        """The next task and the pending tasks that can train with it as one stack of probe heads
        (``executor.stacking``; ready to run, as ``next_task`` picks them): ``[]`` when none is
        ready, ``[task]`` when it trains alone. ``share``: the workers about to take a stack now,
        each given its part of the group."""
        task = self.next_task()
        if task is None:
            return []
        raced = self.race if self.race is not None else ()
        key = stackable(task, self.options, raced)
        if key is None:
            return [task]
        peers = [
            t
            for t in self.pending
            if stackable(t, self.options, raced) == key and self._source_state(t) == ""
        ]
        peers = peers[: math.ceil((1 + len(peers)) / max(share, 1)) - 1]
        for t in peers:
            self.pending.remove(t)
            self.running.add(t.cell.name)
        if peers:
            self.say(announce([task.cell] + [t.cell for t in peers]))
        return [task, *peers]

    def record(self, task: Task, outcome: CellOutcome, seconds: float | None = None) -> None:
        """Apply the policy to a cell's outcome: retry at half the batch, wait, or report it."""
        self.running.discard(task.cell.name)
        if retries_at_half_batch(task, outcome):
            retry = halved(task)
            bs, half = task.cell.train.batch_size, retry.cell.train.batch_size
            self.say(f"[yellow]{task.cell.name}: out of memory at batch size {bs}; retrying with {half}[/]")
            self.pending.appendleft(retry)
        elif outcome.status == "SKIPPED" and (outcome.reason == OWN_ATTEMPT or self._needed(task)):
            why = "its earlier attempt" if outcome.reason == OWN_ATTEMPT else "running in another process"
            self.say(f"  waiting for {task.cell.name} ({why})")
            self.elsewhere[task.cell.name] = task
        elif outcome.status == "PAUSED":
            self.say(outcome_line(outcome, seconds))
            self._raced(outcome)
        else:
            self._record(outcome, seconds)

    def _needed(self, task: Task) -> bool:
        """Is the cell (held elsewhere) the ``cell:`` source of a cell this run still has to train?"""
        name = task.cell.name
        return any(t.cell.depends_on == name for t in self.pending)

    def _record(self, outcome: CellOutcome, seconds: float | None = None) -> None:
        self.outcomes[outcome.cell.name] = outcome
        self.say(outcome_line(outcome, seconds))
        if outcome.status != DROPPED:
            self._raced(outcome)
        for twin in self.twins.pop(outcome.cell.name, []):
            self._record(twin_outcome(twin, outcome))

    def _raced(self, outcome: CellOutcome) -> None:
        """A raced cell came back: its group's next rung may start, and configurations drop."""
        if self.race is None or outcome.cell.name not in self.race:
            return
        self.pending.extend(self.race.on_outcome(outcome))
        self._take_dropped()

    def _take_dropped(self) -> None:
        assert self.race is not None
        while self.race.dropped:
            self._record(self.race.dropped.pop(0))

    # ------------------------------------------------------------------------------------------
    def poll_elsewhere(self) -> None:
        """Cells held elsewhere whose claim ended: done, failed, or taken over here."""
        opts = self.options
        for name, task in list(self.elsewhere.items()):
            if self.tracker.is_claimed(opts.experiment_id, task.cell.id, opts.variant):
                continue
            del self.elsewhere[name]
            newest = self._newest_run(task.cell)
            status = newest.info.status if newest is not None else None
            if status == "FINISHED":
                metrics = dict(newest.data.metrics)
                self._record(CellOutcome(task.cell, "SKIPPED", newest.info.run_id, metrics, "finished"))
            elif status == "FAILED":
                reason = newest.data.tags.get(tags.REASON, "failed in another process").splitlines()[0]
                self._record(CellOutcome(task.cell, "FAILED", newest.info.run_id, reason=reason))
            else:  # its process died: continue it here from its checkpoint
                self.pending.appendleft(task)

    def _newest_run(self, cell: Cell) -> Any | None:
        return self.tracker.newest_run(self.options.experiment_id, cell.id, self.options.variant)

    # ------------------------------------------------------------------------------------------
    def worker_died(
        self, task: Task, why: str, run_id: str | None, claim_id: str | None, retries: int
    ) -> None:
        """A worker process died mid-cell: free its claim, end its run, retry or give up."""
        if claim_id:
            self.tracker.drop_claim(claim_id)
        self.running.discard(task.cell.name)
        task.attempts += 1
        final = task.attempts > retries
        if run_id:
            with contextlib.suppress(Exception):
                reason = why if not final else f"{why}; gave up after {task.attempts} attempts"
                self.tracker.end_run(run_id, "FAILED" if final else "KILLED", reason)
        if final:
            self._record(CellOutcome(task.cell, "FAILED", run_id, reason=f"{why}, {task.attempts} times"))
        else:
            self.say(f"[yellow]{task.cell.name}: {why}; retry {task.attempts}/{retries}[/]")
            self.pending.appendleft(task)
