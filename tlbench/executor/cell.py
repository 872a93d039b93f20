"""Run one cell end to end: resolve its inputs, open its MLflow run, ``fit``, close the run.

This is the unit every executor (the sequential loop now, process pools and Ray later) calls,
so a cell behaves the same wherever it runs. Whatever happens, the run ends FINISHED, FAILED or
KILLED: never RUNNING.
"""

from __future__ import annotations

import os
import tempfile
import time
import traceback
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from tlbench.grid import Cell
from tlbench.tracking import Claim, Tracker


@dataclass
class CellOutcome:
    cell: Cell
    status: str  # FINISHED | FAILED | KILLED | SKIPPED
    run_id: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    reason: str = ""
    pending: Future[None] | None = None  # artifacts still being written (background finish)


@lru_cache(maxsize=8)
def _load_cached(
    name: str, params_items: tuple, data_dir: str | None, seed: int, subset: float | None, val: float
):
    from tlbench.data import load_dataset

    return load_dataset(
        name, params=dict(params_items), data_dir=data_dir, seed=seed, subset=subset, val_fraction=val
    )


def load_cell_data(cell: Cell, data_dir: str | Path | None) -> Any:
    """The cell's dataset splits; cached in-process so a grid loads each dataset once."""
    params = tuple(sorted((k, _freeze(v)) for k, v in cell.dataset.params.items()))
    t = cell.train
    return _load_cached(
        cell.dataset.name, params, str(data_dir) if data_dir else None, t.seed, t.subset, t.val_fraction
    )


def _freeze(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v


def resolve_weights(cell: Cell, tracker: Tracker, experiment_id: str, run: Any, tmp: Path) -> Path | None:
    """The file a ``cell:`` or ``run:`` backbone starts from (downloaded from MLflow into
    ``tmp``); ``None`` for hub / file / random weights, which ``fit`` resolves itself."""
    from tlbench.strategies import STRATEGIES

    if not STRATEGIES.get(cell.strategy.name).pretrained:
        return None
    if cell.weights.kind == "cell":
        source = tracker.finished_runs(experiment_id).get(cell.depends_on_id or "")
        if source is None:
            raise RuntimeError(
                f"source cell {cell.depends_on!r} has no FINISHED run; run it first "
                f"(tlbench run --select '{cell.depends_on}')"
            )
        run.client.set_tag(run.run_id, "tlbench.source_run_id", source.info.run_id)
        return tracker.download_checkpoint(source.info.run_id, tmp)
    if cell.weights.kind == "run":
        run.client.set_tag(run.run_id, "tlbench.source_run_id", cell.weights.value)
        return tracker.run_checkpoint(cell.weights.value, tmp)
    return None


OOM_REASON = "oom"
SIMULATE_OOM_ENV = "TLBENCH_SIMULATE_OOM_ABOVE"  # fault injection for tests: "OOM" above this batch size


def claim_cell(
    tracker: Tracker, experiment_id: str, cell: Cell, variant: str | None, *, wait: bool, force: bool = False
) -> tuple[Claim | None, CellOutcome | None]:
    """This process's claim on the cell, or the outcome to report instead (finished, or held by
    a live process elsewhere). ``wait``: while another live process holds it, wait for it to
    finish or to go stale (a retried Ray task whose first attempt's node died)."""
    from tlbench.tracking import heartbeat_interval

    while True:
        claim = tracker.claim(experiment_id, cell, variant, force=force)
        if claim is not None:
            return claim, None
        done = None if force else tracker.finished_runs(experiment_id, variant=variant).get(cell.id)
        if done is not None:
            return None, CellOutcome(cell, "SKIPPED", done.info.run_id, dict(done.data.metrics), "finished")
        if not wait:
            return None, CellOutcome(cell, "SKIPPED", reason="running elsewhere")
        time.sleep(min(2.0, heartbeat_interval()))


def run_cell(
    cell: Cell,
    tracker: Tracker,
    experiment_id: str,
    *,
    data_dir: str | Path | None = None,
    device: str | None = None,
    progress: Any = None,
    grid_file: str | None = None,
    fit_options: dict[str, Any] | None = None,
    background_finish: bool = False,
    variant: str | None = None,
    extra_params: dict[str, Any] | None = None,
    extra_tags: dict[str, str] | None = None,
    checkpoint_dir: str | Path | None = None,
    claim: bool = True,
    wait_for_claim: bool = False,
    force: bool = False,
    on_run: Callable[[str, str | None], None] | None = None,
) -> CellOutcome:
    """Train one cell into its MLflow run; ``fit_options`` go to ``train.fit`` (compile, ...).

    The cell is claimed first (exactly one process works on it); a KILLED run of it with a
    checkpoint is continued (same run, metrics go on) instead of starting a new one; the training
    state is checkpointed every epoch and dropped once the run is FINISHED.
    """
    import torch

    from tlbench.checkpoint import Checkpointer, checkpoint_root
    from tlbench.train import MultiReporter, NonFiniteLossError, fit

    held, skipped = (
        claim_cell(tracker, experiment_id, cell, variant, wait=wait_for_claim, force=force)
        if claim
        else (None, None)
    )
    if skipped is not None:
        return skipped

    def release() -> None:
        if held is not None:
            held.release()

    try:
        root = checkpoint_root(checkpoint_dir)
        old = None if force else tracker.resumable_run(experiment_id, cell, variant)
        if old is not None and Checkpointer(root / old.info.run_id, cell.id).exists():
            run = tracker.reopen_cell(old, cell)
        else:
            run = tracker.start_cell(
                experiment_id,
                cell,
                grid_file=grid_file,
                variant=variant,
                params=extra_params,
                tags=extra_tags,
            )
    except BaseException:
        release()
        raise
    ckpt = Checkpointer(root / run.run_id, cell.id)
    if on_run is not None:
        on_run(run.run_id, held.run_id if held is not None else None)

    def cleanup() -> None:
        ckpt.remove()
        release()

    try:
        with tempfile.TemporaryDirectory(prefix="tlbench-src-") as tmp:
            weights_file = resolve_weights(cell, tracker, experiment_id, run, Path(tmp))
            data = load_cell_data(cell, data_dir)
            limit = os.environ.get(SIMULATE_OOM_ENV)
            if limit and cell.train.batch_size > int(limit):
                raise torch.cuda.OutOfMemoryError(f"simulated: batch size {cell.train.batch_size} > {limit}")
            result = fit(
                cell,
                data,
                weights_file=weights_file,
                reporter=MultiReporter(run, progress),
                device=device,
                checkpoint=ckpt,
                **(fit_options or {}),
            )
        pending = run.finish(result, background=background_finish, then=cleanup)
        return CellOutcome(cell, "FINISHED", run.run_id, result.final_metrics(), pending=pending)
    except (KeyboardInterrupt, SystemExit):
        run.fail("KILLED", "interrupted")  # its checkpoint stays: the next run continues it
        release()
        raise
    except NonFiniteLossError as err:
        run.fail("FAILED", f"{err.reason}: {err}")
        cleanup()
        return CellOutcome(cell, "FAILED", run.run_id, reason=err.reason)
    except torch.cuda.OutOfMemoryError as err:
        run.fail("FAILED", f"{OOM_REASON}: {err}")
        cleanup()
        return CellOutcome(cell, "FAILED", run.run_id, reason=OOM_REASON)
    except Exception as err:  # one bad cell must not stop the grid; the reason goes to the run
        reason = f"{type(err).__name__}: {err}"
        run.fail("FAILED", reason + "\n" + traceback.format_exc(limit=8))
        cleanup()
        return CellOutcome(cell, "FAILED", run.run_id, reason=reason)
