"""The input convention shared by every statistic: one row per replicate run.

Kept apart so that each statistics module checks its frame the same way and says the same thing
when a column is missing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pandas as pd

from tlbench.stats.errors import StatsError

AXES: tuple[str, ...] = ("dataset", "backbone", "strategy", "optimizer", "augmentation")
"""The grid's axis columns; each is constant within a configuration."""


def require_columns(df: pd.DataFrame, columns: Iterable[str], *, what: str) -> None:
    """Fail early, naming every missing column, rather than deep inside a groupby."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise StatsError(
            f"{what} needs the column(s) {missing}; the frame has {list(df.columns)} "
            "(expected one row per replicate run: config, seed, value and the axis columns)"
        )


def other_axes(df: pd.DataFrame, axis: str) -> list[str]:
    """The axis columns present in ``df`` other than ``axis``: the default grouping for comparisons."""
    return [c for c in AXES if c != axis and c in df.columns]


def constant_columns(df: pd.DataFrame, by: Sequence[str]) -> list[str]:
    """The axis columns (not in ``by``) that hold one value within every group: safe to carry along."""
    candidates = [c for c in AXES if c in df.columns and c not in by]
    if not candidates or df.empty:
        return []
    counts = df.groupby(list(by), sort=False, dropna=False)[candidates].nunique(dropna=False)
    return [c for c in candidates if (counts[c] <= 1).all()]
