"""A CUDA out-of-memory error, decided here: the same cell again at half the batch size (down to
1), in a fresh process (no fragmented CUDA memory), as a new run with param
``oom_batch_size_from`` (what the grid asked) and tag ``tlbench.oom_retry``. At batch size 1, or
in a tuning trial, the error is the outcome."""

from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING

from tlbench.tracking import tags

if TYPE_CHECKING:
    from tlbench.cells import Cell
    from tlbench.executor.runner import CellOutcome, Task

OOM_REASON = "oom"  # a run's failure reason (and an outcome's) after a CUDA out-of-memory error
OOM_PARAM = "oom_batch_size_from"
SIMULATE_OOM_ENV = "TLBENCH_SIMULATE_OOM_ABOVE"  # fault injection for tests: "OOM" above this batch size


def retries_at_half_batch(task: Task, outcome: CellOutcome) -> bool:
    """Does this outcome send the cell round again at half its batch size?"""
    return outcome.reason == OOM_REASON and task.cell.train.batch_size > 1


def halved(task: Task) -> Task:
    """The task again at half the batch size, in a fresh process, saying where it came from."""
    bs = task.cell.train.batch_size
    cell = dataclasses.replace(task.cell, train=task.cell.train.model_copy(update={"batch_size": bs // 2}))
    params = {**task.params, OOM_PARAM: task.params.get(OOM_PARAM, bs)}  # what the grid asked for
    retry_tags = {**task.tags, tags.OOM_RETRY: f"batch size halved from {bs}"}
    return dataclasses.replace(task, cell=cell, params=params, tags=retry_tags, fresh_process=True)


def simulate(cell: Cell) -> None:
    """Raise CUDA's out-of-memory error above ``$TLBENCH_SIMULATE_OOM_ABOVE`` (the tests' fault)."""
    limit = os.environ.get(SIMULATE_OOM_ENV)
    if limit and cell.train.batch_size > int(limit):
        import torch

        raise torch.cuda.OutOfMemoryError(f"simulated: batch size {cell.train.batch_size} > {limit}")
