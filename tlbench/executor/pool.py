"""Run cells in worker processes: one per GPU (pinned with ``CUDA_VISIBLE_DEVICES``), ``k`` per
GPU with ``--cells-per-gpu k``, or ``N`` on the CPU with the cores split between them.

Workers pull the next ready cell (its ``cell:`` source done) and run it with the same
``run_cell`` as the sequential executor. A worker that dies (segfault, SIGKILL, OOM-kill) is
replaced; its run is marked KILLED and the cell retried up to ``retries`` times, resuming from its
last epoch's checkpoint, then recorded FAILED with the reason. A CUDA out-of-memory error is
retried in a fresh process with half the batch size. Other cells keep running throughout.
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing as mp
import os
import queue
import signal
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from tlbench.executor.cell import OOM_REASON, CellOutcome
from tlbench.grid import Cell
from tlbench.interrupts import Terminated
from tlbench.tracking import REASON_TAG, Tracker


@dataclass(frozen=True)
class Slot:
    """Where one worker runs: a GPU index (or None for the CPU) and its share of CPU threads."""

    index: int
    gpu: str | None
    threads: int


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
class _Task:
    cell: Cell
    attempts: int = 0  # worker deaths so far
    extra_params: dict[str, Any] | None = None
    extra_tags: dict[str, str] | None = None


@dataclass
class _Worker:
    slot: Slot
    proc: Any
    tasks: Any
    task: _Task | None = None
    run_id: str | None = None
    claim_id: str | None = None
    started: float = field(default_factory=time.time)


class _EventReporter:
    """A worker's ``fit`` progress, sent to the parent's display."""

    def __init__(self, events: Any, slot: int):
        self.events = events
        self.slot = slot
        self.epochs = 1

    def on_start(self, info: dict[str, Any]) -> None:
        self.epochs = sum(int(p.split(":")[1]) for p in str(info.get("phases", "x:1")).split(","))
        self.events.put(("start", self.slot, self.epochs))

    def on_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        self.events.put(("epoch", self.slot, epoch + 1, float(metrics["val_acc"])))


def _worker_main(slot: Slot, tasks: Any, events: Any, cfg: dict[str, Any]) -> None:
    """A worker process: pinned to its GPU (or thread share), runs cells until told to stop."""
    if slot.gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = slot.gpu
    # a streamed dataset's decode processes share the cores with the other workers' (stream.py)
    os.environ.setdefault("TLBENCH_LOADER_WORKERS", str(slot.threads))
    import torch

    torch.set_num_threads(slot.threads)
    from tlbench.executor.cell import run_cell

    tracker = Tracker(cfg["uri"])
    device = "cuda" if slot.gpu is not None else cfg.get("device") or "cpu"
    try:
        while True:
            task = tasks.get()
            if task is None:
                return
            outcome = run_cell(
                task.cell,
                tracker,
                cfg["experiment_id"],
                progress=_EventReporter(events, slot.index),
                on_run=lambda run_id, claim_id: events.put(("run", slot.index, run_id, claim_id)),
                device=device,
                data_dir=cfg.get("data_dir"),
                grid_file=cfg.get("grid_file"),
                fit_options=cfg.get("fit_options"),
                variant=cfg.get("variant"),
                force=cfg.get("force", False),
                checkpoint_dir=cfg.get("checkpoint_dir"),
                extra_params=task.extra_params,
                extra_tags=task.extra_tags,
            )
            outcome.pending = None
            events.put(("done", slot.index, outcome))
    except KeyboardInterrupt:  # its run is already marked KILLED by run_cell
        return


def run_pool(
    cells: list[Cell],
    tracker: Tracker,
    experiment_id: str,
    *,
    workers: str | int = "auto",
    cells_per_gpu: int = 1,
    retries: int = 2,
    force: bool = False,
    data_dir: str | Path | None = None,
    device: str | None = None,
    console: Console | None = None,
    grid_file: str | None = None,
    fit_options: dict[str, Any] | None = None,
    variant: str | None = None,
    extra_params: dict[str, dict[str, Any]] | None = None,
    checkpoint_dir: str | Path | None = None,
) -> list[CellOutcome]:
    """Run ``cells`` on a pool of worker processes; returns one outcome per cell, in cell order."""
    from tlbench.checkpoint import checkpoint_root

    console = console or Console(stderr=True)
    slots = plan_slots(workers, cells_per_gpu)
    reaped = tracker.reap_stale(experiment_id)
    if reaped:
        console.print(f"[yellow]marked {len(reaped)} run(s) KILLED whose process is gone (no heartbeat)[/]")
    finished = {} if force else tracker.finished_runs(experiment_id, variant=variant)
    cfg = {
        "uri": tracker.uri,
        "experiment_id": experiment_id,
        "device": None if device in (None, "auto") else device,
        "data_dir": str(Path(data_dir).resolve()) if data_dir else None,
        "grid_file": grid_file,
        "fit_options": fit_options,
        "variant": variant,
        "force": force,
        "checkpoint_dir": str(checkpoint_root(checkpoint_dir).resolve()),
    }
    outcomes: dict[str, CellOutcome] = {}
    pending: deque[_Task] = deque()
    for cell in cells:
        if cell.id in finished:
            run = finished[cell.id]
            outcomes[cell.name] = CellOutcome(
                cell, "SKIPPED", run.info.run_id, dict(run.data.metrics), "finished"
            )
        else:
            pending.append(_Task(cell, extra_params=(extra_params or {}).get(cell.id)))
    where = ", ".join(
        f"w{s.index}:{'gpu ' + s.gpu if s.gpu is not None else f'cpu×{s.threads}'}" for s in slots
    )
    console.print(
        f"{len(slots)} workers ({where}); {len(pending)} cells to run, {len(outcomes)} finished before"
    )

    ctx = mp.get_context("spawn")
    events = ctx.Queue()
    pool: dict[int, _Worker] = {}
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, refresh_per_second=4) as progress:
        overall = progress.add_task("cells", total=len(cells), completed=len(outcomes))
        rows = {s.index: progress.add_task(f"  w{s.index} idle", total=1, visible=True) for s in slots}
        state = _PoolState(tracker, progress, overall, rows, outcomes, pending, retries, console)
        state.summarize()
        try:
            for s in slots:
                pool[s.index] = _start_worker(ctx, s, events, cfg)
            while pending or any(w.task is not None for w in pool.values()):
                _dispatch(pool, state)
                _drain(events, pool, state, ctx, cfg)
                _check_dead(pool, state, ctx, events, cfg)
        except KeyboardInterrupt as stop:
            _interrupt(pool, events, state, at_once=isinstance(stop, Terminated))
            raise
        finally:
            for w in pool.values():
                with contextlib.suppress(Exception):
                    w.tasks.put(None)
            for w in pool.values():
                w.proc.join(timeout=30)
                if w.proc.is_alive():
                    w.proc.kill()
    return [outcomes[c.name] for c in cells if c.name in outcomes]


@dataclass
class _PoolState:
    tracker: Tracker
    progress: Progress
    overall: TaskID
    rows: dict[int, TaskID]
    outcomes: dict[str, CellOutcome]
    pending: deque[_Task]
    retries: int
    console: Console
    running: set[str] = field(default_factory=set)  # names of the cells workers are on

    def summarize(self) -> None:
        """The overall bar's label: cells running, done and failed across all workers."""
        done = sum(o.status == "FINISHED" for o in self.outcomes.values())
        failed = sum(o.status == "FAILED" for o in self.outcomes.values())
        self.progress.update(
            self.overall,
            completed=len(self.outcomes),
            description=f"cells: {len(self.running)} running · {done} done · {failed} failed",
        )

    def record(self, outcome: CellOutcome) -> None:
        self.outcomes[outcome.cell.name] = outcome
        self.running.discard(outcome.cell.name)
        self.summarize()
        c, m = outcome.cell, outcome.metrics
        if outcome.status == "FINISHED":
            self.console.print(
                f"[green]✓[/] {c.name}  test_acc {m['test_acc']:.4f}  best_val {m['best_val_acc']:.4f}"
            )
        elif outcome.status == "SKIPPED":
            self.console.print(f"[yellow]↷[/] {c.name}  {outcome.reason}")
        else:
            self.console.print(f"[red]✗[/] {c.name}  {outcome.status}: {outcome.reason}")


def _start_worker(ctx: Any, slot: Slot, events: Any, cfg: dict[str, Any]) -> _Worker:
    tasks = ctx.Queue()
    proc = ctx.Process(target=_worker_main, args=(slot, tasks, events, cfg), name=f"tlbench-w{slot.index}")
    proc.start()
    return _Worker(slot, proc, tasks)


def _ready(task: _Task, state: _PoolState) -> str | None:
    """'' when the task can run now, None when it must wait, or the reason it cannot run."""
    dep = task.cell.depends_on
    if not dep:
        return ""
    source = state.outcomes.get(dep)
    if source is None:
        in_batch = any(t.cell.name == dep for t in state.pending)
        return None if in_batch or dep in state.running else ""
    if source.status == "FINISHED" or (source.status == "SKIPPED" and source.reason == "finished"):
        return ""
    return f"source cell {dep!r} {source.status.lower()}: {source.reason}"


def _dispatch(pool: dict[int, _Worker], state: _PoolState) -> None:
    state.running = {w.task.cell.name for w in pool.values() if w.task is not None}
    for w in pool.values():
        if w.task is not None or not w.proc.is_alive():
            continue
        for task in list(state.pending):
            verdict = _ready(task, state)
            if verdict is None:
                continue
            state.pending.remove(task)
            if verdict:
                state.record(CellOutcome(task.cell, "FAILED", None, reason=verdict))
                continue
            w.task, w.run_id, w.claim_id, w.started = task, None, None, time.time()
            w.tasks.put(task)
            state.running.add(task.cell.name)
            state.summarize()
            state.progress.update(
                state.rows[w.slot.index],
                description=f"  w{w.slot.index} {task.cell.name}",
                completed=0,
                total=1,
            )
            break


def _drain(events: Any, pool: dict[int, _Worker], state: _PoolState, ctx: Any, cfg: dict[str, Any]) -> None:
    try:
        event = events.get(timeout=0.2)
    except queue.Empty:
        return
    while True:
        _handle(event, pool, state, ctx, events, cfg)
        try:
            event = events.get_nowait()
        except queue.Empty:
            return


def _handle(
    event: tuple, pool: dict[int, _Worker], state: _PoolState, ctx: Any, events: Any, cfg: dict[str, Any]
) -> None:
    kind, slot = event[0], event[1]
    w = pool.get(slot)
    if w is None:
        return
    row = state.rows[slot]
    if kind == "run":
        w.run_id, w.claim_id = event[2], event[3]
    elif kind == "start":
        state.progress.update(row, total=event[2], completed=0)
    elif kind == "epoch":
        name = w.task.cell.name if w.task else ""
        state.progress.update(
            row, completed=event[2], description=f"  w{slot} {name}  val_acc {event[3]:.3f}"
        )
    elif kind == "done":
        outcome: CellOutcome = event[2]
        task, w.task = w.task, None
        state.progress.update(row, description=f"  w{slot} idle", completed=0, total=1)
        if outcome.reason == OOM_REASON and task is not None and task.cell.train.batch_size > 1:
            half = task.cell.train.batch_size // 2
            state.console.print(
                f"[yellow]{task.cell.name}: CUDA out of memory; retrying with batch size {half}[/]"
            )
            cell = dataclasses.replace(
                task.cell, train=task.cell.train.model_copy(update={"batch_size": half})
            )
            tags = {
                **(task.extra_tags or {}),
                "tlbench.oom_retry": f"batch size halved from {task.cell.train.batch_size}",
            }
            asked = (task.extra_params or {}).get("oom_batch_size_from", task.cell.train.batch_size)
            params = {**(task.extra_params or {}), "oom_batch_size_from": asked}  # what the grid asked
            state.pending.appendleft(_Task(cell, task.attempts, params, tags))
            _replace(pool, w, ctx, events, cfg)  # a fresh process: no fragmented CUDA memory
            return
        state.record(outcome)


def _replace(pool: dict[int, _Worker], w: _Worker, ctx: Any, events: Any, cfg: dict[str, Any]) -> None:
    with contextlib.suppress(Exception):
        w.tasks.put(None)
    w.proc.join(timeout=30)
    if w.proc.is_alive():
        w.proc.kill()
        w.proc.join(timeout=10)
    pool[w.slot.index] = _start_worker(ctx, w.slot, events, cfg)


def _check_dead(
    pool: dict[int, _Worker], state: _PoolState, ctx: Any, events: Any, cfg: dict[str, Any]
) -> None:
    """A worker that died mid-cell: mark its run KILLED, free its claim, retry or fail the cell."""
    for w in list(pool.values()):
        if w.proc.is_alive():
            continue
        code = w.proc.exitcode
        task = w.task
        why = f"worker died ({_describe_exit(code)})"
        if task is not None:
            _drain_quietly(events, pool, state, ctx, cfg)  # its last events (a 'done' may be among them)
            task = w.task
        if task is not None:
            client = state.tracker.client
            if w.claim_id:
                with contextlib.suppress(Exception):
                    client.delete_run(w.claim_id)
            task.attempts += 1
            final = task.attempts > state.retries
            if w.run_id:
                with contextlib.suppress(Exception):
                    reason = why if not final else f"{why}; gave up after {task.attempts} attempts"
                    client.set_tag(w.run_id, REASON_TAG, reason)
                    client.set_terminated(w.run_id, "FAILED" if final else "KILLED")
            if final:
                state.record(
                    CellOutcome(task.cell, "FAILED", w.run_id, reason=f"{why}, {task.attempts} times")
                )
            else:
                state.console.print(
                    f"[yellow]{task.cell.name}: {why}; retry {task.attempts}/{state.retries}[/]"
                )
                state.pending.appendleft(task)
            w.task = None
        pool[w.slot.index] = _start_worker(ctx, w.slot, events, cfg)
        state.progress.update(state.rows[w.slot.index], description=f"  w{w.slot.index} idle", completed=0)


def _drain_quietly(
    events: Any, pool: dict[int, _Worker], state: _PoolState, ctx: Any, cfg: dict[str, Any]
) -> None:
    while True:
        try:
            event = events.get_nowait()
        except queue.Empty:
            return
        _handle(event, pool, state, ctx, events, cfg)


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


def _interrupt(pool: dict[int, _Worker], events: Any, state: _PoolState, at_once: bool = False) -> None:
    """Ctrl-C / SIGTERM: workers mark their runs KILLED (checkpoints kept) and exit.

    A terminal's Ctrl-C reached the workers too: give them a moment before a second SIGINT could
    cut their cleanup short. SIGTERM reached only this process (``at_once``): pass it on now.
    """
    deadline = time.time() + (0 if at_once else 3)
    while time.time() < deadline and any(w.proc.is_alive() and w.task for w in pool.values()):
        time.sleep(0.1)  # a terminal Ctrl-C reached them already
    for w in pool.values():
        if w.proc.is_alive() and w.task is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(w.proc.pid, signal.SIGINT)  # SIGTERM reached only the parent
    for w in pool.values():
        w.proc.join(timeout=60)
