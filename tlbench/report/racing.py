"""What racing cost and saved (``tlbench run --race``): per comparison group and for the grid,
the epochs and device-seconds spent and saved, the winners, and the cells raced out.

Read from the cells frame (``collect.cells_frame``): each run logs ``epochs_trained`` and
``device_s``; a dropped run is SCHEDULED with ``tlbench.race = dropped`` (status DROPPED here).
Saved compute is the epochs a dropped cell did not train; its device-seconds are estimated at
that cell's own measured seconds per epoch.
"""

from __future__ import annotations

import pandas as pd

from tlbench.report.configs import validation_column

GROUP = ["dataset", "backbone", "strategy"]
RACE_NOTE = (
    "Cells raced rung by rung (tlbench run --race): a configuration whose upper 95 % bound of "
    "best-val accuracy fell below the group leader's lower bound was dropped (one seed: successive "
    "halving). Dropped cells are not results: they are left out of every mean above and listed "
    "below; tlbench run --no-race continues them. Saved device-seconds are estimated at each "
    "dropped cell's own seconds per epoch."
)
RACE_COLUMNS = [
    *GROUP,
    "cells",
    "finished",
    "dropped",
    "epochs_budget",
    "epochs_trained",
    "epochs_saved_pct",
    "device_s",
    "device_s_saved",
    "winner",
]


def raced(df: pd.DataFrame) -> bool:
    """Did any cell of the report take part in a race (a dropped or paused run)?"""
    return bool(df["status"].isin(["DROPPED", "PAUSED"]).any()) if "status" in df else False


def _spent(df: pd.DataFrame) -> pd.DataFrame:
    """Per cell: epochs trained, device-seconds, and the estimate of what a dropped one saved."""
    trained = pd.to_numeric(df.get("epochs_trained"), errors="coerce").fillna(0.0)
    device = pd.to_numeric(df.get("device_s"), errors="coerce").fillna(0.0)
    per_epoch = device / trained.where(trained > 0)
    dropped = df["status"] == "DROPPED"
    saved_epochs = (df["epochs"] - trained).where(dropped, 0.0).clip(lower=0)
    return df.assign(
        trained=trained,
        device=device,
        saved_epochs=saved_epochs,
        saved_s=(saved_epochs * per_epoch).fillna(0),
    )


def _winner(g: pd.DataFrame) -> str:
    """The finished configuration with the best mean validation accuracy (how the race ranked)."""
    done = g[g["status"] == "FINISHED"]
    if done.empty:
        return ""
    key = done["config"] if "config" in done else done["cell"]
    means = pd.to_numeric(done[validation_column(done)], errors="coerce").groupby(key).mean()
    return str(means.idxmax()) if means.notna().any() else ""


def race_table(df: pd.DataFrame) -> pd.DataFrame:
    """One row per comparison group (dataset, backbone, strategy) and an ``all`` row for the grid."""
    if df.empty or not raced(df):
        return pd.DataFrame(columns=RACE_COLUMNS)
    s = _spent(df)
    rows = []
    for key, g in s.groupby(GROUP, sort=False):
        rows.append(_row(dict(zip(GROUP, key, strict=True)), g, _winner(g)))
    rows.append(_row(dict.fromkeys(GROUP, "all"), s, ""))
    return pd.DataFrame(rows, columns=RACE_COLUMNS)


def _row(keys: dict[str, str], g: pd.DataFrame, winner: str) -> dict[str, object]:
    budget = float(g["epochs"].sum())
    return {
        **keys,
        "cells": len(g),
        "finished": int((g["status"] == "FINISHED").sum()),
        "dropped": int((g["status"] == "DROPPED").sum()),
        "epochs_budget": int(budget),
        "epochs_trained": int(g["trained"].sum()),
        "epochs_saved_pct": round(100 * float(g["saved_epochs"].sum()) / budget, 1) if budget else 0.0,
        "device_s": round(float(g["device"].sum()), 1),
        "device_s_saved": round(float(g["saved_s"].sum()), 1),
        "winner": winner,
    }


def dropped_table(df: pd.DataFrame) -> pd.DataFrame:
    """The cells raced out: where (rung, epoch), by which rule, to which leader, and why."""
    cols = ["cell", "race_rung", "race_rule", "race_leader", "race_reason"]
    if df.empty or "race_rung" not in df:
        return pd.DataFrame(columns=cols)
    return df.loc[df["status"] == "DROPPED", cols].reset_index(drop=True)
