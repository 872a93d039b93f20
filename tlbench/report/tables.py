"""The report's tables, computed from frames with pandas alone: no MLflow, no matplotlib.

``collect`` turns the store into frames; everything here is arithmetic on them, so each table
can be checked on a hand-made frame, and ``plots`` and ``render`` share one set of numbers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from tlbench.errors import TlbenchError

if TYPE_CHECKING:
    from tlbench.cells import Cell
    from tlbench.report.pivots import PivotTable
    from tlbench.stats import RankResult

AXES = ["dataset", "backbone", "strategy", "optimizer", "augmentation"]
# what each cell is ranked by: ``collect`` puts the cell's ``metric`` (acc, or the grid's
# ``metric:``) of test and of its selected epoch here, so every table ranks by it
SCORE, VAL_SCORE = "test_score", "val_score"
METRIC_NAMES = {"acc": "accuracy", "mean_per_class_acc": "mean per-class accuracy"}
HEADLINE_METRICS = [
    "test_acc",
    "best_val_acc",
    "test_mean_per_class_acc",
    "best_val_mean_per_class_acc",
    "test_top5",
    "best_epoch",
    "train_time_s",
    "images_per_s",
    "params_trainable",
    "params_total",
    "params_trainable_frac",
    "peak_mem_mb",
    "peak_rss_mb",
]
CELL_SUMMARY_COLUMNS = [
    "cell",
    "status",
    "test_acc",
    "best_val_acc",
    "test_mean_per_class_acc",
    "test_top5",
    "epochs",
    "best_epoch",
    "trainable",
    "params_total",
    "train_time_s",
    "images_per_s",
    "peak_mem_mb",
    "peak_rss_mb",
    "reason",
]


class ReportError(TlbenchError, ValueError):
    """A report that cannot be made as asked (an unknown axis, one value to compare): exit 2."""


@dataclass
class Report:
    """Every table of a grid's report, plus the plots, ready to write in any format."""

    grid: str
    cells: pd.DataFrame
    pivot: pd.DataFrame
    pivot_val: pd.DataFrame
    effects: pd.DataFrame
    epochs: pd.DataFrame
    summary: pd.DataFrame
    reported: pd.DataFrame
    tuned: pd.DataFrame
    rows: list[str]
    cols: list[str]
    plots: dict[str, Path] = field(default_factory=dict)
    # replicate statistics (#15); a report made by hand without them renders its plain pivot
    configs: pd.DataFrame = field(default_factory=pd.DataFrame)  # configs.config_table
    costs: pd.DataFrame = field(default_factory=pd.DataFrame)  # costs.cost_table: method × cost
    table: PivotTable | None = None  # the test-accuracy pivot with CIs, best and ties
    table_val: PivotTable | None = None
    compare: pd.DataFrame = field(default_factory=pd.DataFrame)  # stats.pairwise over compare_axis
    compare_axis: str = ""
    compare_note: str = ""  # why there is no comparison, when there is none
    ranks: RankResult | None = None
    ci: str = "t"
    agg: str = "mean"
    # racing (#18): compute spent and saved per group, and the cells raced out
    race: pd.DataFrame = field(default_factory=pd.DataFrame)
    raced_out: pd.DataFrame = field(default_factory=pd.DataFrame)
    metric: str = "accuracy"  # what the tables rank by, in words (``metric_label``)
    # transferability (``tlbench rank``'s runs of the grid's datasets; empty without any)
    transfer_scores: pd.DataFrame = field(default_factory=pd.DataFrame)  # transferability.score_table
    transfer_results: pd.DataFrame = field(default_factory=pd.DataFrame)  # results_for: per seed
    transfer_agreement: pd.DataFrame = field(default_factory=pd.DataFrame)  # agreement_table
    transfer_against: dict[str, str] = field(default_factory=dict)  # dataset -> checked-against strategy
    figures: dict[str, Any] = field(default_factory=dict)  # title -> matplotlib Figure (with ``out``)
    files: list[Path] = field(default_factory=list)  # what ``write`` wrote
    mlflow_run_id: str = ""  # the grid's parent run the files were attached to

    def status_counts(self) -> dict[str, int]:
        """How many cells are in each state, for the report's first line."""
        return self.cells["status"].value_counts().to_dict()


def metric_label(df: pd.DataFrame) -> str:
    """What the report's scores are, in words: ``accuracy``, ``mean per-class accuracy``, or for
    a grid whose datasets differ, the default and the datasets that use the other."""
    if "metric" not in df.columns or df.empty:
        return METRIC_NAMES["acc"]
    used = list(dict.fromkeys(df["metric"]))
    if len(used) == 1:
        return METRIC_NAMES.get(used[0], used[0])
    others = [m for m in used if m != "acc"]
    by = ", ".join(
        f"{METRIC_NAMES.get(m, m)} on {', '.join(dict.fromkeys(df.loc[df['metric'] == m, 'dataset']))}"
        for m in others
    )
    return f"accuracy; {by}"


def param_count(n: float) -> str:
    """Parameter counts as people say them: 970, 37.4k, 11.7M."""
    n = float(n)
    if n >= 1e6:
        return f"{n / 1e6:.1f}M"
    if n >= 1e4:
        return f"{n / 1e3:.0f}k"
    if n >= 1e3:
        return f"{n / 1e3:.1f}k"
    return f"{n:.0f}"


def label(key: Any) -> str:
    """A row or column key as one string: tuples of a multi-axis index joined with ``/``."""
    return "/".join(map(str, key)) if isinstance(key, tuple) else str(key)


def summary_frame(rows: Iterable[tuple[Cell, str, dict[str, float], str]]) -> pd.DataFrame:
    """One row per cell: (cell, status, metrics, reason) -> a DataFrame with the headline metrics."""
    records: list[dict[str, Any]] = []
    for cell, status, metrics, reason in rows:
        rec: dict[str, Any] = {"cell": cell.name, "status": status, "id": cell.id, **cell.axis_values()}
        rec.update(_replicate_keys(cell))
        for m in HEADLINE_METRICS:
            rec[m] = metrics.get(m)
        trainable, total = metrics.get("params_trainable"), metrics.get("params_total")
        rec["trainable"] = (
            f"{param_count(trainable)} of {param_count(total)}" if trainable and total else None
        )
        rec["reason"] = reason.splitlines()[0] if reason else ""
        records.append(rec)
    return pd.DataFrame.from_records(records)


def _replicate_keys(cell: Cell) -> dict[str, Any]:
    """Which configuration a cell is a replicate of, and its seed: what statistics group and pair by.

    An unreplicated cell is its own configuration. Read with defaults, so any object with a name,
    an id and axis values (a test's stand-in) is a cell here.
    """
    train = getattr(cell, "train", None)
    return {
        "config_id": getattr(cell, "config_id", "") or cell.id,
        "config": getattr(cell, "config_name", "") or cell.name,
        "seed": getattr(train, "seed", 0),
        "replicate": getattr(cell, "replicate", None),
    }


def tuned_vs_untuned(tuned: pd.DataFrame, df: pd.DataFrame) -> pd.DataFrame:
    """Each tuned run (``collect.tuned_runs``) beside its plain cell's result in ``df``, with the gain."""
    plain = df.set_index("id")
    records = []
    for run in tuned.to_dict("records"):
        t_acc, u_acc = run["tuned_test_acc"], plain.loc[run["id"], "test_acc"]
        records.append(
            {
                "cell": run["cell"],
                "untuned_test_acc": u_acc,
                "tuned_test_acc": t_acc,
                "gain": (t_acc - u_acc)
                if t_acc is not None and u_acc is not None and not pd.isna(u_acc)
                else None,
                "untuned_lr": run["untuned_lr"],
                "tuned_lr": run["tuned_lr"],
                "untuned_batch": run["untuned_batch"],
                "tuned_batch": run["tuned_batch"],
                "hp_source": run["hp_source"],
            }
        )
    return pd.DataFrame.from_records(records)


def check_axes(df: pd.DataFrame, axes: list[str]) -> None:
    """An axis a table cannot be arranged by is the user's error, said with the valid ones."""
    for axis in axes:
        if axis not in df.columns:
            raise ReportError(f"unknown axis {axis!r} (valid: {', '.join(AXES)})")


def pivot(df: pd.DataFrame, rows: list[str], cols: list[str], value: str = "test_acc") -> pd.DataFrame:
    """``value`` arranged by any axes; cells sharing a position are averaged (n shown separately)."""
    check_axes(df, rows + cols)
    done = df[df["status"] == "FINISHED"]
    return pd.pivot_table(done, index=rows, columns=cols, values=value, aggfunc="mean", dropna=False).reindex(
        index=order(df, rows), columns=order(df, cols)
    )


def order(df: pd.DataFrame, axes: list[str]) -> pd.Index:
    """Grid order (first appearance) rather than alphabetical."""
    seen = list(dict.fromkeys(tuple(r) for r in df[axes].itertuples(index=False)))
    return (
        pd.MultiIndex.from_tuples(seen, names=axes)
        if len(axes) > 1
        else pd.Index([s[0] for s in seen], name=axes[0])
    )


def best_mask(piv: pd.DataFrame) -> pd.DataFrame:
    """True where a value is its row's best (ties all marked)."""
    return piv.eq(piv.max(axis=1), axis=0) & piv.notna()


def axis_effects(df: pd.DataFrame, value: str = "test_acc") -> pd.DataFrame:
    """Mean and spread of ``value`` per value of each axis (e.g. linear_probe vs finetune)."""
    done = df[df["status"] == "FINISHED"]
    parts = []
    for axis in AXES:
        g = done.groupby(axis, sort=False)[value].agg(["count", "mean", "std", "min", "max"])
        if len(g) < 2:
            continue  # an axis with one value says nothing
        g = g.reset_index().rename(columns={axis: "value"})
        g.insert(0, "axis", axis)
        parts.append(g)
    if not parts:
        return pd.DataFrame(columns=["axis", "value", "count", "mean", "std", "min", "max"])
    return pd.concat(parts, ignore_index=True)


def epoch_table(history: pd.DataFrame, metric: str = "val_acc") -> pd.DataFrame:
    """Epoch by epoch, one row per configuration (the mean over its seeds) and one column per
    epoch: a grid's hundreds of configurations run down the page, its few epochs across it."""
    h = history[history["metric"] == metric]
    if h.empty:
        return pd.DataFrame()
    key = "config" if "config" in h.columns else "cell"
    table = h.pivot_table(index=["dataset", key], columns="epoch", values="value", aggfunc="mean", sort=False)
    table.index.names = ["dataset", "configuration"]
    return table


def cell_summary(df: pd.DataFrame) -> pd.DataFrame:
    """The per-cell table of the report: the columns people read, in reading order."""
    return df[[c for c in CELL_SUMMARY_COLUMNS if c in df.columns]]


def pareto_front(
    df: pd.DataFrame, x: str = "train_time_s", y: str = "test_acc", key: str = "cell"
) -> list[str]:
    """Points (named by ``key``) no other point beats with a higher ``y`` at no higher ``x``, in
    rising ``x``: cells by default, or configurations (the cost plots); only FINISHED rows where
    the frame has a ``status``."""
    done = df[df["status"] == "FINISHED"] if "status" in df.columns else df
    done = done.dropna(subset=[x, y]).sort_values([x, y], ascending=[True, False])
    front, best = [], -math.inf
    for _, row in done.iterrows():
        if row[y] > best:
            front.append(row[key])
            best = row[y]
    return front
