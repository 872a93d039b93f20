"""Inside a pool worker process: pinned to its GPU (or its share of the CPU threads), it runs the
cells its parent (``tlbench.executor.pool``) hands it and reports their progress and outcomes
back, until told to stop or until the parent is gone."""

from __future__ import annotations

import dataclasses
import os
import queue
import sys
from dataclasses import dataclass
from typing import Any

from tlbench.executor import forkserver
from tlbench.executor.options import RunOptions
from tlbench.executor.stacking import stack_in_worker
from tlbench.tracking import Tracker


@dataclass(frozen=True)
class Slot:
    """Where one worker runs: a GPU index (or None for the CPU) and its share of CPU threads."""

    index: int
    gpu: str | None
    threads: int


class _EventReporter:
    """A worker's ``fit`` progress, sent to the parent's display."""

    def __init__(self, events: Any, slot: int):
        self.events = events
        self.slot = slot

    def on_start(self, info: dict[str, Any]) -> None:
        epochs = sum(int(p.split(":")[1]) for p in str(info.get("phases", "x:1")).split(","))
        self.events.put(("start", self.slot, epochs))

    def on_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        self.events.put(("epoch", self.slot, epoch + 1, float(metrics.get("val_acc", float("nan")))))


def worker_main(slot: Slot, tasks: Any, events: Any, options: RunOptions, env: dict[str, str]) -> None:
    """A worker process: pinned to its GPU (or thread share), runs cells until told to stop."""
    forkserver.adopt(env)
    if slot.gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = slot.gpu
    # a streamed dataset's decode processes share the cores with the other workers' (stream.py)
    os.environ.setdefault("TLBENCH_LOADER_WORKERS", str(slot.threads))
    import torch

    torch.set_num_threads(slot.threads)
    from tlbench.executor.runner import run_cell

    tracker = Tracker(options.tracking_uri)
    device = "cuda" if slot.gpu is not None else options.device or "auto"
    options = dataclasses.replace(options, device=device)
    try:
        while True:
            task = _next_task(tasks)
            if task is None or task is ORPHANED:
                _leave(events, orphaned=task is ORPHANED)
            reporter = _EventReporter(events, slot.index)
            if isinstance(task, list):  # a stack of probe heads: one outcome per cell
                stack_in_worker(task, tracker, options, events, slot.index, reporter)
                continue
            outcome = run_cell(
                task.cell,
                tracker,
                options,
                reporter=reporter,
                on_run=lambda run_id, claim_id: events.put(("run", slot.index, run_id, claim_id)),
                extra_params=task.params,
                extra_tags=task.tags,
                pause_at=task.pause_at,
            )
            outcome.pending = None
            events.put(("done", slot.index, outcome))
    except KeyboardInterrupt:  # its run is already marked KILLED by run_cell
        return


ORPHANED = "orphaned"  # what ``_next_task`` says once the process that started this worker is gone


def _next_task(tasks: Any, poll_s: float = 1.0) -> Any:
    """The next task from the parent, or ``ORPHANED`` once the parent has died (SIGKILL, the OOM
    killer): the cell in hand was finished first, and no worker is left waiting forever on a
    queue nobody will feed (its parent is the forkserver, and with it gone, init)."""
    import multiprocessing

    parent = multiprocessing.parent_process()
    while True:
        try:
            return tasks.get(timeout=poll_s)
        except queue.Empty:
            if parent is not None and not parent.is_alive():
                return ORPHANED


def _leave(events: Any, orphaned: bool = False) -> None:
    """Told to stop between cells, or orphaned: flush what the parent must still receive (nothing,
    without a parent), drop this process's downloads, and exit without the interpreter's teardown
    (2-3 s of module cleanup for torch, timm and MLflow, paid by every worker at every grid's end)."""
    from tlbench.tracking.process import drop_process_caches

    drop_process_caches()
    if orphaned:
        events.cancel_join_thread()  # no reader: a full pipe must not keep this process alive
    events.close()
    events.join_thread()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
