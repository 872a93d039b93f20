"""Run cells in worker processes: one per GPU (pinned with ``CUDA_VISIBLE_DEVICES``), ``k`` per
GPU with ``--cells-per-gpu k``, or ``N`` on the CPU with the cores split between them.

Workers pull the next ready cell and run it with the same ``run_cell`` as every executor; what
an outcome means (a retry at half the batch, a cell held elsewhere, a dead worker's retries) is
the shared policy (``tlbench.executor.policy``). A worker that dies (segfault, SIGKILL,
OOM-kill) is replaced; other cells keep running throughout. This module is the parent's side;
what runs inside a worker is ``tlbench.executor.worker``.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import time
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from tlbench.cells import Cell
from tlbench.executor import forkserver
from tlbench.executor.options import RunOptions
from tlbench.executor.policy import Schedule, Task
from tlbench.executor.runner import CellOutcome
from tlbench.executor.worker import Slot, worker_main
from tlbench.interrupts import Terminated
from tlbench.tracking import Tracker, heartbeat_interval


def visible_gpus() -> list[str]:
    """CUDA devices this process may use (respects an outer ``CUDA_VISIBLE_DEVICES``)."""
    import torch

    if not torch.cuda.is_available():
        return []
    outer = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = [d.strip() for d in outer.split(",") if d.strip()] if outer else []
    n = torch.cuda.device_count()
    return ids[:n] if ids else [str(i) for i in range(n)]


def plan_slots(workers: str | int, cells_per_gpu: int = 1, gpus: list[str] | None = None) -> list[Slot]:
    """``auto``: one worker per GPU (times ``cells_per_gpu``), or one on a machine without GPUs;
    ``N``: N workers, spread over the GPUs, or sharing the CPU cores."""
    gpus = visible_gpus() if gpus is None else gpus
    if str(workers) == "auto":
        n = len(gpus) * cells_per_gpu if gpus else 1
    else:
        n = int(workers)
        if n < 1:
            raise ValueError(f"--workers must be auto or at least 1, got {workers}")
    cores = os.cpu_count() or 1
    if gpus:
        return [Slot(i, gpus[(i // cells_per_gpu) % len(gpus)], max(1, cores // n)) for i in range(n)]
    return [Slot(i, None, max(1, cores // n)) for i in range(n)]


@dataclass
class _Worker:
    slot: Slot
    proc: Any
    tasks: Any
    task: Task | None = None
    run_id: str | None = None
    claim_id: str | None = None
    used: bool = False  # has run a cell: not fresh any more
    stack: dict[str, Task] = field(default_factory=dict)  # a stack's cells still running, by name
    stack_runs: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)  # run, claim
    started: float = field(default_factory=time.time)


def _start_worker(ctx: Any, slot: Slot, events: Any, options: RunOptions) -> _Worker:
    tasks = ctx.Queue()
    proc = ctx.Process(
        target=worker_main,
        args=(slot, tasks, events, options, dict(os.environ)),
        name=f"tlbench-w{slot.index}",
    )
    proc.start()
    return _Worker(slot, proc, tasks)


def _stop_worker(w: _Worker) -> None:
    with contextlib.suppress(Exception):
        w.tasks.put(None)
    w.proc.join(timeout=30)
    if w.proc.is_alive():
        w.proc.kill()
        w.proc.join(timeout=10)


def describe_exit(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


class Pool:
    """Worker processes fed from a ``Schedule``, with one progress row per worker."""

    def __init__(self, slots: list[Slot], options: RunOptions, schedule: Schedule, progress: Progress):
        self.ctx = forkserver.context()
        self.events = self.ctx.Queue()
        self.options, self.schedule, self.progress = options, schedule, progress
        self.overall: TaskID = progress.add_task("cells", total=len(schedule.cells))
        self.rows = {s.index: progress.add_task(f"  w{s.index} idle", total=1) for s in slots}
        self.workers = {s.index: _start_worker(self.ctx, s, self.events, options) for s in slots}
        self.summarize()

    def summarize(self) -> None:
        """The overall bar's label: cells running, done and failed across all workers."""
        n = self.schedule.counts()
        waiting = f" · {n['waiting']} held elsewhere" if n["waiting"] else ""
        self.progress.update(
            self.overall,
            completed=len(self.schedule.outcomes),
            description=f"cells: {n['running']} running · {n['done']} done · {n['failed']} failed{waiting}",
        )

    def _idle_row(self, w: _Worker) -> None:
        self.progress.update(
            self.rows[w.slot.index], description=f"  w{w.slot.index} idle", completed=0, total=1
        )

    def dispatch(self) -> None:
        free = sum(w.task is None and w.proc.is_alive() for w in self.workers.values())
        for index, w in list(self.workers.items()):
            if w.task is not None or not w.proc.is_alive():
                continue
            tasks = self.schedule.next_stack(share=free)  # a group of probe cells: split between the free
            free -= 1
            if not tasks:
                return
            task = tasks[0]
            if task.fresh_process and w.used:  # after an out-of-memory error: no fragmented memory
                _stop_worker(w)
                w = self.workers[index] = _start_worker(self.ctx, w.slot, self.events, self.options)
            w.task, w.run_id, w.claim_id, w.used, w.started = task, None, None, True, time.time()
            w.stack, w.stack_runs = ({t.cell.name: t for t in tasks} if len(tasks) > 1 else {}), {}
            w.tasks.put(tasks if w.stack else task)
            more = f" + {len(tasks) - 1} stacked" if w.stack else ""
            self.progress.update(
                self.rows[index], description=f"  w{index} {task.cell.name}{more}", completed=0, total=1
            )
            self.summarize()

    def drain(self, timeout: float = 0.2) -> None:
        try:
            event = self.events.get(timeout=timeout) if timeout else self.events.get_nowait()
        except queue.Empty:
            return
        while True:
            self._handle(event)
            try:
                event = self.events.get_nowait()
            except queue.Empty:
                return

    def _handle(self, event: tuple) -> None:
        kind, slot = event[0], event[1]
        w = self.workers.get(slot)
        if w is None:
            return
        row = self.rows[slot]
        if kind == "run":
            w.run_id, w.claim_id = event[2], event[3]
            if len(event) == 5:  # one run of a stack, by its cell's name
                w.stack_runs[event[4]] = (event[2], event[3])
        elif kind == "start":
            self.progress.update(row, total=event[2], completed=0)
        elif kind == "epoch":
            name = w.task.cell.name if w.task else ""
            self.progress.update(
                row, completed=event[2], description=f"  w{slot} {name}  val_acc {event[3]:.3f}"
            )
        elif kind == "done" and w.task is not None:
            task = w.stack.pop(event[2].cell.name) if w.stack else w.task  # one cell of a stack
            if not w.stack:
                w.task = None
                self._idle_row(w)
            self.schedule.record(task, event[2], time.time() - w.started)
            self.summarize()

    def check_dead(self, retries: int) -> None:
        """A worker that died: replaced; a cell it was running goes to the policy."""
        for index, w in list(self.workers.items()):
            if w.proc.is_alive():
                continue
            if w.task is not None:
                self.drain(timeout=0)  # its last events (a 'done' may be among them)
            if w.task is not None:
                why = f"worker died ({describe_exit(w.proc.exitcode)})"
                for task in list(w.stack.values()) or [w.task]:  # each cell of its stack, on its own
                    ids = (
                        w.stack_runs.get(task.cell.name, (None, None)) if w.stack else (w.run_id, w.claim_id)
                    )
                    self.schedule.worker_died(task, why, *ids, retries)
                w.task, w.stack = None, {}
            self.workers[index] = _start_worker(self.ctx, w.slot, self.events, self.options)
            self._idle_row(w)
            self.summarize()

    def busy(self) -> bool:
        return any(w.task is not None for w in self.workers.values())

    def interrupt(self, at_once: bool = False) -> None:
        """Ctrl-C / SIGTERM: workers mark their runs KILLED (checkpoints kept) and exit.

        A terminal's Ctrl-C reached the workers too: give them a moment before a second SIGINT could
        cut their cleanup short. SIGTERM reached only this process (``at_once``): pass it on now.
        """
        deadline = time.time() + (0 if at_once else 3)
        while time.time() < deadline and any(w.proc.is_alive() and w.task for w in self.workers.values()):
            time.sleep(0.1)
        for w in self.workers.values():
            if w.proc.is_alive() and w.task is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(w.proc.pid, signal.SIGINT)
        for w in self.workers.values():
            w.proc.join(timeout=60)

    def close(self) -> None:
        for w in self.workers.values():
            with contextlib.suppress(Exception):
                w.tasks.put(None)
        for w in self.workers.values():
            w.proc.join(timeout=30)
            if w.proc.is_alive():
                w.proc.kill()


def run_pool(
    cells: list[Cell],
    tracker: Tracker,
    options: RunOptions,
    *,
    workers: str | int = "auto",
    cells_per_gpu: int = 1,
    retries: int = 2,
    console: Console | None = None,
) -> list[CellOutcome]:
    """Run ``cells`` on a pool of worker processes; returns one outcome per cell, in cell order."""
    console = console or Console(stderr=True)
    slots = plan_slots(workers, cells_per_gpu)
    options = options.resolved()
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, refresh_per_second=4) as progress:
        schedule = Schedule(cells, tracker, options, progress.console.print)
        where = ", ".join(
            f"w{s.index}:{'gpu ' + s.gpu if s.gpu is not None else f'cpu×{s.threads}'}" for s in slots
        )
        progress.console.print(
            f"{len(slots)} workers ({where}); {len(schedule.pending)} cells to run, "
            f"{schedule.skipped_before} finished before"
        )
        if not schedule.pending:  # nothing to train: no worker processes to start and stop
            return schedule.results()
        slots = slots[: len(schedule.pending)]  # no more workers than cells
        pool = Pool(slots, options, schedule, progress)
        last_poll = 0.0
        try:
            while schedule.active:
                pool.dispatch()
                pool.drain()
                pool.check_dead(retries)
                if schedule.elsewhere and time.time() - last_poll > min(2.0, heartbeat_interval()):
                    schedule.poll_elsewhere()
                    last_poll = time.time()
        except KeyboardInterrupt as stop:
            pool.interrupt(at_once=isinstance(stop, Terminated))
            raise
        finally:
            pool.close()
    return schedule.results()


def run_in_fresh_process(task: Task, tracker: Tracker, options: RunOptions) -> CellOutcome:
    """One cell in a new process of its own (the sequential executor's out-of-memory retry)."""
    import torch

    ctx = forkserver.context()
    events = ctx.Queue()
    w = _start_worker(ctx, Slot(0, None, torch.get_num_threads()), events, options.resolved())
    w.tasks.put(task)
    w.tasks.put(None)
    run_id = claim_id = None
    try:
        while True:
            try:
                event = events.get(timeout=0.5)
            except queue.Empty:
                if not w.proc.is_alive():
                    why = f"worker died ({describe_exit(w.proc.exitcode)})"
                    with contextlib.suppress(Exception):
                        if claim_id:
                            tracker.drop_claim(claim_id)
                        if run_id:
                            tracker.end_run(run_id, "FAILED", why)
                    return CellOutcome(task.cell, "FAILED", run_id, reason=why)
                continue
            if event[0] == "run":
                run_id, claim_id = event[2], event[3]
            elif event[0] == "done":
                return event[2]
    finally:
        w.proc.join(timeout=30)
        if w.proc.is_alive():
            w.proc.kill()
