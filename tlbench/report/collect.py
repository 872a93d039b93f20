"""MLflow -> pandas: the only report module that talks to the store (through ``tlbench.tracking``).

It reads a grid's runs into frames, and attaches the written report to the grid's parent run.
Keeping every store call and every tag name here lets ``tables``, ``plots`` and ``render`` work
on plain frames, and keeps the report in step with the writers through ``tracking.tags``.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from tlbench.report.configs import ENV_PARAMS
from tlbench.report.tables import SCORE, VAL_SCORE, summary_frame
from tlbench.report.transferability import SCORE_COLUMNS
from tlbench.tracking import tags

if TYPE_CHECKING:
    from tlbench.cells import Cell
    from tlbench.tracking import Tracker

EPOCH_METRICS = ["train_loss", "train_acc", "val_loss", "val_acc"]
HISTORY_KEYS = ["cell", "config", "seed", "dataset", "backbone", "strategy", "optimizer", "augmentation"]


def cells_frame(cells: list[Cell], tracker: Tracker, experiment_id: str) -> pd.DataFrame:
    """One row per cell of the grid with its newest FINISHED run, or the state it is in.

    Every cell appears (MISSING, FAILED, RUNNING, ...): a report never drops one silently.
    """
    runs = [r for r in tracker.runs(experiment_id) if not r.data.tags.get(tags.VARIANT)]  # newest first
    by_cell: dict[str, list[Any]] = {}
    for r in runs:
        by_cell.setdefault(r.data.tags.get(tags.CELL_ID, ""), []).append(r)
    rows = []
    for cell in cells:
        mine = by_cell.get(cell.id, [])
        finished = [r for r in mine if r.info.status == "FINISHED"]
        run = finished[0] if finished else (mine[0] if mine else None)
        status = _status(run)
        reason = _reason(run) if run and status != "FINISHED" else ""
        metrics = dict(run.data.metrics) if run and status == "FINISHED" else {}
        rows.append((cell, status, metrics, reason, run))
    df = summary_frame((c, s, m, r) for c, s, m, r, _ in rows)
    df["run_id"] = [run.info.run_id if run else None for *_, run in rows]
    df["epochs"] = [c.train.epochs for c, *_ in rows]
    # what the report ranks each cell by: its metric (acc, or the grid's `metric:`), on test and
    # at the epoch (or L2) it was selected by
    df["metric"] = [getattr(c, "metric", "acc") for c, *_ in rows]
    df[SCORE] = [m.get(f"test_{c.metric}") for c, _, m, *_ in rows]
    df[VAL_SCORE] = [m.get(f"best_val_{c.metric}") for c, _, m, *_ in rows]
    for key in ("test_acc", "best_val_acc", "mean_per_class_acc", "source", "protocol"):
        df[f"reported_{key}"] = [c.reported.get(key) for c, *_ in rows]
    df["test_is_val"] = [_test_is_val(c.dataset.name) for c, *_ in rows]
    df["device"] = [run.data.tags.get(tags.DEVICE, "") if run else "" for *_, run in rows]
    for key in ENV_PARAMS:
        df[key] = [run.data.params.get(key, "") if run else "" for *_, run in rows]
    for key in ("epochs_trained", "device_s"):  # compute spent, whatever the state (racing, #18)
        df[key] = [run.data.metrics.get(key) if run else None for *_, run in rows]
    for key in (tags.RACE_RUNG, tags.RACE_RULE, tags.RACE_LEADER, tags.RACE_REASON):
        df[key.removeprefix("tlbench.")] = [run.data.tags.get(key, "") if run else "" for *_, run in rows]
    return df


def _status(run: Any | None) -> str:
    """The run's state as the report names it: a raced-out or paused run (SCHEDULED in MLflow)
    is DROPPED or PAUSED, not a crash and not a result."""
    if run is None:
        return "MISSING"
    if run.info.status == "SCHEDULED":
        return {tags.DROPPED: "DROPPED", tags.PAUSED: "PAUSED"}.get(
            run.data.tags.get(tags.RACE, ""), "SCHEDULED"
        )
    return run.info.status


def _reason(run: Any) -> str:
    if run.data.tags.get(tags.RACE) == tags.DROPPED:
        rung, leader = run.data.tags.get(tags.RACE_RUNG, ""), run.data.tags.get(tags.RACE_LEADER, "")
        return f"raced out at {rung}; leader {leader}"
    if run.data.tags.get(tags.RACE) == tags.PAUSED:
        return f"paused at {run.data.tags.get(tags.RACE_RUNG, '')}"
    return run.data.tags.get(tags.REASON, "")


def _test_is_val(dataset: str) -> bool:
    """The catalog's flag for datasets whose test split is their val split (False if unknown)."""
    from tlbench.catalog.datasets import CATALOG

    return dataset in CATALOG and CATALOG.get(dataset).test_is_val


def tuned_runs(cells: list[Cell], tracker: Tracker, experiment_id: str, df: pd.DataFrame) -> pd.DataFrame:
    """Cells that also have a FINISHED ``tuned`` run: its result and the settings each run used.

    ``df`` is ``cells_frame``'s, whose ``run_id`` names the plain run to compare with. The frame
    is of object dtype so values stay exactly as MLflow gave them (None stays None) until
    ``tables.tuned_vs_untuned`` lines them up.
    """
    tuned = tracker.finished_runs(experiment_id, variant="tuned")
    plain_run_ids = df.set_index("id")["run_id"]
    records = []
    for cell in cells:
        run = tuned.get(cell.id)
        if run is None:
            continue
        base_run_id = plain_run_ids.loc[cell.id]
        base_params = tracker.get_run(base_run_id).data.params if base_run_id else {}
        records.append(
            {
                "id": cell.id,
                "cell": cell.name,
                "tuned_test_acc": run.data.metrics.get("test_acc"),
                "untuned_lr": base_params.get("effective_lr"),
                "tuned_lr": run.data.params.get("effective_lr"),
                "untuned_batch": base_params.get("batch_size"),
                "tuned_batch": run.data.params.get("batch_size"),
                "hp_source": run.data.params.get("hp_source", run.data.tags.get(tags.VARIANT, "")),
            }
        )
    return pd.DataFrame(records, dtype=object)


def epoch_history(tracker: Tracker, df: pd.DataFrame, metrics: list[str] = EPOCH_METRICS) -> pd.DataFrame:
    """Long table (cell, its configuration, seed and axes, epoch, metric, value) of the per-epoch
    metrics of FINISHED cells: what learning curves and their bands over seeds are drawn from."""
    done = df[df["status"] == "FINISHED"]
    keys = [c for c in HISTORY_KEYS if c in done.columns]
    jobs = [(row, m) for row in done[["run_id", *keys]].to_dict("records") for m in metrics]
    with ThreadPoolExecutor(max_workers=8) as pool:  # one request per run and metric: overlap them
        histories = list(pool.map(lambda job: tracker.metric_history(job[0]["run_id"], job[1]), jobs))
    records = [
        {**{k: row[k] for k in keys}, "epoch": h.step, "metric": m, "value": h.value}
        for (row, m), history in zip(jobs, histories, strict=True)
        for h in history
    ]
    return pd.DataFrame.from_records(records, columns=[*keys, "epoch", "metric", "value"])


def rank_values(tracker: Tracker, experiment_id: str) -> pd.DataFrame:
    """Each dataset's newest ``tlbench rank`` run read back: one row per dataset × backbone × seed
    × score (``SCORE_COLUMNS``), plus ``against``, the strategy the run checks its scores against.

    The candidate score names come from the run's own ``scores`` param (``tlbench.rank.scores``
    would import torch); rows follow the run's score and backbone order, so "the first score" of
    the report is the first one ``rank`` was asked for.
    """
    from tlbench.tracking.rankings import AGREEMENT_KEYS, latest_rankings, ranking_values

    frames = []
    for dataset, run in latest_rankings(tracker, experiment_id).items():
        params = run.data.params
        scores = [s for s in params.get("scores", "").split(",") if s]
        if not scores:  # a run logged without the param: its metric keys name the scores
            skip = {"time", *AGREEMENT_KEYS}
            scores = sorted({k.split(".", 1)[0] for k in run.data.metrics} - skip)
        rows = pd.DataFrame(ranking_values(run, scores), columns=SCORE_COLUMNS[1:])
        if rows.empty:
            continue
        backbones = [b for b in params.get("backbones", "").split(",") if b]
        order = {b: i for i, b in enumerate([*backbones, *sorted(set(rows["backbone"]) - set(backbones))])}
        rows = rows.assign(
            seed=pd.to_numeric(rows["seed"], errors="coerce").astype(float),  # None -> NaN: one seed
            _s=rows["score"].map({s: i for i, s in enumerate(scores)}),
            _b=rows["backbone"].map(order),
        )
        rows = rows.sort_values(["_s", "_b", "seed"]).drop(columns=["_s", "_b"])
        frames.append(rows.assign(dataset=dataset, against=params.get("against", "finetune")))
    if not frames:
        return pd.DataFrame(columns=[*SCORE_COLUMNS, "against"])
    return pd.concat(frames, ignore_index=True)[[*SCORE_COLUMNS, "against"]]


def log_to_mlflow(tracker: Tracker, experiment_id: str, grid: str, files: list[Path]) -> str:
    """Attach the report to the grid's parent run (created once, reused), under ``report/``."""
    return tracker.attach_report(experiment_id, grid, files)
