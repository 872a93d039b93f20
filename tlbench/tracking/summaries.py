"""One summary run per replicated configuration, so the MLflow UI's table shows aggregated rows.

A configuration trained with ``seeds:`` gets a run tagged ``tlbench.summary = <config id>``
carrying its axis params, ``n_seeds``, ``test_acc_mean`` / ``_std`` / ``_ci95_low`` /
``_ci95_high`` (Student t over the seeds), the same for ``best_val_acc``, and the mean per-epoch
curves as step metrics. Its replicates' runs are nested under it (``mlflow.parentRunId``): the UI
shows one expandable row per configuration. It has no ``tlbench.cell_id``, so it never counts as
a cell's FINISHED run.

Recomputed from the store, idempotently: finding or creating the summary is followed by a check
for twins (two processes finishing replicates at once), the earliest kept, the others deleted;
values are written only when they cover at least as many seeds as the summary already shows, so
a process that read the store before another replicate finished cannot overwrite newer numbers.
"""

from __future__ import annotations

import contextlib
import math
from collections import defaultdict
from typing import TYPE_CHECKING, Any

from tlbench.tracking import tags

if TYPE_CHECKING:
    from tlbench.cells import Cell
    from tlbench.tracking.store import Tracker

CURVES = ("val_acc", "train_loss", "val_loss")
FINALS = ("test_acc", "test_mean_per_class_acc", "best_val_acc")


def _summary_run(tracker: Tracker, experiment_id: str, config: Cell) -> Any:
    """The configuration's one summary run: found, or created; twins from a race removed."""
    from mlflow.exceptions import MlflowException

    filt = f"tags.`{tags.SUMMARY}` = '{config.config_id}'"

    def search() -> list[Any]:
        runs = tracker.client.search_runs([experiment_id], filter_string=filt, max_results=50)
        return sorted(runs, key=lambda r: (r.info.start_time, r.info.run_id))

    found = search()
    if not found:
        run_tags = {
            tags.SUMMARY: config.config_id,
            tags.CONFIG_ID: config.config_id,
            tags.GRID: config.grid,
            tags.VARIANT: "summary",
            tags.CELL: config.config_name,
        }
        tracker.client.create_run(
            experiment_id, run_name=f"{config.config_name} [mean of seeds]", tags=run_tags
        )
        found = search()
    for twin in found[1:]:
        with contextlib.suppress(MlflowException):
            tracker.client.delete_run(twin.info.run_id)
    return found[0]


def _replicate_runs(cells: list[Cell], finished: dict[str, Any]) -> list[Any]:
    return [finished[c.id] for c in cells if c.id in finished]


def _curves(tracker: Tracker, runs: list[Any]) -> dict[str, dict[int, float]]:
    """Mean per-epoch curves over the replicates that reached each epoch."""
    out: dict[str, dict[int, float]] = {}
    for key in CURVES:
        by_step: dict[int, list[float]] = defaultdict(list)
        for r in runs:
            for m in tracker.client.get_metric_history(r.info.run_id, key):
                by_step[m.step].append(m.value)
        out[key] = {step: sum(v) / len(v) for step, v in sorted(by_step.items())}
    return out


def _write(tracker: Tracker, summary: Any, config: Cell, runs: list[Any]) -> None:
    from mlflow.entities import Metric, Param

    from tlbench.stats import summarize

    client, run_id = tracker.client, summary.info.run_id
    shown = summary.data.metrics.get("n_seeds")
    if shown is not None and len(runs) < shown:
        return  # another process already wrote a summary over more seeds
    params = {k: v for k, v in config.flat_params().items() if k != "seed"}  # seeds differ
    metrics = {"n_seeds": float(len(runs))}
    for key in FINALS:
        s = summarize([r.data.metrics[key] for r in runs if key in r.data.metrics])
        metrics.update({f"{key}_mean": s.mean, f"{key}_std": s.std})
        metrics.update({f"{key}_ci95_low": s.ci_low, f"{key}_ci95_high": s.ci_high})
    finite = {k: v for k, v in metrics.items() if not math.isnan(v)}
    batch = [Metric(k, v, 0, 0) for k, v in finite.items()]
    if shown is None or len(runs) > shown:  # the curves change only with the set of seeds
        for key, curve in _curves(tracker, runs).items():
            batch += [Metric(f"{key}_mean", v, 0, step) for step, v in curve.items()]
    new_params = [Param(k, str(v)) for k, v in params.items() if k not in summary.data.params]
    for i in range(0, len(new_params), 100):  # MLflow's batch limits: 100 params, 1000 metrics
        client.log_batch(run_id, params=new_params[i : i + 100])
    for i in range(0, len(batch), 1000):
        client.log_batch(run_id, metrics=batch[i : i + 1000])
    client.set_terminated(run_id, "FINISHED")
    for r in runs:  # nest the replicates under their summary in the UI
        if r.data.tags.get(tags.PARENT_RUN_ID) != run_id:
            client.set_tag(r.info.run_id, tags.PARENT_RUN_ID, run_id)


def update_summaries(tracker: Tracker, experiment_id: str, cells: list[Cell]) -> list[str]:
    """Recompute the summary run of every replicated configuration among ``cells`` that has at
    least one FINISHED replicate; returns the summary run ids."""
    groups: dict[str, list[Cell]] = defaultdict(list)
    for c in cells:
        if c.replicate is not None:
            groups[c.config_id].append(c)
    if not groups:
        return []
    finished = tracker.finished_runs(experiment_id)
    out = []
    for members in groups.values():
        runs = _replicate_runs(members, finished)
        if not runs:
            continue
        summary = _summary_run(tracker, experiment_id, members[0])
        _write(tracker, summary, members[0], runs)
        out.append(summary.info.run_id)
    return out
