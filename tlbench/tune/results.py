"""A study's results: counts and best trial, and the study's MLflow parent run (metrics,
``best_params.json``, ``trials.csv``, Optuna's plots); read back by ``run --tuned``."""

from __future__ import annotations

import dataclasses
import json
import math
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tlbench.cells import Cell
from tlbench.tracking import CellRun, tags
from tlbench.tune.budget import counted, load_cell_study
from tlbench.tune.storage import open_storage

if TYPE_CHECKING:
    import optuna


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
            parent.set_tag(tags.BEST_TRIAL, str(best.number))
            parent.set_tag(tags.BEST_PARAMS, json.dumps(best.params))
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
        parent.tracker.log_artifacts(parent.run_id, d)


def _figure_of(ax: Any) -> Any:
    import numpy as np

    first = np.ravel(ax)[0] if isinstance(ax, np.ndarray) else ax
    return getattr(first, "figure", None)


def study_status(cell: Cell, storage_url: str | None = None) -> StudySummary | None:
    """Counts and best trial of the cell's study as stored now (None if it has no study)."""
    from optuna.trial import TrialState

    study = load_cell_study(cell, open_storage(storage_url))
    if study is None:
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
        parent_run_id=study.user_attrs.get(tags.PARENT_RUN_ATTR),
    )


def best_params(cell: Cell, storage_url: str | None = None) -> dict[str, Any] | None:
    """The best COMPLETE trial of the cell's study: lr, batch_size, trial, value; None if no study
    or no complete trial yet."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(storage_url)
    study = load_cell_study(cell, storage)
    if study is None:
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
