"""Which value of one axis is better (``--compare AXIS``): every pair compared over the groups where
both ran (``stats.pairwise``), and average ranks across dataset × backbone blocks with Friedman
and Nemenyi (``stats.rank_table``).

A pivot answers "what did each position get"; this answers "does finetune beat linear_probe, and
how often", with the multiplicity of the comparisons accounted for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from tlbench.report.configs import replicate_frame
from tlbench.report.tables import AXES, ReportError

if TYPE_CHECKING:
    from tlbench.stats import RankResult

BLOCKS = ("dataset", "backbone")


def check_compare_axis(df: pd.DataFrame, axis: str) -> None:
    """``--compare`` needs an axis of the grid with at least two values: else a clear error (exit 2)."""
    if axis not in AXES or axis not in df.columns:
        raise ReportError(f"--compare {axis!r}: not an axis (valid: {', '.join(AXES)})")
    values = list(dict.fromkeys(df[axis].dropna().astype(str)))
    if len(values) < 2:
        several = [a for a in AXES if a in df.columns and df[a].nunique() > 1]
        raise ReportError(
            f"--compare {axis}: the grid has one {axis} ({', '.join(values) or 'none'}), nothing to compare; "
            f"axes with several values: {', '.join(several) or 'none'}"
        )


def compare_table(df: pd.DataFrame, axis: str, value: str = "test_acc") -> tuple[pd.DataFrame, str]:
    """``stats.pairwise`` of ``axis`` over the finished replicates of ``df`` (one row per cell), or
    an empty frame and why (fewer than two values have finished runs yet)."""
    from tlbench.stats import pairwise

    check_compare_axis(df, axis)
    runs = replicate_frame(df, value)
    done = list(dict.fromkeys(runs[axis].astype(str)))
    if len(done) < 2:
        return (
            pd.DataFrame(),
            f"only {', '.join(done) or 'no value'} of {axis} has finished runs: nothing to compare yet",
        )
    return pairwise(runs, axis=axis, value="value"), ""


def rank_result(df: pd.DataFrame, axis: str, value: str = "test_acc") -> RankResult | None:
    """Average ranks of ``axis`` over dataset × backbone blocks; None when ``axis`` is a block axis
    itself (ranking datasets against each other says nothing about methods) or nothing finished."""
    from tlbench.stats import rank_table

    block_by = [b for b in BLOCKS if b != axis and b in df.columns]
    runs = replicate_frame(df, value)
    if axis in BLOCKS or not block_by or runs.empty:
        return None
    return rank_table(runs, axis=axis, block_by=block_by, value="value")
