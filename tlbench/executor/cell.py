"""Run one cell end to end: resolve its inputs, open its MLflow run, ``fit``, close the run.

This is the unit every executor (the sequential loop now, process pools and Ray later) calls,
so a cell behaves the same wherever it runs. Whatever happens, the run ends FINISHED, FAILED or
KILLED: never RUNNING.
"""

from __future__ import annotations

import tempfile
import traceback
from concurrent.futures import Future
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from tlbench.grid import Cell
from tlbench.tracking import Tracker


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
) -> CellOutcome:
    """Train one cell into its own MLflow run; ``fit_options`` go to ``train.fit`` (compile, ...)."""
    from tlbench.train import MultiReporter, NonFiniteLossError, fit

    run = tracker.start_cell(experiment_id, cell, grid_file=grid_file, variant=variant, params=extra_params)
    try:
        with tempfile.TemporaryDirectory(prefix="tlbench-src-") as tmp:
            weights_file = resolve_weights(cell, tracker, experiment_id, run, Path(tmp))
            data = load_cell_data(cell, data_dir)
            result = fit(
                cell,
                data,
                weights_file=weights_file,
                reporter=MultiReporter(run, progress),
                device=device,
                **(fit_options or {}),
            )
        pending = run.finish(result, background=background_finish)
        return CellOutcome(cell, "FINISHED", run.run_id, result.final_metrics(), pending=pending)
    except (KeyboardInterrupt, SystemExit):
        run.fail("KILLED", "interrupted")
        raise
    except NonFiniteLossError as err:
        run.fail("FAILED", f"{err.reason}: {err}")
        return CellOutcome(cell, "FAILED", run.run_id, reason=err.reason)
    except Exception as err:  # one bad cell must not stop the grid; the reason goes to the run
        reason = f"{type(err).__name__}: {err}"
        run.fail("FAILED", reason + "\n" + traceback.format_exc(limit=8))
        return CellOutcome(cell, "FAILED", run.run_id, reason=reason)
