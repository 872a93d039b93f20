"""Comparison tables from cell outcomes / MLflow runs, rendered with rich or pandas.

The terminal summary after ``tlbench run`` and ``tlbench report`` share this code.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pandas as pd
from rich.console import Console
from rich.table import Table

from tlbench.grid import Cell

SUMMARY_COLUMNS = ["cell", "status", "test_acc", "best_val_acc", "best_epoch", "train_time_s", "trainable"]


def _count(n: float) -> str:
    """Parameter counts as people say them: 970, 37.4k, 11.7M."""
    n = float(n)
    if n >= 1e6:
        return f"{n / 1e6:.1f}M"
    if n >= 1e4:
        return f"{n / 1e3:.0f}k"
    if n >= 1e3:
        return f"{n / 1e3:.1f}k"
    return f"{n:.0f}"


def summary_frame(rows: Iterable[tuple[Cell, str, dict[str, float], str]]) -> pd.DataFrame:
    """One row per cell: (cell, status, metrics, reason) -> a DataFrame with the headline metrics."""
    records: list[dict[str, Any]] = []
    for cell, status, metrics, reason in rows:
        rec: dict[str, Any] = {"cell": cell.name, "status": status, "id": cell.id, **cell.axis_values()}
        rec["test_acc"] = metrics.get("test_acc")
        rec["best_val_acc"] = metrics.get("best_val_acc")
        rec["best_epoch"] = metrics.get("best_epoch")
        rec["train_time_s"] = metrics.get("train_time_s")
        trainable, total = metrics.get("params_trainable"), metrics.get("params_total")
        rec["trainable"] = f"{_count(trainable)} of {_count(total)}" if trainable and total else None
        rec["reason"] = reason.splitlines()[0] if reason else ""
        records.append(rec)
    return pd.DataFrame.from_records(records)


def render_summary(df: pd.DataFrame, console: Console, title: str = "results") -> None:
    """A rich table of the summary; the best test accuracy per dataset is bold."""
    table = Table(title=title, show_lines=False)
    for col in SUMMARY_COLUMNS:
        table.add_column(col, justify="left" if col in ("cell", "status", "trainable") else "right")
    best: dict[str, float] = {}
    if not df.empty and "test_acc" in df:
        for ds, group in df.groupby("dataset"):
            vals = group["test_acc"].dropna()
            if len(vals):
                best[str(ds)] = float(vals.max())
    for _, row in df.iterrows():
        cells = []
        for col in SUMMARY_COLUMNS:
            v = row.get(col)
            if v is None or (isinstance(v, float) and pd.isna(v)):
                text = "—"
            elif col in ("test_acc", "best_val_acc"):
                text = f"{v:.4f}"
                if col == "test_acc" and best.get(str(row["dataset"])) == v:
                    text = f"[bold green]{text}[/]"
            elif col == "best_epoch":
                text = str(int(v))
            elif col == "train_time_s":
                text = f"{v:.1f}"
            elif col == "status":
                color = {"FINISHED": "green", "SKIPPED": "cyan", "FAILED": "red", "KILLED": "yellow"}.get(
                    v, "white"
                )
                text = f"[{color}]{v}[/]" + (f" ({row['reason']})" if row.get("reason") else "")
            else:
                text = str(v)
            cells.append(text)
        table.add_row(*cells)
    console.print(table)
